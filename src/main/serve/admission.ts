// Fair admission: who gets a socket, and who gets a handshake slot next.
//
// Three rules, each against one way a single hostile source starved a
// whole fleet (issue 16):
//   Rule 1: a source (source.ts: an IPv4 address or an IPv6 /64) holds at
//           most `maxPerSource` open connections; more are closed at accept.
//   Rule 2: handshake slots (limits.ts: HANDSHAKE_SLOTS_PER_WORKER, or
//           MAX_HANDSHAKES_IN_FLIGHT inline) go round-robin across the
//           sources that wait for one, oldest first within a source, so a
//           source with 3,000 waiting sockets and one with a single socket
//           are each served in turn. Only connections that sent a good
//           version line ask for a slot (connection.ts). A handshake that
//           has waited on its peer for PEER_SLOW_MS moves to the slow pool
//           (`slowPool`: inline its own, with serve threads one that every
//           thread counts against) and gives its slot to the next: a crowd
//           of slow or stalled peers cannot hold every slot while the
//           handshake threads sit idle.
//   Rule 3: each failure a source causes (bad version line, failed or
//           timed-out handshake, unknown key) takes a token from its bucket
//           (FAILURE_BURST, refilled at FAILURE_REFILL_PER_SECOND); a source
//           with no token left is refused at accept until one comes back.
//
// State per source lives only while it is needed: an entry goes once the
// source has nothing open, nothing waiting and a full bucket.
//
//   ring:    [src A] -> [src C] -> [src B]      sources with someone waiting
//   A.queue: [t1, t2, t3]  (tickets; a cancelled one is skipped when reached)

import type { Clock } from "../clock.js";
import { FAILURE_BURST, FAILURE_REFILL_PER_SECOND } from "./limits.js";
import { Limit } from "./shared-limit.js";

/** Why a connection was closed at accept. */
export type AdmissionRefusal = "source-limit" | "throttled";

/** A place in the queue for a handshake slot. */
export interface SlotTicket {
  /** Leaves the queue (no-op once granted). */
  cancel(): void;
}

/** A granted handshake slot. */
export interface Slot {
  /**
   * The handshake now waits on a slow peer: it moves to the slow pool and
   * its slot goes to the next connection. False (and it keeps its slot)
   * when the slow pool is full or it was released; true if it moved now
   * or before.
   */
  slow(): boolean;
  /** The handshake has ended: its slot, or its place in the slow pool, goes to the next. Idempotent. */
  release(): void;
}

/** A first-in-first-out queue with O(1) shift on large bursts. */
class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
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

/** The admission's side of its tickets: shared by every ticket. */
interface TicketBook {
  /** A waiting ticket left its queue. */
  cancelled(): void;
}

/** A place in a source's queue; it is its own SlotTicket (one object a waiting connection, no closure). */
class Ticket implements SlotTicket {
  readonly #start: (slot: Slot, waiter: unknown) => void;
  readonly #waiter: unknown;
  readonly #book: TicketBook;
  live = true;

  constructor(start: (slot: Slot, waiter: unknown) => void, waiter: unknown, book: TicketBook) {
    this.#start = start;
    this.#waiter = waiter;
    this.#book = book;
  }

  start(slot: Slot): void {
    this.#start(slot, this.#waiter);
  }

  cancel(): void {
    if (!this.live) return;
    this.live = false;
    this.#book.cancelled();
  }
}

interface Source {
  readonly key: string;
  open: number;
  readonly queue: Fifo<Ticket>;
  /** In the ring (it has, or had, tickets in its queue). */
  inRing: boolean;
  tokens: number;
  refilledAt: number;
}

export interface AdmissionOptions {
  readonly clock: Clock;
  /** Open connections per source at most; 0 for no limit. */
  readonly maxPerSource: number;
  /** Handshake slots: handshakes that wait on us (a thread's CPU) at once. */
  readonly slots: number;
  /** Handshakes that wait on slow peers, beside the slots: the pool may be shared with other threads' admissions. None move there if not given. */
  readonly slowPool?: Limit | undefined;
}

/** Handshakes by where they are, for the metrics. */
export interface HandshakeCounts {
  /** Holding a handshake slot. */
  readonly holding: number;
  /** In the slow pool: waiting on a slow peer. */
  readonly slow: number;
  /** Sent a good version line, waiting for a slot. */
  readonly waiting: number;
}

/** The admission's side of its granted slots. */
interface SlotPool {
  /** Takes a place in the slow pool, if it has room. */
  takeSlow(): boolean;
  /** A held slot's handshake has moved to the slow pool (its place taken): its slot is free. */
  movedToSlow(): void;
  release(wasSlow: boolean): void;
}

class GrantedSlot implements Slot {
  #state: "held" | "slow" | "released" = "held";
  readonly #pool: SlotPool;

  constructor(pool: SlotPool) {
    this.#pool = pool;
  }

  slow(): boolean {
    if (this.#state === "held" && this.#pool.takeSlow()) {
      this.#state = "slow";
      this.#pool.movedToSlow();
    }
    return this.#state === "slow";
  }

  release(): void {
    if (this.#state === "released") return;
    const wasSlow = this.#state === "slow";
    this.#state = "released";
    this.#pool.release(wasSlow);
  }
}

/** What requestSlot returns when the slot was granted at once. */
const GRANTED: SlotTicket = { cancel() {} };

// Sources kept before a sweep drops the idle ones; grows with the real count.
const SWEEP_FLOOR = 4096;

export class Admission {
  readonly #options: AdmissionOptions;
  readonly #sources = new Map<string, Source>();
  readonly #ring = new Fifo<Source>();
  /** Granted slots not yet released, slow ones included. */
  #inFlight = 0;
  /** Of those, the ones in the slow pool (this admission's; the pool may be shared). */
  #slow = 0;
  readonly #slowPool: Limit;
  /** Live tickets in the sources' queues. */
  #waiting = 0;
  #sweepAt = SWEEP_FLOOR;
  /** What a granted slot changes here: shared by every slot, so a handshake's slot is one small object. */
  readonly #pool: SlotPool = {
    takeSlow: () => this.#slowPool.take(),
    movedToSlow: () => {
      this.#slow++;
      this.#next();
    },
    release: (wasSlow) => {
      if (wasSlow) {
        this.#slow--;
        this.#slowPool.give();
      }
      this.#inFlight--;
      this.#next();
    },
  };

  readonly #book: TicketBook = {
    cancelled: () => {
      this.#waiting--;
    },
  };

  constructor(options: AdmissionOptions) {
    this.#options = options;
    this.#slowPool = options.slowPool ?? new Limit(0);
  }

  /** Handshakes holding a slot, in the slow pool, and waiting for a slot. */
  get counts(): HandshakeCounts {
    return { holding: this.#inFlight - this.#slow, slow: this.#slow, waiting: this.#waiting };
  }

  /** Whether a slot is free: fewer than `slots` handshakes hold one. */
  #free(): boolean {
    return this.#inFlight - this.#slow < this.#options.slots;
  }

  /** A connection from `key` was accepted: counts it, or says why it must be closed (then it is not counted). */
  enter(key: string): AdmissionRefusal | null {
    const source = this.#source(key);
    this.#refill(source);
    if (source.tokens < 1) return "throttled";
    const max = this.#options.maxPerSource;
    if (max > 0 && source.open >= max) return "source-limit";
    source.open++;
    return null;
  }

  /** A connection entered with `key` has closed. */
  leave(key: string): void {
    const source = this.#sources.get(key);
    if (!source) return;
    source.open--;
    this.#forgetIfIdle(source);
  }

  /** The source caused a failure (Rule 3). */
  failed(key: string): void {
    const source = this.#source(key);
    this.#refill(source);
    source.tokens = Math.max(0, source.tokens - 1);
  }

  /**
   * Asks for a handshake slot; `start(slot, waiter)` runs when granted, at
   * once if one is free and nobody waits (one function may serve every
   * waiter: connections pass a shared one and themselves).
   */
  requestSlot<T>(key: string, start: (slot: Slot, waiter: T) => void, waiter: T): SlotTicket {
    const ticket = new Ticket(start as (slot: Slot, waiter: unknown) => void, waiter, this.#book);
    if (this.#free() && this.#ring.length === 0) {
      ticket.live = false;
      this.#grant(ticket);
      return GRANTED;
    }
    const source = this.#source(key);
    source.queue.push(ticket);
    this.#waiting++;
    if (!source.inRing) {
      source.inRing = true;
      this.#ring.push(source);
    }
    return ticket;
  }

  #grant(ticket: Ticket): void {
    this.#inFlight++;
    ticket.start(new GrantedSlot(this.#pool));
  }

  /** Free slots go to the next sources in the ring. */
  #next(): void {
    while (this.#free()) {
      const source = this.#ring.shift();
      if (!source) return;
      let ticket = source.queue.shift();
      while (ticket && !ticket.live) ticket = source.queue.shift();
      if (source.queue.length > 0) this.#ring.push(source);
      else {
        source.inRing = false;
        this.#forgetIfIdle(source);
      }
      if (!ticket) continue;
      ticket.live = false;
      this.#waiting--;
      this.#grant(ticket);
    }
  }

  #source(key: string): Source {
    let source = this.#sources.get(key);
    if (!source) {
      if (this.#sources.size >= this.#sweepAt) this.#sweep();
      source = { key, open: 0, queue: new Fifo(), inRing: false, tokens: FAILURE_BURST, refilledAt: this.#options.clock.now() };
      this.#sources.set(key, source);
    }
    return source;
  }

  #refill(source: Source): void {
    const now = this.#options.clock.now();
    source.tokens = Math.min(FAILURE_BURST, source.tokens + ((now - source.refilledAt) * FAILURE_REFILL_PER_SECOND) / 1000);
    source.refilledAt = now;
  }

  #forgetIfIdle(source: Source): void {
    if (source.open > 0 || source.inRing) return;
    this.#refill(source);
    if (source.tokens >= FAILURE_BURST) this.#sources.delete(source.key);
  }

  #sweep(): void {
    for (const source of [...this.#sources.values()]) this.#forgetIfIdle(source);
    this.#sweepAt = Math.max(SWEEP_FLOOR, 2 * this.#sources.size);
  }
}
