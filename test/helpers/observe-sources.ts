// What Observability reads of a server, for tests: an idle one (no
// clients, no handshakes, accepting, its state kept), with `over` in place.

import type { ObserveSources } from "../../src/main/observe/index.js";

export function idleSources(over: Partial<ObserveSources> = {}): ObserveSources {
  return {
    clientCounts: () => ({ enabled: 0, disabled: 0, awaitingApproval: 0, checkersRunning: 0, checkersWaiting: 0, secretSealed: 0 }),
    handshakes: () => ({ holding: 0, slow: 0, waiting: 0, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 }),
    workers: 0,
    workerQueue: () => 0,
    accepting: () => true,
    listenerLost: () => null,
    stateNotKept: () => null,
    ...over,
  };
}
