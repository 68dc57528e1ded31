// The real handshake worker (../../src/workers/handshake.ts), made to
// misbehave for test/handshake-worker-replaced.test.ts:
// - the first worker to get a request of the kind $MANDOS_TS_TEST_MISBEHAVE_ON
//   ("handshakes" or "keygen") does $MANDOS_TS_TEST_MISBEHAVE to it: "hang"
//   (an endless loop: a worker that never answers again) or "exit" (exits
//   with code 3 mid-request). The first is the one that makes the directory
//   $MANDOS_TS_TEST_MISBEHAVE_ONCE (atomically, whichever thread tries);
// - any worker given a key-share task for the group "poison" hangs: an
//   input that wedges whichever worker runs it.

import { mkdirSync } from "node:fs";
import type { WorkerRequest, WorkerResponse } from "../../src/workers/handshake-protocol.js";

function claimFirst(): boolean {
  try {
    mkdirSync(process.env.MANDOS_TS_TEST_MISBEHAVE_ONCE ?? "");
    return true;
  } catch {
    return false; // made already: another worker misbehaved
  }
}

function hang(): never {
  for (;;) {
    // a worker that never answers again
  }
}

export = import("../../src/workers/handshake.js").then((m) => (request: WorkerRequest): WorkerResponse | Promise<WorkerResponse> => {
  if (request.kind === "handshakes" && request.tasks.some((t) => t.kind === "key-share" && (t.group as string) === "poison")) hang();
  if (request.kind === process.env.MANDOS_TS_TEST_MISBEHAVE_ON && claimFirst()) {
    if (process.env.MANDOS_TS_TEST_MISBEHAVE === "exit") process.exit(3);
    hang();
  }
  return m.default(request);
});
