// The heap: a full collection after start-up, and a warning when what
// stays alive nears V8's limit.
//
// Start-up leaves garbage the size of clients.conf several times over (the
// file's text, its lines, parsed sections, the first state file). V8 keeps
// the pages it grew into until a full collection it may not run before the
// first reboot wave, so the server would enter the wave already holding
// them. One full collection after start-up gives them back.
//
// bin/mandos caps the old generation (docs/OPERATION.md, "Memory"); a
// server whose clients outgrow the cap would stop with V8's "heap out of
// memory". HeapWatch looks at the heap after each full collection, when
// what is in use is what is alive, and says so in the log well before.
//
// No collection is forced once the server serves, in any thread: a forced
// (or V8's idle-time) collection lets the shapes of a wave's dead objects
// go and the code compiled for them with it, so that the next wave would
// run cold (bin/mandos turns V8's memory reducer off for the same reason;
// docs/OPERATION.md, "Memory").

import { constants, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";
import { getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Logger } from "./log.js";

let collect: (() => void) | undefined;

/** A full garbage collection, now (the server's one, once start-up is over); safe from several threads at once. */
export function collectGarbage(): void {
  if (!collect) {
    // The documented way to reach V8's gc() without starting node with
    // --expose-gc: set the flag, then take gc from a fresh context. The
    // flag stays set: V8's flags are the process's, not the thread's, and
    // a thread that set it back between another's set and take took gc
    // away from that one (a serve thread died of "gc is not defined" when
    // two went idle together). A gc in later contexts harms nothing here.
    setFlagsFromString("--expose-gc");
    const found: unknown = runInNewContext("typeof gc === 'function' ? gc : undefined");
    // Housekeeping must not kill a thread: without gc, no collection this time.
    if (typeof found !== "function") return;
    collect = found as () => void;
  }
  collect();
}

/** Alive after a full collection, as a share of V8's heap limit, from which HeapWatch warns. */
export const HEAP_WARN_SHARE = 0.5;
/** Below this share again, a later rise warns again. */
export const HEAP_REARM_SHARE = 0.4;

/** What HeapWatch reads: v8.getHeapStatistics()'s two figures. */
export type HeapFigures = () => { readonly used_heap_size: number; readonly heap_size_limit: number };

/** Warns (once a rise) when the heap alive after a full collection reaches HEAP_WARN_SHARE of its limit. */
export class HeapWatch {
  readonly #logger: Logger;
  readonly #figures: HeapFigures;
  readonly #afterFull: () => void;
  #observer: PerformanceObserver | null = null;
  #warned = false;

  /**
   * `figures`: where the heap's figures come from (V8's, or a test's);
   * `afterFull`: also run after each full collection (the server gives
   * malloc's free pages back then).
   */
  constructor(logger: Logger, options: { readonly figures?: HeapFigures; readonly afterFull?: () => void } = {}) {
    this.#logger = logger;
    this.#figures = options.figures ?? getHeapStatistics;
    this.#afterFull = options.afterFull ?? (() => undefined);
  }

  /** Looks now (call it after a full collection), then after each full collection V8 runs. */
  start(): void {
    this.check();
    if (this.#observer) return;
    this.#observer = new PerformanceObserver((list) => {
      if (!list.getEntries().some(isFullCollection)) return;
      this.check();
      this.#afterFull();
    });
    this.#observer.observe({ entryTypes: ["gc"] });
  }

  stop(): void {
    this.#observer?.disconnect();
    this.#observer = null;
  }

  /** One look: a warning when the heap in use is HEAP_WARN_SHARE of the limit or more, unless one was given for this rise. */
  check(): void {
    const { used_heap_size: used, heap_size_limit: limit } = this.#figures();
    if (limit <= 0) return;
    const share = used / limit;
    if (share < HEAP_REARM_SHARE) this.#warned = false;
    if (share < HEAP_WARN_SHARE || this.#warned) return;
    this.#warned = true;
    const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(0);
    this.#logger.warning(
      `Heap at ${mib(used)} of its ${mib(limit)} MiB limit (${Math.round(share * 100)}%) after a full collection: ` +
        "with more clients or connections the server will stop when it is full; " +
        "start it with a larger --max-old-space-size (docs/OPERATION.md, \"Memory\")",
    );
  }
}

function isFullCollection(entry: PerformanceEntry): boolean {
  // A "gc" entry's detail (Node's types leave it off PerformanceEntry).
  const { detail } = entry as PerformanceEntry & { readonly detail?: { readonly kind?: number } | null };
  return detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR;
}
