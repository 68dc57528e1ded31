// A handshake worker of another build whose answer reaches the server
// before its "another build" message does (test/handshake-runner.test.ts):
// the order the real worker (src/workers/handshake.ts) leaves to the two
// channels' timing. It answers a batch of handshakes with
// { kind: "otherBuild" } and posts no message at all. A key-share refill
// it answers with no shares (the pool asks again), so that the batch's
// answer is the only "another build" the pool hears.

import type { WorkerRequest, WorkerResponse } from "../../src/workers/handshake-protocol.js";

export = (request: WorkerRequest): Promise<WorkerResponse> =>
  Promise.resolve(request.kind === "keygen" ? { kind: "keygen", shares: [] } : { kind: "otherBuild", message: "another build (said in the answer)" });
