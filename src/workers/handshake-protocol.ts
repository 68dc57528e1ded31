// What the server and its handshake workers (./handshake.ts) say to each
// other through Piscina: requests, responses and the two messages a worker
// posts as it loads. Its own module, so that the server (and a serve
// thread, which runs its handshakes inline) loads the protocol without the
// worker's code.

import type { BuildStamp } from "../build.js";
import type { EphemeralKeyShares, HandshakeTask, HandshakeTaskResult, NamedGroup } from "../tls/index.js";

export type WorkerRequest =
  | {
      readonly kind: "handshakes";
      readonly tasks: readonly HandshakeTask[];
      /** The server's known key IDs (src/tls/known-keys.ts), shared, not copied. */
      readonly knownKeys?: SharedArrayBuffer | null;
    }
  | { readonly kind: "keygen"; readonly groups: readonly NamedGroup[]; readonly count: number };

/** One task's outcome in a batch: a failure stays that task's own. */
export type BatchedResult = { readonly ok: true; readonly result: HandshakeTaskResult } | { readonly ok: false; readonly error: string };

export type WorkerResponse =
  | { readonly kind: "handshakes"; readonly results: BatchedResult[] }
  | { readonly kind: "keygen"; readonly shares: EphemeralKeyShares[] }
  /** From a worker of another build (OtherBuild), to every request: `message` is what to log. */
  | { readonly kind: "otherBuild"; readonly message: string };

/**
 * Posted once the worker's module and all it imports are loaded (the pool
 * relays it as a "message" event): the server waits for it from every
 * worker before it drops privileges, because a worker reads its code from
 * disk as it starts, and an installation may be readable by root alone.
 */
export const WORKER_LOADED = "mandos-ts:handshake-worker-loaded";

/** What the pool gives each worker (Piscina's workerData). */
export interface HandshakeWorkerData {
  /** The server's build, read as it started. */
  readonly build: BuildStamp;
}

/**
 * Posted instead of WORKER_LOADED by a worker whose files are another
 * build than the server's (`otherBuild` is what to log); it then answers
 * every request with { kind: "otherBuild" }. Every later build must do
 * both alike (src/build.ts).
 */
export interface OtherBuild {
  readonly otherBuild: string;
}
