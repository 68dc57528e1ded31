// A handshake worker of another build whose answer reaches the server
// before its "another build" message does (test/handshake-runner.test.ts):
// the order the real worker (src/workers/handshake.ts) leaves to the two
// channels' timing. It answers a batch of handshakes at once with
// { kind: "otherBuild" } and posts its OtherBuild message only 200 ms
// after. A key-share refill it answers with no shares (the pool asks
// again), so that the batch's answer is the first "another build" the
// pool hears.

import { parentPort } from "node:worker_threads";
import type { OtherBuild, WorkerRequest, WorkerResponse } from "../../src/workers/handshake-protocol.js";

/** What the answer says, and what the message says: the test tells which the server logged. */
const ANSWERED = "another build (said in the answer)";
const POSTED = "another build (said in the message)";

let posted = false;

export = (request: WorkerRequest): Promise<WorkerResponse> => {
  if (request.kind === "keygen") return Promise.resolve({ kind: "keygen", shares: [] });
  if (!posted) {
    posted = true;
    setTimeout(() => parentPort?.postMessage({ otherBuild: POSTED } satisfies OtherBuild), 200);
  }
  return Promise.resolve({ kind: "otherBuild", message: ANSWERED });
};
