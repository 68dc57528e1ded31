// The Piscina worker: runs the TLS engine's expensive steps off the main
// thread. Stateless: each request carries all it needs and returns plain
// data. Handshake tasks and key shares come in batches, so that a burst of
// connections costs one message round trip per batch, not per connection.
// A batch of TLS 1.3 tasks is answered synchronously; one holding a TLS 1.2
// flight (async: OpenPGP.js, imported by the first such task) is answered
// when all of its tasks are done.

import { parentPort } from "node:worker_threads";
import { packBytes } from "./pack-bytes.js";
import { generateEphemeralKeyShares, runHandshakeTask, type EphemeralKeyShares, type HandshakeTask, type HandshakeTaskResult, type NamedGroup } from "../tls/index.js";

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
  | { readonly kind: "keygen"; readonly shares: EphemeralKeyShares[] };

/**
 * Posted once this module and everything it imports are loaded (the pool
 * relays it as a "message" event): the server waits for it from every
 * worker before it drops privileges, because a worker reads its code from
 * disk as it starts, and an installation may be readable by root alone.
 */
export const WORKER_LOADED = "mandos-ts:handshake-worker-loaded";
parentPort?.postMessage(WORKER_LOADED);

export default function work(request: WorkerRequest): WorkerResponse | Promise<WorkerResponse> {
  if (request.kind === "keygen") {
    const shares: EphemeralKeyShares[] = [];
    for (let i = 0; i < request.count; i++) shares.push(generateEphemeralKeyShares(request.groups));
    return packBytes({ kind: "keygen", shares });
  }
  let async = false;
  const results = request.tasks.map((task): BatchedResult | Promise<BatchedResult> => {
    try {
      const result = runHandshakeTask(task, { knownKeys: request.knownKeys });
      if (!(result instanceof Promise)) return { ok: true, result };
      async = true;
      return result.then((r): BatchedResult => ({ ok: true, result: r }), failed);
    } catch (error) {
      return failed(error);
    }
  });
  if (!async) return packBytes({ kind: "handshakes", results: results as BatchedResult[] });
  return Promise.all(results).then((all) => packBytes({ kind: "handshakes", results: all }));
}

/** runHandshakeTask is exception-free by contract; a bug must not fail the batch. */
function failed(error: unknown): BatchedResult {
  return { ok: false, error: error instanceof Error ? error.message : String(error) };
}
