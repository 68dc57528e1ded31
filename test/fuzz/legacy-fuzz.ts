// A fuzz target for the legacy flight (TLS 1.2, OpenPGP certificate): the
// client role (the Mandos server) against our TLS 1.2 server role (a
// legacy mandos-client) that sends a mutated OpenPGP key as its
// certificate. The key is mutated before the server's transcript takes it,
// so every input reaches the certificate checks (src/tls/tls12/openpgp-cert.ts,
// OpenPGP.js) and, where they pass, the rest of the handshake, as a broken
// or hostile legacy client's would; a mutation in transit (the engine's
// target, and test/tls12-engine.test.ts) is mostly stopped by the
// transcript. Mutations know the key's packets (RFC 4880 §4): drop, repeat,
// swap, retag, reframe, a version, an algorithm or a number's length
// changed, a packet appended, bytes flipped, cut or added.
//
// Invariants for each input: no exception escapes the engine; at most one
// error event, a TlsError with its code; a completed handshake only with
// the identity's own fingerprint and the secret delivered whole, and only
// for a key OpenPGP.js itself reads and verifies; each input within
// maxInputMs. A short run is in test/tls-fuzz.test.ts; the long one is
// `npm run fuzz -- --legacy`.

import * as openpgp from "openpgp";
import { TlsError } from "../../src/tls/index.js";
import type { LegacyIdentity } from "../../src/client/openpgp-identity.js";
import { openPgpPacket } from "../../src/client/openpgp-identity.js";
import { keyPackets, type KeyPacket } from "../helpers/legacy-faults.js";
import { runLegacyPair } from "../helpers/tls12-pair.js";
import { Random } from "./engine-fuzz.js";

export interface LegacyFuzzOptions {
  readonly inputs: number;
  readonly seed: number;
  /** The legacy client's identity: its key is what the inputs mutate. */
  readonly identity: LegacyIdentity;
  /** Milliseconds one input may take, on `now`. */
  readonly maxInputMs: number;
  readonly now: () => number;
  readonly onProgress?: (stats: LegacyFuzzStats) => void;
}

export interface LegacyFuzzViolation {
  readonly input: number;
  readonly mutations: readonly string[];
  readonly what: string;
  /** The mutated key, hex, to replay it. */
  readonly key: string;
}

export interface LegacyFuzzStats {
  inputs: number;
  completed: number;
  failed: number;
  /** Error codes seen, with their counts. */
  readonly errors: Record<string, number>;
  readonly violations: LegacyFuzzViolation[];
  maxInputMs: number;
}

const SECRET = Buffer.from("the legacy secret");

type Mutation = (packets: KeyPacket[], rng: Random) => string;

/** A packet made again from its tag and body, in the new format (RFC 4880 §4.2.2). */
const packet = (tag: number, body: Buffer): KeyPacket => ({ tag, bytes: openPgpPacket(tag, body), body });

const MUTATIONS: ReadonlyArray<readonly [string, Mutation]> = [
  ["drop", (ps, rng) => `drop ${ps.splice(rng.int(ps.length), 1)[0]?.tag}`],
  ["repeat", (ps, rng) => {
    const i = rng.int(ps.length);
    ps.splice(rng.int(ps.length + 1), 0, ps[i]!);
    return `repeat #${i}`;
  }],
  ["swap", (ps, rng) => {
    const [i, j] = [rng.int(ps.length), rng.int(ps.length)];
    [ps[i], ps[j]] = [ps[j]!, ps[i]!];
    return `swap #${i} #${j}`;
  }],
  ["retag", (ps, rng) => {
    const i = rng.int(ps.length);
    const tag = rng.pick([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17, 18, 19, 20, 21, 60, 63]);
    ps[i] = packet(tag, ps[i]!.body);
    return `retag #${i} ${tag}`;
  }],
  ["reframe", (ps, rng) => {
    // The header's length off by a little, or by much: the packets run into each other.
    const i = rng.int(ps.length);
    const { tag, body } = ps[i]!;
    const length = Math.max(0, body.length + rng.pick([-3, -1, 1, 2, 200, 70_000]));
    const header = length < 192 ? Buffer.of(0xc0 | tag, length) : Buffer.of(0xc0 | tag, 0xff, length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff);
    ps[i] = { tag, bytes: Buffer.concat([header, body]), body };
    return `reframe #${i} ${length}`;
  }],
  ["version", (ps, rng) => {
    const i = rng.int(ps.length);
    const body = Buffer.from(ps[i]!.body);
    if (body.length > 0) body[0] = rng.pick([2, 3, 4, 5, 6, 255]);
    ps[i] = packet(ps[i]!.tag, body);
    return `version #${i} ${body[0]}`;
  }],
  ["algorithm", (ps, rng) => {
    // A key packet's algorithm (v4: after version and creation time), or a signature's (after version and type).
    const i = rng.int(ps.length);
    const body = Buffer.from(ps[i]!.body);
    const at = ps[i]!.tag === 2 ? 2 : 5;
    if (body.length > at) body[at] = rng.pick([1, 2, 3, 16, 17, 18, 19, 22, 25, 27, 100]);
    ps[i] = packet(ps[i]!.tag, body);
    return `algorithm #${i} ${body[at]}`;
  }],
  ["number", (ps, rng) => {
    // A key packet's first MPI length (v4 key: after 6 bytes), large or small.
    const i = ps.findIndex((p) => p.tag === 6 || p.tag === 14);
    if (i < 0) return "number: no key";
    const body = Buffer.from(ps[i]!.body);
    if (body.length >= 8) body.writeUInt16BE(rng.pick([0, 1, 7, 8, 2047, 4097, 16384, 65535]), 6);
    ps[i] = packet(ps[i]!.tag, body);
    return `number #${i} ${body.length >= 8 ? body.readUInt16BE(6) : "-"}`;
  }],
  ["append", (ps, rng) => {
    const tag = rng.pick([2, 12, 13, 14, 17, 21, 61]);
    ps.push(packet(tag, rng.bytes(rng.int(64))));
    return `append ${tag}`;
  }],
];

/** Byte-level mutations of the whole key, after the packet-level ones. */
function mutateBytes(key: Buffer, rng: Random): [Buffer, string] {
  if (key.length === 0) return [key, "empty"];
  switch (rng.int(3)) {
    case 0: {
      const b = Buffer.from(key);
      const at = rng.int(b.length);
      b[at]! ^= 1 << rng.int(8);
      return [b, `flip ${at}`];
    }
    case 1: {
      const at = rng.int(key.length);
      return [key.subarray(0, at), `cut ${at}`];
    }
    default: {
      const at = rng.int(key.length + 1);
      return [Buffer.concat([key.subarray(0, at), rng.bytes(1 + rng.int(4)), key.subarray(at)]), `insert ${at}`];
    }
  }
}

/** One input's key: one to three mutations. */
function mutate(original: readonly KeyPacket[], rng: Random): { key: Buffer; mutations: string[] } {
  const packets = [...original];
  const mutations: string[] = [];
  for (let n = 1 + rng.int(3); n > 0; n--) {
    if (rng.int(5) === 0) continue;
    const [name, m] = rng.pick(MUTATIONS);
    mutations.push(`${name}: ${m(packets, rng)}`);
  }
  let key: Buffer = Buffer.concat(packets.map((p) => p.bytes));
  if (mutations.length === 0 || rng.int(4) === 0) {
    const [bytes, what] = mutateBytes(key, rng);
    key = bytes;
    mutations.push(what);
  }
  return { key, mutations };
}

/** Whether OpenPGP.js reads `key` and verifies its primary key. */
async function oracleAccepts(key: Buffer): Promise<boolean> {
  try {
    const k = await openpgp.readKey({ binaryKey: key });
    await k.verifyPrimaryKey();
    return true;
  } catch {
    return false;
  }
}

export async function runLegacyFuzz(options: LegacyFuzzOptions): Promise<LegacyFuzzStats> {
  const rng = new Random(options.seed);
  const original = keyPackets(Buffer.from(options.identity.publicKey));
  const stats: LegacyFuzzStats = { inputs: 0, completed: 0, failed: 0, errors: {}, violations: [], maxInputMs: 0 };
  for (let input = 0; input < options.inputs; input++) {
    const { key, mutations } = mutate(original, rng);
    const problems: string[] = [];
    const started = options.now();
    try {
      const r = await runLegacyPair({ ...options.identity, publicKey: key }, { secret: SECRET });
      const errors = r.clientEvents.filter((e) => e.type === "error");
      if (errors.length > 1) problems.push(`${errors.length} errors`);
      for (const e of errors) {
        if (e.type !== "error") continue;
        if (!(e.error instanceof TlsError)) problems.push(`an error that is no TlsError: ${String(e.error)}`);
        else stats.errors[e.error.code] = (stats.errors[e.error.code] ?? 0) + 1;
      }
      const done = r.clientEvents.find((e) => e.type === "handshake-complete");
      if (done?.type === "handshake-complete") {
        stats.completed++;
        if (errors.length > 0) problems.push("completed and failed");
        if (done.fingerprint !== options.identity.fingerprint) problems.push(`completed with fingerprint ${String(done.fingerprint)}`);
        if (!r.received.equals(SECRET)) problems.push("completed without the secret whole");
        if (!(await oracleAccepts(key))) problems.push("completed with a key OpenPGP.js does not verify");
      } else if (errors.length === 0) {
        problems.push("neither completed nor failed");
      } else {
        stats.failed++;
      }
    } catch (error) {
      problems.push(`exception: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
    }
    const ms = options.now() - started;
    stats.maxInputMs = Math.max(stats.maxInputMs, ms);
    if (ms > options.maxInputMs) problems.push(`${ms.toFixed(0)} ms`);
    for (const what of problems) stats.violations.push({ input, mutations, what, key: key.toString("hex") });
    stats.inputs++;
    options.onProgress?.(stats);
  }
  return stats;
}
