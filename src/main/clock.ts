// Time for the parts of the server that schedule things (checkers, expiry,
// approvals, connection deadlines), passed in so tests can drive it.
// Two clocks: the wall clock (now) for what is shown, saved and shared
// with other servers, and a monotonic one (elapsed) for every wait and
// deadline, which an NTP step of the wall clock must not move: a step
// forward past a client's timeout disabled every client at once, a step
// back kept a failing one enabled and throttled sources for its length.
// setTimeout here accepts any duration: Node's own fires at once beyond
// 2^31-1 ms (24.8 days), which a `timeout = 30d` would hit; the heap below
// wakes at most that far ahead and looks again.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch: the wall clock, which NTP may step. */
  now(): number;
  /**
   * Monotonic milliseconds from an arbitrary origin: for how long things
   * take and when they are due; the timers below run on it.
   */
  elapsed(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /**
   * The same, calling `fn(arg)`: one function shared by many timers (a
   * client's checker, a connection's deadline) instead of a closure and
   * its context for each, which a server with 10,000 clients keeps in the
   * old generation, and every full collection walks.
   */
  setTimeoutWith<T>(fn: (arg: T) => void, ms: number, arg: T): TimerHandle;
}

/** Node's longest timer (a longer one fires at once, see above). */
const MAX_TIMER = 2 ** 31 - 1;

/**
 * One timer of systemClock: its place in the heap and what it runs. The
 * object is the handle; it holds no closure of its own.
 */
class ScheduledTimer implements TimerHandle {
  /** Monotonic milliseconds (performance.now()) when it is due. */
  at: number;
  /** Tie-break: timers due at the same moment fire in the order they were set. */
  readonly seq: number;
  fn: ((arg: unknown) => void) | null;
  /** What fn is called with. */
  arg: unknown;
  /** Its index in the heap's array; -1 once fired or cancelled. */
  index = -1;

  constructor(fn: (arg: unknown) => void, arg: unknown, at: number, seq: number) {
    this.fn = fn;
    this.arg = arg;
    this.at = at;
    this.seq = seq;
  }

  cancel(): void {
    if (this.index >= 0) timers.remove(this);
    this.fn = null;
    this.arg = undefined;
  }
}

/**
 * Every systemClock timer of the thread in one binary min-heap ordered by
 * (at, seq), behind one unreferenced Node timer set for the earliest.
 *
 * Why not a Node timer each: a server with 10,000 clients holds two timers
 * a client (checker, expiry) with durations all different, and Node keeps
 * a Timeout object and a TimersList for each distinct duration in its own
 * priority queue: ~5 MiB of heap (measured in a heap snapshot) that every
 * full collection walks, and a connection's four deadlines added a Timeout,
 * a wrapper and an async ID each. Here a timer is one small object.
 *
 * Invariants: `heap[i].index === i`; a parent is due no later than its
 * children; the Node timer, when set, is due no later than heap[0]
 * (a cancelled head leaves it early: it then wakes, finds nothing due and
 * sets itself for the new head).
 */
class TimerHeap {
  readonly #heap: ScheduledTimer[] = [];
  #seq = 0;
  #node: NodeJS.Timeout | undefined;
  /** When the Node timer is due (monotonic ms); Infinity when none is set. */
  #nodeAt = Infinity;
  readonly #fire = (): void => this.#runDue();

  /** The time timers set now count from, or -1: see #now(). */
  #runNow = -1;
  readonly #endRun = (): void => {
    this.#runNow = -1;
  };

  /**
   * The time at the start of the current run of JavaScript (until the next
   * microtask checkpoint), as Node's timers count from the event loop's
   * cached time: timers set in one run for one delay are due together.
   */
  #now(): number {
    if (this.#runNow < 0) {
      this.#runNow = performance.now();
      queueMicrotask(this.#endRun);
    }
    return this.#runNow;
  }

  /** While a pass runs, the time up to which it runs timers (-Infinity between passes). */
  #passUntil = -Infinity;

  add(fn: (arg: unknown) => void, arg: unknown, ms: number): ScheduledTimer {
    // One set by a callback of a pass sorts after every timer that pass
    // still runs: it waits for the next pass, as Node's do.
    const at = Math.max(this.#now() + Math.max(0, ms), this.#passUntil);
    const timer = new ScheduledTimer(fn, arg, at, this.#seq++);
    this.#up(timer, this.#heap.length);
    if (at < this.#nodeAt) this.#arm(at);
    return timer;
  }

  remove(timer: ScheduledTimer): void {
    const heap = this.#heap;
    const i = timer.index;
    const last = heap.pop()!;
    timer.index = -1;
    if (last === timer) return;
    // The last timer takes the hole, then moves up or down to its place.
    if (i > 0 && TimerHeap.#before(last, heap[(i - 1) >> 1]!)) this.#up(last, i);
    else this.#down(last, i);
  }

  #arm(at: number): void {
    if (this.#node !== undefined) clearTimeout(this.#node);
    this.#nodeAt = at;
    const wait = Math.min(MAX_TIMER, Math.max(1, Math.ceil(at - performance.now())));
    this.#node = setTimeout(this.#fire, wait);
    this.#node.unref();
  }

  #runDue(): void {
    this.#node = undefined;
    this.#nodeAt = Infinity;
    const heap = this.#heap;
    // Due within the next millisecond counts as due: Node's timer, counting
    // from the event loop's cached time, may wake us a little before.
    const now = performance.now() + 1;
    const setBefore = this.#seq;
    this.#passUntil = now;
    try {
      for (let head = heap[0]; head !== undefined && head.at <= now && head.seq < setBefore; head = heap[0]) {
        this.remove(head);
        const fn = head.fn!;
        const arg = head.arg;
        head.fn = null;
        head.arg = undefined;
        fn(arg);
      }
    } finally {
      this.#passUntil = -Infinity;
      // A callback that throws still leaves the others scheduled.
      const head = heap[0];
      if (head !== undefined && head.at < this.#nodeAt) this.#arm(head.at);
    }
  }

  /** Puts `timer` at hole `i` or above it, moving the later parents down. */
  #up(timer: ScheduledTimer, i: number): void {
    const heap = this.#heap;
    for (let p = (i - 1) >> 1; i > 0 && TimerHeap.#before(timer, heap[p]!); i = p, p = (i - 1) >> 1) this.#put(heap[p]!, i);
    this.#put(timer, i);
  }

  /** Puts `timer` at hole `i` or below it, moving the earlier children up. */
  #down(timer: ScheduledTimer, i: number): void {
    const heap = this.#heap;
    for (let c = 2 * i + 1; c < heap.length; i = c, c = 2 * i + 1) {
      if (c + 1 < heap.length && TimerHeap.#before(heap[c + 1]!, heap[c]!)) c++;
      if (!TimerHeap.#before(heap[c]!, timer)) break;
      this.#put(heap[c]!, i);
    }
    this.#put(timer, i);
  }

  /** The one place a timer's slot is written: keeps `heap[i].index === i`. */
  #put(timer: ScheduledTimer, i: number): void {
    this.#heap[i] = timer;
    timer.index = i;
  }

  static #before(a: ScheduledTimer, b: ScheduledTimer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }
}

/** This thread's systemClock timers (each worker thread has its own module instance). */
const timers = new TimerHeap();

export const systemClock: Clock = {
  now: () => Date.now(),
  elapsed: () => performance.now(),
  setTimeout: (fn, ms) => timers.add(fn, undefined, ms),
  setTimeoutWith: (fn, ms, arg) => timers.add(fn as (arg: unknown) => void, arg, ms),
};

/** A clock that moves only when told to: for tests. */
export class ManualClock implements Clock {
  #now: number;
  #elapsed = 0;
  #timers: Array<{ at: number; seq: number; fn: () => void; live: boolean }> = [];
  #seq = 0;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  elapsed(): number {
    return this.#elapsed;
  }

  /** Steps the wall clock only (NTP's step), by `ms` (negative: back); no timer fires. */
  stepWall(ms: number): void {
    this.#now += ms;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer = { at: this.#elapsed + Math.max(0, ms), seq: this.#seq++, fn, live: true };
    this.#timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }

  setTimeoutWith<T>(fn: (arg: T) => void, ms: number, arg: T): TimerHandle {
    return this.setTimeout(() => fn(arg), ms);
  }

  /** Moves time forward, firing due timers in order (including ones they set). */
  advance(ms: number): void {
    const end = this.#elapsed + ms;
    for (;;) {
      this.#timers = this.#timers.filter((t) => t.live);
      this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#timers[0];
      if (!next || next.at > end) break;
      this.#now += next.at - this.#elapsed;
      this.#elapsed = next.at;
      next.live = false;
      next.fn();
    }
    this.#now += end - this.#elapsed;
    this.#elapsed = end;
  }
}
