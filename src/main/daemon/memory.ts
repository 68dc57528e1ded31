// Start-up leaves garbage the size of clients.conf several times over (the
// file's text, its lines, parsed sections, the first state file). V8 keeps
// the pages it grew into until a full collection it may not run before the
// first reboot wave, so the server would enter the wave already holding
// them. One full collection after start-up gives them back.

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

let collect: (() => void) | undefined;

/** Runs a full garbage collection now (once start-up is over). */
export function collectStartupGarbage(): void {
  collectGarbage();
}

/** A full garbage collection, now (a serve thread's after a burst, see src/workers/serve.ts). */
export function collectGarbage(): void {
  if (!collect) {
    // The documented way to reach V8's gc() without starting node with
    // --expose-gc: set the flag, then take gc from a fresh context.
    setFlagsFromString("--expose-gc");
    collect = runInNewContext("gc") as () => void;
    setFlagsFromString("--no-expose-gc");
  }
  collect();
}
