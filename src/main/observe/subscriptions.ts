// A set of channel subscriptions undone together: what each subscriber of
// events.ts (metrics, audit, health) keeps so that it can stop listening.

import type { Channel } from "../events.js";

export class Subscriptions {
  readonly #undo: Array<() => void> = [];

  on<T>(channel: Channel<T>, handler: (message: T) => void): void {
    channel.subscribe(handler);
    this.#undo.push(() => channel.unsubscribe(handler));
  }

  close(): void {
    for (const undo of this.#undo.splice(0)) undo();
  }
}
