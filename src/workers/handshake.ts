// The Piscina worker: runs the TLS engine's expensive steps off the main
// thread. Stateless: each request carries all it needs and returns plain
// data. Handshake tasks and key shares come in batches, so that a burst of
// connections costs one message round trip per batch, not per connection.

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

export default function work(request: WorkerRequest): WorkerResponse {
  if (request.kind === "keygen") {
    const shares: EphemeralKeyShares[] = [];
    for (let i = 0; i < request.count; i++) shares.push(generateEphemeralKeyShares(request.groups));
    return { kind: "keygen", shares };
  }
  return {
    kind: "handshakes",
    results: request.tasks.map((task): BatchedResult => {
      try {
        return { ok: true, result: runHandshakeTask(task, { knownKeys: request.knownKeys }) };
      } catch (error) {
        // runHandshakeTask is exception-free by contract; a bug must not fail the batch.
        return { ok: false, error: error instanceof Error ? error.message : String(error) };
      }
    }),
  };
}
