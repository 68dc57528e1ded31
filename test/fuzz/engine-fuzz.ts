// The TLS engine's fuzz target (issue 16), both roles. Inputs are real
// streams from the corpus (corpus.ts) changed by structure-aware mutations
// (on whole records: flip, set, grow, shrink, drop, duplicate, swap, insert,
// splice from another stream, re-split a plaintext handshake record, break a
// length field), delivered in reads of random sizes; a share of inputs runs
// live, our client role against our server role with the mutations on the
// wire between them. Invariants checked on every input:
//   1. no exception leaves the engine;
//   2. at most one error event, nothing after it (no event, no output), and
//      the engine then says Failed;
//   3. no handshake completes on altered messages: a completion is allowed
//      only when the stream's handshake part, as TLS reads it (plaintext
//      handshake bytes, the protected records, change_cipher_spec dropped),
//      is the recorded one, and then with the recorded key ID; unaltered
//      streams, however split, must complete;
//   4. time per input and output per input bounded, the heap bounded over
//      the run.
// Randomness is a seeded generator: a violation names its seed and input.

import { parsePriority, runHandshakeTask, runLoopback, TlsClient, TlsServer, generateEphemeralKeyShares, type TlsEngine, type TlsEvent } from "../../src/tls/index.js";
import { plainRecord } from "../../src/tls/record.js";
import { makeKey } from "../helpers/tls-pair.js";
import { ephemeralOf, type CorpusEntry } from "./corpus.js";

export interface FuzzOptions {
  readonly inputs: number;
  readonly seed: number;
  readonly corpus: readonly CorpusEntry[];
  /** Milliseconds one input may take, on `now`. */
  readonly maxInputMs: number;
  readonly now: () => number;
  /** Heap growth over the run allowed, in bytes (sampled every 1,000 inputs). */
  readonly maxHeapGrowth: number;
  /** Share of inputs run live, our two roles against each other. */
  readonly liveShare: number;
  readonly heapUsed?: () => number;
  readonly onProgress?: (stats: FuzzStats) => void;
}

export interface FuzzViolation {
  readonly input: number;
  readonly seed: number;
  readonly source: string;
  readonly mutations: readonly string[];
  readonly what: string;
}

export interface FuzzStats {
  inputs: number;
  completed: number;
  failed: number;
  /** Neither: a truncated stream leaves the handshake waiting. */
  waiting: number;
  readonly errors: Record<string, number>;
  readonly violations: FuzzViolation[];
  maxInputMs: number;
  maxHeapGrowth: number;
}

/** Largest output an input may make us write: a flight, an alert, a KeyUpdate or two. */
const MAX_OUTPUT_BYTES = 1 << 16;

/** mulberry32: small, fast, seedable; not for keys. */
export class Random {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

// ---------------------------------------------------------------- records

/** Whole records (header included), and bytes after the last whole one. */
export function splitRecords(bytes: Buffer): { records: Buffer[]; tail: Buffer } {
  const records: Buffer[] = [];
  let i = 0;
  while (i + 5 <= bytes.length && i + 5 + bytes.readUInt16BE(i + 3) <= bytes.length) {
    const end = i + 5 + bytes.readUInt16BE(i + 3);
    records.push(Buffer.from(bytes.subarray(i, end)));
    i = end;
  }
  return { records, tail: Buffer.from(bytes.subarray(i)) };
}

/**
 * The handshake part of a stream as TLS reads it: the plaintext handshake
 * bytes, then the first `protectedCount` protected records whole; legal
 * change_cipher_spec records and plaintext legacy_record_version left out
 * (RFC 8446 §5, §5.1); anything else kept. Two streams with the same form
 * are the same handshake to a correct engine.
 */
export function handshakeForm(bytes: Buffer, protectedCount: number): string {
  let plain = "";
  const rest: string[] = [];
  let seen = 0;
  let i = 0;
  for (; i + 5 <= bytes.length && seen < protectedCount; ) {
    const length = bytes.readUInt16BE(i + 3);
    if (i + 5 + length > bytes.length) break;
    const type = bytes[i]!;
    const body = bytes.subarray(i + 5, i + 5 + length);
    if (type === 22) plain += body.toString("hex");
    else if (type === 23) {
      rest.push("P" + bytes.subarray(i, i + 5 + length).toString("hex"));
      seen++;
    } else if (!(type === 20 && length === 1 && body[0] === 1)) rest.push(`X${type}:` + body.toString("hex"));
    i += 5 + length;
  }
  if (seen < protectedCount) rest.push("T" + bytes.subarray(i).toString("hex"));
  return plain + "|" + rest.join(",");
}

function protectedCount(bytes: Buffer): number {
  return splitRecords(bytes).records.filter((r) => r[0] === 23).length;
}

// -------------------------------------------------------------- mutations

type Mutation = (records: Buffer[], r: Random, others: readonly Buffer[][]) => string | null;

const MUTATIONS: Mutation[] = [
  function flipBit(rs, r) {
    const i = r.int(rs.length);
    const rec = rs[i]!;
    const bit = r.int(rec.length * 8);
    rec[bit >> 3]! ^= 1 << (bit & 7);
    return `flip-bit ${i}:${bit}`;
  },
  function setByte(rs, r) {
    const i = r.int(rs.length);
    const rec = rs[i]!;
    const at = r.int(rec.length);
    const value = r.pick([0, 0xff, 0x7f, 0x80, rec[at]! + 1, rec[at]! - 1, r.int(256)]) & 0xff;
    rec[at] = value;
    return `set-byte ${i}:${at}=${value}`;
  },
  function setBodyByte(rs, r) {
    const i = r.int(rs.length);
    const rec = rs[i]!;
    if (rec.length <= 5) return null;
    const at = 5 + r.int(rec.length - 5);
    rec[at] = r.int(256);
    return `set-body-byte ${i}:${at}`;
  },
  function dropRecord(rs, r) {
    const i = r.int(rs.length);
    rs.splice(i, 1);
    return `drop ${i}`;
  },
  function duplicateRecord(rs, r) {
    const i = r.int(rs.length);
    rs.splice(i, 0, Buffer.from(rs[i]!));
    return `duplicate ${i}`;
  },
  function swapRecords(rs, r) {
    if (rs.length < 2) return null;
    const i = r.int(rs.length - 1);
    [rs[i], rs[i + 1]] = [rs[i + 1]!, rs[i]!];
    return `swap ${i}`;
  },
  function insertRecord(rs, r) {
    const i = r.int(rs.length + 1);
    const type = r.pick([20, 21, 22, 23, 24, r.int(256)]);
    const body = r.bytes(r.pick([0, 1, 2, r.int(64), r.int(600)]));
    rs.splice(i, 0, plainRecord(type, body));
    return `insert ${type}x${body.length} at ${i}`;
  },
  function insertChangeCipherSpec(rs, r) {
    const i = r.int(rs.length + 1);
    rs.splice(i, 0, plainRecord(20, Buffer.of(1)));
    return `insert-ccs at ${i}`;
  },
  function growRecord(rs, r) {
    const i = r.int(rs.length);
    const rec = rs[i]!;
    const grown = Buffer.concat([rec.subarray(5), r.bytes(1 + r.int(16))]);
    rs[i] = plainRecord(rec[0]!, grown, rec.readUInt16BE(1));
    return `grow ${i}`;
  },
  function shrinkRecord(rs, r) {
    const i = r.int(rs.length);
    const rec = rs[i]!;
    if (rec.length <= 5) return null;
    const body = rec.subarray(5, 5 + r.int(rec.length - 5));
    rs[i] = plainRecord(rec[0]!, Buffer.from(body), rec.readUInt16BE(1));
    return `shrink ${i} to ${body.length}`;
  },
  function breakLength(rs, r) {
    const i = r.int(rs.length);
    const value = r.pick([0, 1, 0xffff, 0x4000, 0x4001, 0x4101, r.int(0x10000), rs[i]!.readUInt16BE(3) + 1]) & 0xffff;
    rs[i]!.writeUInt16BE(value, 3);
    return `length ${i}=${value}`;
  },
  function resplitHandshake(rs, r) {
    // A plaintext handshake record in two: the same handshake (RFC 8446 §5.1).
    const plain = rs.map((x, i) => (x[0] === 22 && x.length > 6 ? i : -1)).filter((i) => i >= 0);
    if (plain.length === 0) return null;
    const i = r.pick(plain);
    const rec = rs[i]!;
    const cut = 1 + r.int(rec.length - 6);
    rs.splice(i, 1, plainRecord(22, Buffer.from(rec.subarray(5, 5 + cut))), plainRecord(22, Buffer.from(rec.subarray(5 + cut))));
    return `resplit ${i} at ${cut}`;
  },
  function handshakeLength(rs, r) {
    const plain = rs.map((x, i) => (x[0] === 22 && x.length >= 9 ? i : -1)).filter((i) => i >= 0);
    if (plain.length === 0) return null;
    const i = r.pick(plain);
    const value = r.pick([0, 1, 0xffffff, 0x10001, r.int(0x1000000)]);
    rs[i]!.writeUIntBE(value, 6, 3);
    return `handshake-length ${i}=${value}`;
  },
  function splice(rs, r, others) {
    if (others.length === 0) return null;
    const other = r.pick(others);
    if (other.length === 0) return null;
    const i = r.int(rs.length);
    const j = Math.min(i, other.length - 1);
    rs[i] = Buffer.from(other[j]!);
    return `splice ${i}<-${j}`;
  },
];

function mutate(records: Buffer[], r: Random, others: readonly Buffer[][]): string[] {
  const done: string[] = [];
  const count = 1 + r.int(r.next() < 0.7 ? 1 : 4);
  for (let k = 0; k < 20 && done.length < count && records.length > 0; k++) {
    const m = r.pick(MUTATIONS)(records, r, others);
    if (m) done.push(m);
  }
  return done;
}

/** How a stream reaches the engine: whole, at record boundaries, in random reads, or a byte at a time. */
function chunks(bytes: Buffer, r: Random): Buffer[] {
  const mode = r.int(10);
  if (mode < 4) return [bytes];
  const out: Buffer[] = [];
  if (mode < 6) {
    const { records, tail } = splitRecords(bytes);
    return [...records, tail].filter((b) => b.length > 0);
  }
  const size = mode === 9 ? () => 1 : () => 1 + r.int(64);
  for (let i = 0; i < bytes.length; ) {
    const n = size();
    out.push(bytes.subarray(i, i + n));
    i += n;
  }
  return out;
}

// ---------------------------------------------------------------- running

interface Outcome {
  completed: boolean;
  keyId: string | null;
  error: string | null;
}

/** Records engine events and checks invariant 2 as they come. */
class Watch {
  readonly problems: string[] = [];
  completions = 0;
  keyId: string | null = null;
  error: string | null = null;
  outputBytes = 0;

  event(e: TlsEvent): void {
    if (this.error) this.problems.push(`event ${e.type} after the error`);
    if (e.type === "handshake-complete") {
      this.completions++;
      this.keyId = e.keyId;
      if (this.completions > 1) this.problems.push("second handshake-complete");
    }
    if (e.type === "error") this.error = e.error.code;
  }

  output(bytes: Buffer | null, errorBefore: boolean): void {
    if (!bytes) return;
    this.outputBytes += bytes.length;
    if (errorBefore) this.problems.push(`${bytes.length} bytes of output after the error`);
  }

  finish(engine: TlsEngine & { state: string }): void {
    if (this.error && engine.state !== "Failed") this.problems.push(`state ${engine.state} after an error`);
    if (this.outputBytes > MAX_OUTPUT_BYTES) this.problems.push(`${this.outputBytes} bytes of output`);
  }
}

/** Feeds the reads to one engine, tasks inline, watching every step. */
function replay(engine: TlsEngine & { state: string }, reads: readonly Buffer[], watch: Watch): void {
  const step = (): void => {
    for (;;) {
      const errorBefore = watch.error !== null;
      const e = engine.nextEvent();
      // The alert comes with the error event; anything later is a violation.
      watch.output(engine.takeOutput(), errorBefore);
      if (e) {
        watch.event(e);
        continue;
      }
      const task = engine.takeTask();
      if (!task) return;
      const result = runHandshakeTask(task);
      // A TLS 1.2 flight task is async (OpenPGP.js) and needs a whole legacy
      // flight, which no mutation of these TLS 1.3 recordings makes;
      // test/tls12-engine.test.ts fuzzes that path.
      if (result instanceof Promise) return;
      engine.completeTask(result);
    }
  };
  step();
  for (const read of reads) {
    engine.receive(read);
    step();
  }
  watch.finish(engine);
}

interface Prepared {
  readonly entry: CorpusEntry;
  readonly bytes: Buffer;
  readonly records: Buffer[];
  readonly tail: Buffer;
  readonly protectedCount: number;
  readonly form: string;
  keyId: string | null;
}

export function runFuzz(options: FuzzOptions): FuzzStats {
  const r = new Random(options.seed);
  const identity = makeKey("ed25519");
  const prepared: Prepared[] = options.corpus.map((entry) => {
    const bytes = Buffer.from(entry.peer, "hex");
    const { records, tail } = splitRecords(bytes);
    const n = entry.role === "client" ? handshakeRecords(entry, records) : protectedCount(bytes);
    return { entry, bytes, records, tail, protectedCount: n, form: handshakeForm(bytes, n), keyId: null };
  });
  const byRole = (role: string): Buffer[][] => prepared.filter((p) => p.entry.role === role).map((p) => p.records);
  const others = { client: byRole("client"), server: byRole("server") };
  const stats: FuzzStats = { inputs: 0, completed: 0, failed: 0, waiting: 0, errors: {}, violations: [], maxInputMs: 0, maxHeapGrowth: 0 };
  const heapUsed = options.heapUsed ?? (() => process.memoryUsage().heapUsed);
  const baseline = heapUsed();

  // The recorded key IDs: each client-role stream must complete as recorded.
  for (const p of prepared.filter((x) => x.entry.role === "client")) {
    const watch = new Watch();
    replay(clientFor(p.entry), [p.bytes], watch);
    if (watch.completions !== 1 || watch.error) {
      stats.violations.push({ input: -1, seed: options.seed, source: p.entry.source, mutations: [], what: `the recorded stream does not complete (${watch.error})` });
    }
    p.keyId = watch.keyId;
  }

  for (let input = 0; input < options.inputs; input++) {
    const started = options.now();
    const live = r.next() < options.liveShare;
    const p = r.pick(prepared);
    let mutations: string[] = [];
    let problems: string[];
    let outcome: Outcome;
    try {
      if (live) {
        ({ outcome, problems, mutations } = runLive(r, identity));
      } else {
        const records = p.records.map((x) => Buffer.from(x));
        const pristine = r.next() < 0.1;
        if (!pristine) mutations = mutate(records, r, others[p.entry.role]);
        let stream = Buffer.concat([...records, p.tail]);
        if (!pristine && r.next() < 0.15) {
          const cut = r.int(stream.length);
          stream = stream.subarray(0, cut);
          mutations.push(`truncate ${cut}`);
        }
        const watch = new Watch();
        const engine = p.entry.role === "client" ? clientFor(p.entry) : new TlsServer(parsePriority(p.entry.priority), identity);
        replay(engine, chunks(stream, r), watch);
        problems = watch.problems;
        outcome = { completed: watch.completions > 0, keyId: watch.keyId, error: watch.error };
        // Invariant 3.
        if (p.entry.role === "client") {
          const same = handshakeForm(stream, p.protectedCount) === p.form;
          if (outcome.completed && !same) problems.push("completed on an altered handshake");
          if (outcome.completed && outcome.keyId !== p.keyId) problems.push(`completed with key ID ${outcome.keyId}`);
          if (pristine && (!outcome.completed || outcome.error)) problems.push(`the unaltered stream did not complete (${outcome.error})`);
        } else if (outcome.completed) {
          // Our server's keys are fresh: a recorded client Finished can never verify.
          problems.push("the server role completed on a replayed client flight");
        }
      }
    } catch (error) {
      problems = [`exception: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`];
      outcome = { completed: false, keyId: null, error: null };
    }
    const ms = options.now() - started;
    stats.maxInputMs = Math.max(stats.maxInputMs, ms);
    if (ms > options.maxInputMs) problems.push(`took ${ms.toFixed(1)} ms`);
    stats.inputs++;
    if (outcome.error) {
      stats.failed++;
      stats.errors[outcome.error] = (stats.errors[outcome.error] ?? 0) + 1;
    } else if (outcome.completed) stats.completed++;
    else stats.waiting++;
    for (const what of problems) {
      stats.violations.push({ input, seed: options.seed, source: live ? "live" : p.entry.source, mutations, what });
    }
    if ((input + 1) % 1000 === 0) {
      stats.maxHeapGrowth = Math.max(stats.maxHeapGrowth, heapUsed() - baseline);
      if (stats.maxHeapGrowth > options.maxHeapGrowth) {
        stats.violations.push({ input, seed: options.seed, source: "heap", mutations: [], what: `heap grew by ${stats.maxHeapGrowth} bytes` });
      }
      options.onProgress?.(stats);
    }
  }
  return stats;
}

/** Protected records up to the server's Finished (a recording may hold a NewSessionTicket or two after it). */
function handshakeRecords(entry: CorpusEntry, records: readonly Buffer[]): number {
  const client = clientFor(entry);
  let count = 0;
  for (const rec of records) {
    if (rec[0] === 23) count++;
    client.receive(rec);
    for (let task = client.takeTask(); task; task = client.takeTask()) {
      const result = runHandshakeTask(task);
      if (result instanceof Promise) return count; // a TLS 1.2 flight: not in a TLS 1.3 recording
      client.completeTask(result);
    }
    if (client.state === "Connected") return count;
  }
  return count;
}

function clientFor(entry: CorpusEntry): TlsClient {
  const client = new TlsClient(parsePriority(entry.priority), ephemeralOf(entry.ephemeral!));
  client.start();
  client.takeOutput();
  return client;
}

/**
 * Our client against our server, the mutations applied to the records of
 * one direction's chunks; the receiving side must not complete once a chunk
 * it got was altered (its handshake form changed).
 */
function runLive(r: Random, identity: ReturnType<typeof makeKey>): { outcome: Outcome; problems: string[]; mutations: string[] } {
  const settings = parsePriority("SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3");
  const client = new TlsClient(settings, generateEphemeralKeyShares(settings.keyShareGroups));
  const server = new TlsServer(settings, identity);
  const toClient = r.next() < 0.5;
  const mutations: string[] = [];
  const watches = { client: new Watch(), server: new Watch() };
  const altered = { client: false, server: false };
  const problems: string[] = [];
  const side = (name: "client" | "server", engine: TlsEngine) => ({
    engine,
    event: (e: TlsEvent) => {
      watches[name].event(e);
      if (e.type === "handshake-complete" && altered[name]) problems.push(`${name} completed on an altered handshake`);
    },
    deliver: (bytes: Buffer, to: TlsEngine) => {
      const receiver = name === "client" ? "server" : "client";
      if ((receiver === "client") === toClient && mutations.length === 0) {
        const { records, tail } = splitRecords(bytes);
        const done = mutate(records, r, []);
        const changed = Buffer.concat([...records, tail]);
        const n = protectedCount(bytes);
        if (handshakeForm(changed, n) !== handshakeForm(bytes, n)) altered[receiver] = true;
        mutations.push(...done.map((m) => `${receiver}: ${m}`));
        for (const c of chunks(changed, r)) to.receive(c);
        return;
      }
      to.receive(bytes);
    },
  });
  client.start();
  runLoopback(side("client", client), side("server", server));
  for (const [name, engine] of [["client", client], ["server", server]] as const) {
    watches[name].finish(engine);
    problems.push(...watches[name].problems.map((p) => `${name}: ${p}`));
  }
  const w = toClient ? watches.client : watches.server;
  return { outcome: { completed: w.completions > 0, keyId: w.keyId, error: w.error }, problems, mutations };
}
