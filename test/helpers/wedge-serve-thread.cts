// A preload (`node -r`, through NODE_OPTIONS) for tests: in a serve thread
// (its workerData has `stride`: src/main/serve/serve-protocol.ts), once the
// file $MANDOS_TS_TEST_WEDGE appears, the one thread that takes it (a
// rename, atomic) loops for ever, as a thread wedged by a bug would: it
// answers nothing again. Elsewhere (the main thread, the handshake workers,
// the checker host) it does nothing.

import { renameSync } from "node:fs";
import { isMainThread, workerData } from "node:worker_threads";

const trigger = process.env.MANDOS_TS_TEST_WEDGE;
if (!isMainThread && trigger !== undefined && typeof (workerData as { stride?: unknown } | null)?.stride === "number") {
  const look = setInterval(() => {
    try {
      renameSync(trigger, `${trigger}.taken`);
    } catch {
      return;
    }
    for (;;) {
      // wedged
    }
  }, 50);
  look.unref();
}
