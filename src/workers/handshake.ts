// The Piscina worker: runs the TLS engine's expensive steps off the main
// thread. Stateless: each request carries all it needs and returns plain
// data. Handshake tasks and key shares come in batches, so that a burst of
// connections costs one message round trip per batch, not per connection.
// A batch of TLS 1.3 tasks is answered synchronously; one holding a TLS 1.2
// flight (async: OpenPGP.js, imported by the first such task) is answered
// when all of its tasks are done.
//
// A worker started again after the installation changed (src/build.ts) is
// of another build than the server: it says so and runs no task.

import { parentPort, workerData } from "node:worker_threads";
import { otherBuildThan } from "../build.js";
import { packBytes } from "./pack-bytes.js";
import { generateEphemeralKeyShares, runHandshakeTask, type EphemeralKeyShares } from "../tls/index.js";
import { WORKER_LOADED, type BatchedResult, type HandshakeWorkerData, type OtherBuild, type WorkerRequest, type WorkerResponse } from "./handshake-protocol.js";

const otherBuild = otherBuildThan((workerData as Partial<HandshakeWorkerData> | null | undefined)?.build);
parentPort?.postMessage(otherBuild === null ? WORKER_LOADED : ({ otherBuild } satisfies OtherBuild));

export default function work(request: WorkerRequest): WorkerResponse | Promise<WorkerResponse> {
  if (otherBuild !== null) return { kind: "otherBuild", message: otherBuild };
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
