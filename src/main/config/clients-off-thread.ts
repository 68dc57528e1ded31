// A reload's parse of clients.conf, off the main thread. A fleet's file
// (20,000 clients, 30 MB) takes the parse 1-4 s of CPU, and on the main
// thread every unlock, D-Bus call and /metrics request waited for it: a
// reboot wave that met an operator's reload stalled for that long. The
// parse runs in a worker thread made for it (src/workers/clients-conf.ts),
// which also computes the text's digest (an unchanged file is not parsed
// again) and the warnings; the main thread only unpacks the result.
//
// The file's bytes are copied to the thread (a few ms for 30 MB). What
// crosses back is packed (PackedClients): the strings in one array,
// the numbers and booleans in typed arrays, the secrets side by side in
// one ArrayBuffer that is transferred, not copied. Structured clone of the
// ClientSettings objects themselves took the main thread 280 ms for 20,000
// clients. The strings arrive as strings of their own (never views on a
// larger one, see clients-config.ts's ownCopy). Only the clients that
// changed become new objects (unpackClients).
//
// A worker that cannot be started or fails (a thread limit, a missing
// file) leaves the parse to this thread, as before; one that ran out of
// memory fails the reload (the running configuration is kept): the same
// parse here would take the server down.

import { Worker } from "node:worker_threads";
import type { ClientSettings } from "../clients/settings.js";
import { clientKeyWarnings, LOGGED_WARNINGS_PER_KIND, parseClientsConfig, parsedTextDigest, rememberParsedText, textDigest, type ClientsConfigOptions } from "./clients-config.js";
import { decodeConfigText } from "./read-file.js";
import { SecretArena } from "./secret-arena.js";

/** ClientSettings, packed to cross between threads cheaply. */
export interface PackedClients {
  /** name, keyId, fingerprint, host, checker of each client in turn. */
  readonly strings: string[];
  /** timeout, extendedTimeout, interval, approvalDelay, approvalDuration of each client in turn. */
  readonly durations: Float64Array;
  /** approvedByDefault (bit 0) and enabled (bit 1) of each client. */
  readonly flags: Uint8Array;
  /** Every secret, side by side. */
  readonly secrets: ArrayBuffer;
  /** Where each client's secret ends in `secrets`. */
  readonly secretEnds: Float64Array;
}

const STRINGS_PER_CLIENT = 5;
const DURATIONS_PER_CLIENT = 5;

export function packClients(clients: readonly ClientSettings[]): PackedClients {
  const strings: string[] = [];
  const durations = new Float64Array(clients.length * DURATIONS_PER_CLIENT);
  const flags = new Uint8Array(clients.length);
  const secretEnds = new Float64Array(clients.length);
  let total = 0;
  for (const c of clients) total += c.secret.length;
  const secrets = new ArrayBuffer(total);
  const bytes = new Uint8Array(secrets);
  let at = 0;
  clients.forEach((c, i) => {
    strings.push(c.name, c.keyId, c.fingerprint, c.host, c.checker);
    durations.set([c.timeout, c.extendedTimeout, c.interval, c.approvalDelay, c.approvalDuration], i * DURATIONS_PER_CLIENT);
    flags[i] = (c.approvedByDefault ? 1 : 0) | (c.enabled ? 2 : 0);
    bytes.set(c.secret, at);
    at += c.secret.length;
    secretEnds[i] = at;
  });
  return { strings, durations, flags, secrets, secretEnds };
}

/**
 * The clients `packed` holds, in order. A client the same in `previous`
 * (name, key and every setting, the secret's bytes included) is the
 * previous object itself: a reload that changes a few clients of a fleet
 * makes a few objects, and the reload's apply skips the others at once.
 * Secrets are copied out of the packed buffer (which is then wiped), so
 * that a client kept for weeks does not keep every other secret of its
 * file alive with it.
 */
export function unpackClients(packed: PackedClients, previous: readonly ClientSettings[] = []): ClientSettings[] {
  const { strings, durations, flags, secretEnds } = packed;
  const before = new Map(previous.map((c) => [c.name, c]));
  const all = Buffer.from(packed.secrets);
  const secretOf = (i: number): Buffer => all.subarray(i === 0 ? 0 : secretEnds[i - 1]!, secretEnds[i]!);
  // The previous client where it is the same; the others are made anew, their secrets in one arena of their size.
  const clients: (ClientSettings | undefined)[] = new Array(flags.length);
  let fresh = 0;
  for (let i = 0; i < flags.length; i++) {
    const o = before.get(strings[i * STRINGS_PER_CLIENT]!);
    if (o !== undefined && sameFileClient(o, packed, i, secretOf(i))) clients[i] = o;
    else fresh += secretOf(i).length;
  }
  const arena = new SecretArena(fresh);
  for (let i = 0; i < flags.length; i++) {
    if (clients[i] !== undefined) continue;
    const s = i * STRINGS_PER_CLIENT;
    const d = i * DURATIONS_PER_CLIENT;
    // One literal, its keys in clients-config.ts's order: every client object of one shape.
    clients[i] = {
      name: strings[s]!,
      keyId: strings[s + 1]!,
      fingerprint: strings[s + 2]!,
      secret: arena.keep(secretOf(i)),
      host: strings[s + 3]!,
      timeout: durations[d]!,
      extendedTimeout: durations[d + 1]!,
      interval: durations[d + 2]!,
      checker: strings[s + 4]!,
      approvedByDefault: (flags[i]! & 1) !== 0,
      approvalDelay: durations[d + 3]!,
      approvalDuration: durations[d + 4]!,
      enabled: (flags[i]! & 2) !== 0,
    };
  }
  all.fill(0);
  return clients as ClientSettings[];
}

/** Whether `o` is the packed client `i`, its secret `secret`, in every field. */
function sameFileClient(o: ClientSettings, packed: PackedClients, i: number, secret: Buffer): boolean {
  const { strings, durations, flags } = packed;
  const s = i * STRINGS_PER_CLIENT;
  const d = i * DURATIONS_PER_CLIENT;
  return o.keyId === strings[s + 1] && o.fingerprint === strings[s + 2] && o.host === strings[s + 3] && o.checker === strings[s + 4] &&
    o.timeout === durations[d] && o.extendedTimeout === durations[d + 1] && o.interval === durations[d + 2] &&
    o.approvalDelay === durations[d + 3] && o.approvalDuration === durations[d + 4] &&
    o.approvedByDefault === ((flags[i]! & 1) !== 0) && o.enabled === ((flags[i]! & 2) !== 0) && o.secret.equals(secret);
}

/** What the worker is given. */
export interface ParseJob {
  /** The file's bytes, decoded as UTF-8 here. */
  readonly bytes: Uint8Array;
  readonly file: string;
  /** The digest of the text last applied (parsedTextDigest), if known. */
  readonly lastDigest: string | undefined;
  /** The options that are data: the worker has its own defaults for the rest. */
  readonly opts: Pick<ClientsConfigOptions, "env" | "currentUser" | "secfileBase">;
}

/** What it answers. */
export type ParseReply =
  | { readonly kind: "unchanged" }
  | { readonly kind: "parsed"; readonly packed: PackedClients; readonly digest: string | undefined; readonly warnings: string[] }
  | { readonly kind: "failed"; readonly reason: string };

export type ParsedText =
  | { readonly kind: "unchanged" }
  | { readonly kind: "parsed"; readonly clients: readonly ClientSettings[]; readonly warnings: string[] }
  | { readonly kind: "failed"; readonly reason: string };

/** The job's work, in whichever thread runs it. The parse's own copies of the secrets are wiped. */
export function parseJob(job: ParseJob, opts: ClientsConfigOptions = job.opts): ParseReply {
  const text = decodeConfigText(job.bytes);
  if (typeof text !== "string") return { kind: "failed", reason: `${job.file}: line ${text.badLine} is not valid UTF-8` };
  const digest = textDigest(text);
  if (job.lastDigest !== undefined && digest === job.lastDigest) return { kind: "unchanged" };
  let clients: ClientSettings[];
  try {
    clients = parseClientsConfig(text, job.file, opts, digest);
  } catch (error) {
    // A ConfigError's message already names the file, line and key.
    return { kind: "failed", reason: error instanceof Error ? error.message : String(error) };
  }
  const reply = { kind: "parsed" as const, packed: packClients(clients), digest: parsedTextDigest(clients), warnings: clientKeyWarnings(clients, LOGGED_WARNINGS_PER_KIND) };
  for (const c of clients) c.secret.fill(0);
  return reply;
}

/** The worker thread's module, built beside this one. */
const WORKER = new URL("../../workers/clients-conf.js", import.meta.url);

/**
 * Parses `bytes` (clients.conf as read by a reload) in a worker thread;
 * "unchanged" when its text's digest is `lastDigest`. The bytes are
 * copied to the thread, not given: should it fail, they are parsed here
 * (never a file read as empty, which would remove every client), and
 * wiped once parsed. The clients the same as in `previous` (the running
 * file's) are its objects (unpackClients). Options with functions in them
 * (tests) cannot cross to a thread: such a parse runs here.
 */
export async function parseClientsFile(
  bytes: Buffer,
  file: string,
  lastDigest: string | undefined,
  previous: readonly ClientSettings[],
  opts: ClientsConfigOptions = {},
  /** The thread's module (tests give one that fails). */
  worker: URL = WORKER,
): Promise<ParsedText> {
  const { env, currentUser, secfileBase } = opts;
  const job: ParseJob = { bytes, file, lastDigest, opts: { env, currentUser, secfileBase } };
  const functions = opts.homeOf !== undefined || opts.readSecfile !== undefined || opts.onRelativeSecfile !== undefined;
  const reply = (functions ? null : await inWorker(job, worker)) ?? parseJob(job, opts);
  bytes.fill(0);
  if (reply.kind !== "parsed") return reply;
  const clients = unpackClients(reply.packed, previous);
  if (reply.digest !== undefined) rememberParsedText(clients, reply.digest);
  return { kind: "parsed", clients, warnings: reply.warnings };
}

/** The worker's reply, or null if it gave none (the caller parses here). */
function inWorker(job: ParseJob, module: URL): Promise<ParseReply | null> {
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(module, { workerData: job });
    } catch {
      resolve(null);
      return;
    }
    worker.once("message", (reply: ParseReply) => {
      resolve(reply);
      void worker.terminate();
    });
    worker.once("error", (error: Error & { code?: string }) => {
      resolve(error.code === "ERR_WORKER_OUT_OF_MEMORY" ? { kind: "failed", reason: "the parse ran out of memory" } : null);
    });
    worker.once("exit", () => resolve(null));
  });
}
