// Recording what the server publishes on events.ts's channels, for tests
// that assert on facts rather than on log text. Channels are process-wide:
// filter by address, port or client name.

import type { Channel } from "../../src/main/events.js";

export class Recorded<T> {
  readonly messages: T[] = [];
  readonly #channel: Channel<T>;
  readonly #waiters = new Set<() => void>();
  readonly #onMessage = (message: T): void => {
    this.messages.push(message);
    for (const w of this.#waiters) w();
  };

  constructor(channel: Channel<T>) {
    this.#channel = channel;
    channel.subscribe(this.#onMessage);
  }

  /** The first message, past or future, that matches (rejects after `ms` of real time: a failure, not a wait for a timer). */
  next(match: (message: T) => boolean, ms = 10_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.messages.find(match);
        if (found === undefined) return false;
        this.#waiters.delete(onMessage);
        clearTimeout(timer);
        resolve(found);
        return true;
      };
      const onMessage = (): void => void check();
      const timer = setTimeout(() => {
        this.#waiters.delete(onMessage);
        reject(new Error(`no matching message on ${this.#channel.name} within ${ms} ms`));
      }, ms);
      if (!check()) this.#waiters.add(onMessage);
    });
  }

  stop(): void {
    this.#channel.unsubscribe(this.#onMessage);
  }
}
