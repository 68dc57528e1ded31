// The real handshake worker (../../src/workers/handshake.ts), of which the
// first to load fails once it has been idle a while: an uncaught error in
// a loaded worker with no task (test/handshake-runner.test.ts). Idle for
// two looks 50 ms apart, from 300 ms after it loaded: a task in hand when
// it failed would be that task's error instead, which Piscina does not
// emit. The first is the one that makes $MANDOS_TS_TEST_FAIL_ONCE (a
// directory: made once, atomically, whichever thread tries).

import { mkdirSync } from "node:fs";
import type { WorkerRequest, WorkerResponse } from "../../src/workers/handshake-protocol.js";

export = import("../../src/workers/handshake.js").then((m) => {
  let running = 0;
  const handler = async (request: WorkerRequest): Promise<WorkerResponse> => {
    running++;
    try {
      return await m.default(request);
    } finally {
      running--;
    }
  };
  let first = false;
  try {
    mkdirSync(process.env.MANDOS_TS_TEST_FAIL_ONCE ?? "");
    first = true;
  } catch {
    // made already: not the first
  }
  if (first) {
    let idleLooks = 0;
    const look = (): void => {
      idleLooks = running === 0 ? idleLooks + 1 : 0;
      if (idleLooks < 2) {
        setTimeout(look, 50);
        return;
      }
      throw new Error("a loaded worker failed outside any task");
    };
    setTimeout(look, 300);
  }
  return handler;
});
