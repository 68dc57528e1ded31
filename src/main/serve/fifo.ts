// A first-in-first-out queue for the accept path's bursts: the admission's
// queues and slow pool, the listener's connections waiting for their line.

/** A first-in-first-out queue with O(1) shift on large bursts. */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Takes the newest out. */
  pop(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    return this.#items.pop();
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}
