// Bounds that hold for the whole process however many threads count
// against them: open connections (they are the process's descriptors) and
// the slow pool (its memory). Serve threads accept from one shared socket,
// and whichever thread is woken first takes a whole burst, so a thread's
// fixed share of such a bound failed while another thread's share lay
// idle: 640 stalled peers, 526 of them on one of two threads, filled that
// thread's 256 slots and its 256 of the slow pool while the other thread
// held 115, and a real client waited behind them for 20 s
// (docs/ARCHITECTURE.md, "Serve threads"). Each bound is one Int32 cell
// that every thread changes with Atomics; inline, a cell of its own.
// Handshake slots are not here: they are a thread's CPU, its own.

/** A count that may not pass `max`; one cell, shared or not. */
export class Limit {
  readonly max: number;
  readonly #cells: Int32Array;
  readonly #index: number;

  /** A bound of this thread alone, or one cell of `cells` that other threads share. */
  constructor(max: number, cells: Int32Array = new Int32Array(1), index = 0) {
    this.max = max;
    this.#cells = cells;
    this.#index = index;
  }

  /** Counts one more if that stays within max; false (nothing counted) if not. */
  take(): boolean {
    // Compare-and-swap, not add-then-undo: a failed take that counted for
    // a moment could make another thread's take fail with room left.
    for (let n = Atomics.load(this.#cells, this.#index); n < this.max;) {
      const seen = Atomics.compareExchange(this.#cells, this.#index, n, n + 1);
      if (seen === n) return true;
      n = seen;
    }
    return false;
  }

  /** Gives back one that take() counted. */
  give(): void {
    Atomics.sub(this.#cells, this.#index, 1);
  }

  /** How many are counted now, every thread's together. */
  get taken(): number {
    return Atomics.load(this.#cells, this.#index);
  }
}

/** The process-wide bounds that serve threads share: posted to each as its workerData. */
export interface SharedBounds {
  /** One Int32 cell for each bound: open connections, then the slow pool. */
  readonly cells: SharedArrayBuffer;
  readonly maxOpen: number;
  readonly maxSlow: number;
}

export function sharedBounds(maxOpen: number, maxSlow: number): SharedBounds {
  return { cells: new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT), maxOpen, maxSlow };
}

/** A thread's view of the shared bounds. */
export interface SharedLimits {
  /** Open connections, every thread's. */
  readonly open: Limit;
  /** Handshakes in the slow pool, every thread's. */
  readonly slow: Limit;
}

export function sharedLimits(bounds: SharedBounds): SharedLimits {
  const cells = new Int32Array(bounds.cells);
  return { open: new Limit(bounds.maxOpen, cells, 0), slow: new Limit(bounds.maxSlow, cells, 1) };
}
