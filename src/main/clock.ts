// Time for the parts of the server that schedule things (checkers, expiry,
// approvals), passed in so tests can drive it. setTimeout here accepts any
// duration: Node's own fires at once beyond 2^31-1 ms (24.8 days), which
// a `timeout = 30d` would hit, so long waits are chained.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

const MAX_TIMER = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => new SystemTimer(fn, ms),
};

/**
 * One timer of systemClock: an object and Node's Timeout, and no closures
 * of its own. A server with 10,000 clients holds two timers a client
 * (checker, expiry), so each closure and context saved here is a few
 * hundred KiB of heap that every full collection would walk.
 */
class SystemTimer implements TimerHandle {
  readonly #fn: () => void;
  /** What is left to wait when the current Node timer fires (> 0: chained). */
  #left = 0;
  #timeout: NodeJS.Timeout | undefined;

  constructor(fn: () => void, ms: number) {
    this.#fn = fn;
    this.#arm(ms);
  }

  cancel(): void {
    clearTimeout(this.#timeout);
  }

  #arm(ms: number): void {
    this.#left = ms;
    this.#timeout = setTimeout(SystemTimer.#fire, Math.max(0, Math.min(ms, MAX_TIMER)), this);
    this.#timeout.unref();
  }

  static #fire(timer: SystemTimer): void {
    if (timer.#left > MAX_TIMER) timer.#arm(timer.#left - MAX_TIMER);
    else timer.#fn();
  }
}

/** A clock that moves only when told to: for tests. */
export class ManualClock implements Clock {
  #now: number;
  #timers: Array<{ at: number; seq: number; fn: () => void; live: boolean }> = [];
  #seq = 0;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, live: true };
    this.#timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }

  /** Moves time forward, firing due timers in order (including ones they set). */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      this.#timers = this.#timers.filter((t) => t.live);
      this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#timers[0];
      if (!next || next.at > end) break;
      this.#now = next.at;
      next.live = false;
      next.fn();
    }
    this.#now = end;
  }
}
