// The real handshake worker (../../src/workers/handshake.ts), of which the
// first to load fails 300 ms later outside any task: an uncaught error in
// a loaded worker with nothing to do (test/handshake-runner.test.ts). The
// first is the one that makes $MANDOS_TS_TEST_FAIL_ONCE (a directory: made
// once, atomically, whichever thread tries).

import { mkdirSync } from "node:fs";

export = import("../../src/workers/handshake.js").then((m) => {
  let first = false;
  try {
    mkdirSync(process.env.MANDOS_TS_TEST_FAIL_ONCE ?? "");
    first = true;
  } catch {
    // made already: not the first
  }
  if (first) {
    setTimeout(() => {
      throw new Error("a loaded worker failed outside any task");
    }, 300);
  }
  return m.default;
});
