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
//           handshake threads sit idle. Once the pool is full and a
//           connection waits for a slot, the pool's oldest handshake that
//           has waited SLOW_EVICT_AFTER_MS there, its peer still silent,
//           is closed (a failure of its source, Rule 3) and its place goes
//           to the next slow one: stalled peers beyond the slots and the
//           pool together cannot hold the slots for their 20 s either.
//           Sources that have caused failures lately (a score that each
//           failure raises by one and that decays with FAILING_DECAY_MS, at
//           FAILING_SCORE or more) wait in a ring of their own, behind the
//           others: when both rings wait, one slot in FAILING_TURN_EVERY
//           goes to a failing source. Without it, 300 hostile sources that
//           each kept a connection or two waiting put a real client that
//           had just come behind all 300 (an unlock of 0.5-0.7 s instead of
//           0.15 s, and 0.7-1.9 s with the legacy protocol's floods); now it
//           is served next. A source that failed once or twice (a disabled
//           machine behind a NAT address with its healthy neighbours) is
//           not held back.
//           A serve thread may close only its own, so each may hold
//           `slowReserve` beyond a full shared pool.
//   At the open connections cap (listener.ts), a new connection may take
//   the place of a slow handshake as above (evictSlow), or of the newest
//   connection waiting for a slot from the source with the most waiting, if that is
//   two or more and another source than the newcomer's (evictWaiter): a
//   crowd of sources that each sent a good line and wait cannot keep the
//   cap full against every other source.
//   Rule 3: each failure a source causes (bad version line, failed or
//           timed-out handshake, unknown key, a client refused its secret:
//           disabled, denied, approval timed out) takes a token from its bucket
//           (FAILURE_BURST, refilled at FAILURE_REFILL_PER_SECOND); a source
//           with no token left is refused at accept until one comes back.
//
// State per source lives only while it is needed: an entry goes once the
// source has nothing open, nothing waiting and a full bucket.
//
//   ring:    [src A] -> [src C] -> [src B]      sources with someone waiting
//   failing: [src D] -> [src E]                 ... that have failed lately
//   A.queue: [t1, t2, t3]  (tickets; a cancelled one is skipped when reached)

import type { Clock } from "../clock.js";
import { FAILING_DECAY_MS, FAILING_SCORE, FAILING_TURN_EVERY, FAILURE_BURST, FAILURE_REFILL_PER_SECOND, SLOW_EVICT_AFTER_MS } from "./limits.js";
import { Fifo } from "./fifo.js";
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
   * when the slow pool is full and no place could be made there
   * (SLOW_EVICT_AFTER_MS), or it was released; true if it moved now or
   * before.
   */
  slow(): boolean;
  /** The handshake has ended: its slot, or its place in the slow pool, goes to the next. Idempotent. */
  release(): void;
  /** Its source had failed lately when it was granted (Rule 2): its work waits behind others' on the handshake runner. */
  readonly behind: boolean;
  /** When it moved to the slow pool (Clock.elapsed; again once its peer answered an eviction's look), or null if it is not there. */
  readonly slowSince: number | null;
}

/** The admission's side of its tickets: shared by every ticket. */
interface TicketBook {
  /** A waiting ticket left its queue. */
  cancelled(ticket: Ticket): void;
}

/** Why a slot's or a waiting ticket's connection is asked to close. */
export type EvictReason = "slow-pool-full" | "open-limit";

/**
 * A place in a source's queue; it is its own SlotTicket (one object a
 * waiting connection, no closure), and it stays with the slot it is
 * granted, for the slot to close its waiter.
 */
class Ticket implements SlotTicket {
  readonly #start: (slot: Slot, waiter: unknown) => void;
  readonly #evict: ((waiter: unknown, why: EvictReason) => boolean) | undefined;
  readonly #waiter: unknown;
  readonly #book: TicketBook;
  live = true;
  /** The source whose queue it waits in; null if granted at once. */
  source: Source | null = null;

  constructor(start: (slot: Slot, waiter: unknown) => void, evict: ((waiter: unknown, why: EvictReason) => boolean) | undefined, waiter: unknown, book: TicketBook) {
    this.#start = start;
    this.#evict = evict;
    this.#waiter = waiter;
    this.#book = book;
  }

  start(slot: Slot): void {
    this.#start(slot, this.#waiter);
  }

  /** Asks the waiter to close: false if it would not (it no longer waits on its peer), or cannot be asked. */
  evict(why: EvictReason): boolean {
    return this.#evict?.(this.#waiter, why) ?? false;
  }

  cancel(): void {
    if (!this.live) return;
    this.live = false;
    this.#book.cancelled(this);
  }
}

interface Source {
  readonly key: string;
  open: number;
  readonly queue: Fifo<Ticket>;
  /** In the ring (it has, or had, tickets in its queue). */
  inRing: boolean;
  /** Live tickets in its queue. */
  waiting: number;
  tokens: number;
  refilledAt: number;
  /** Its failures lately: one each, decaying with FAILING_DECAY_MS from `failedAt`. */
  failScore: number;
  failedAt: number;
}

export interface AdmissionOptions {
  readonly clock: Clock;
  /** Open connections per source at most; 0 for no limit. */
  readonly maxPerSource: number;
  /** Handshake slots: handshakes that wait on us (a thread's CPU) at once. */
  readonly slots: number;
  /** Handshakes that wait on slow peers, beside the slots: the pool may be shared with other threads' admissions. None move there if not given. */
  readonly slowPool?: Limit | undefined;
  /** Places this admission may take beyond a full `slowPool` (a serve thread's SLOW_RESERVE_PER_THREAD); 0 if not given. */
  readonly slowReserve?: number | undefined;
}

/** Handshakes by where they are, for the metrics. */
export interface HandshakeCounts {
  /** Holding a handshake slot. */
  readonly holding: number;
  /** In the slow pool: waiting on a slow peer. */
  readonly slow: number;
  /** Sent a good version line, waiting for a slot. */
  readonly waiting: number;
  /** Closed in the slow pool to make room, since the start (SLOW_EVICT_AFTER_MS). */
  readonly evictedSlow: number;
  /** Connections waiting for a slot closed for another source's at the open connections cap, since the start. */
  readonly evictedWaiting: number;
  /** Connections without their version line closed at the open connections cap (the listener's, silentEvicted), since the start. */
  readonly evictedSilent: number;
}

/** The admission's side of its granted slots. */
interface SlotPool {
  /** Moves a held slot's handshake to the slow pool if it can: its state is "slow" then. */
  moveToSlow(slot: GrantedSlot): void;
  /** Ends a held or slow slot: its state is "released" then. */
  release(slot: GrantedSlot): void;
}

class GrantedSlot implements Slot {
  state: "held" | "slow" | "released" = "held";
  /** When it moved to the slow pool. */
  movedAt = 0;
  /** Its place in the slow pool is one of the admission's reserve, not the (shared) pool's. */
  reserve = false;
  readonly #pool: SlotPool;
  readonly #ticket: Ticket;
  readonly behind: boolean;

  constructor(pool: SlotPool, ticket: Ticket, behind: boolean) {
    this.#pool = pool;
    this.#ticket = ticket;
    this.behind = behind;
  }

  slow(): boolean {
    if (this.state === "held") this.#pool.moveToSlow(this);
    return this.state === "slow";
  }

  get slowSince(): number | null {
    return this.state === "slow" ? this.movedAt : null;
  }

  release(): void {
    if (this.state !== "released") this.#pool.release(this);
  }

  /** Asks its connection to close (it releases the slot as it does): false if it would not. */
  evict(why: EvictReason): boolean {
    return this.#ticket.evict(why);
  }
}

/** What requestSlot returns when the slot was granted at once. */
const GRANTED: SlotTicket = { cancel() {} };

/** Slow handshakes whose peers have answered that one look for the oldest passes over. */
const EVICT_TRIES = 8;

// Sources kept before a sweep drops the idle ones; grows with the real count.
const SWEEP_FLOOR = 4096;

export class Admission {
  readonly #options: AdmissionOptions;
  readonly #sources = new Map<string, Source>();
  readonly #ring = new Fifo<Source>();
  /** Sources waiting that have failed lately: served one slot in FAILING_TURN_EVERY while the ring waits too. */
  readonly #failingRing = new Fifo<Source>();
  /** Slots granted from the ring since the last one from the failing ring. */
  #cleanTurns = 0;
  /** Granted slots not yet released, slow ones included. */
  #inFlight = 0;
  /** Of those, the ones in the slow pool (this admission's; the pool may be shared). */
  #slow = 0;
  readonly #slowPool: Limit;
  /** Places of the reserve taken (AdmissionOptions.slowReserve). */
  #reserved = 0;
  /**
   * This admission's slow slots, oldest move first; released ones are
   * dropped when they come to the front (#dropReleased, at each slow
   * one's release: so what it keeps is bounded by the slow handshakes of
   * the last HANDSHAKE_TIMEOUT_MS, since the front one ends by then).
   */
  readonly #slowOrder = new Fifo<GrantedSlot>();
  #evictedSlow = 0;
  #evictedWaiting = 0;
  #evictedSilent = 0;
  /** Sources by how many of their connections wait for a slot (1 and up): the crowds, for evictWaiter. */
  readonly #crowds = new Map<number, Set<Source>>();
  #mostWaiting = 0;
  /** Live tickets in the sources' queues. */
  #waiting = 0;
  #sweepAt = SWEEP_FLOOR;
  /** What a granted slot changes here: shared by every slot, so a handshake's slot is one small object. */
  readonly #pool: SlotPool = {
    moveToSlow: (slot) => this.#moveToSlow(slot),
    release: (slot) => {
      const wasSlow = slot.state === "slow";
      if (wasSlow) {
        this.#slow--;
        if (slot.reserve) this.#reserved--;
        else this.#slowPool.give();
      }
      slot.state = "released";
      if (wasSlow) this.#dropReleased();
      this.#inFlight--;
      this.#next();
    },
  };

  readonly #book: TicketBook = {
    cancelled: (ticket) => this.#dequeued(ticket),
  };

  constructor(options: AdmissionOptions) {
    this.#options = options;
    this.#slowPool = options.slowPool ?? new Limit(0);
  }

  /** Handshakes holding a slot, in the slow pool, and waiting for a slot. */
  get counts(): HandshakeCounts {
    return { holding: this.#inFlight - this.#slow, slow: this.#slow, waiting: this.#waiting, evictedSlow: this.#evictedSlow, evictedWaiting: this.#evictedWaiting, evictedSilent: this.#evictedSilent };
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
    const now = this.#options.clock.elapsed();
    source.failScore = this.#failScore(source, now) + 1;
    source.failedAt = now;
  }

  /** A source's failure score now. */
  #failScore(source: Source, now: number): number {
    return source.failScore === 0 ? 0 : source.failScore * Math.exp((source.failedAt - now) / FAILING_DECAY_MS);
  }

  /**
   * Asks for a handshake slot; `start(slot, waiter)` runs when granted, at
   * once if one is free and nobody waits (one function may serve every
   * waiter: connections pass a shared one and themselves). `evict(waiter,
   * why)` is how the admission closes a waiter to make room: one in the
   * slow pool for a connection that waits for a slot, or at the open
   * connections cap (evictSlow, evictWaiter). It closes the waiter (which
   * releases its slot or leaves its queue) and says true, or says false if
   * a slow one no longer waits on its peer. Without it the waiter is never
   * closed that way.
   */
  requestSlot<T>(key: string, start: (slot: Slot, waiter: T) => void, waiter: T, evict?: (waiter: T, why: EvictReason) => boolean): SlotTicket {
    const ticket = new Ticket(start as (slot: Slot, waiter: unknown) => void, evict as ((waiter: unknown, why: EvictReason) => boolean) | undefined, waiter, this.#book);
    if (this.#free() && this.#ring.length === 0 && this.#failingRing.length === 0) {
      ticket.live = false;
      const known = this.#sources.get(key);
      this.#grant(ticket, known !== undefined && this.#failing(known));
      return GRANTED;
    }
    const source = this.#source(key);
    this.#enqueued(source, ticket);
    if (!source.inRing) {
      source.inRing = true;
      this.#joinRing(source);
    }
    return ticket;
  }

  #grant(ticket: Ticket, behind: boolean): void {
    this.#inFlight++;
    ticket.start(new GrantedSlot(this.#pool, ticket, behind));
  }

  /** Rule 2: a held slot's handshake waits on its peer; it moves to the slow pool if there is a place, or one can be made. */
  #moveToSlow(slot: GrantedSlot): void {
    if (!this.#takeSlowPlace(slot)) {
      if (this.#waiting === 0 || !this.#evictOldest("slow-pool-full")) return;
      // With a shared pool another thread may have taken the place just given: then it waits on.
      if (!this.#takeSlowPlace(slot)) return;
    }
    slot.state = "slow";
    slot.movedAt = this.#options.clock.elapsed();
    this.#slowOrder.push(slot);
    this.#slow++;
    this.#next();
  }

  /**
   * Drops the released slots at the front of #slowOrder. Before 2026-12
   * they were dropped only by an eviction, which an unsaturated server
   * never makes: each slow handshake's slot, and through it its
   * connection, TLS state and keys (~3.8 KB of heap), stayed for the
   * process's life, 8 a second from one source abandoning handshakes.
   */
  #dropReleased(): void {
    for (let front = this.#slowOrder.peek(); front && front.state !== "slow"; front = this.#slowOrder.peek()) this.#slowOrder.shift();
  }

  #takeSlowPlace(slot: GrantedSlot): boolean {
    if (this.#slowPool.take()) {
      slot.reserve = false;
      return true;
    }
    if (this.#reserved < (this.#options.slowReserve ?? 0)) {
      this.#reserved++;
      slot.reserve = true;
      return true;
    }
    return false;
  }

  /**
   * Closes this admission's oldest slow handshake if it has waited
   * SLOW_EVICT_AFTER_MS on its peer; true if one was closed (its place is
   * free). One whose peer has answered since is not closed: its wait
   * starts again at the back, and a few more are tried.
   */
  #evictOldest(why: EvictReason): boolean {
    const now = this.#options.clock.elapsed();
    for (let answered = 0; answered < EVICT_TRIES;) {
      const oldest = this.#slowOrder.peek();
      if (!oldest || (oldest.state === "slow" && now - oldest.movedAt < SLOW_EVICT_AFTER_MS)) return false;
      this.#slowOrder.shift();
      if (oldest.state !== "slow") continue;
      if (oldest.evict(why)) {
        // Its connection released it as it closed; made sure of here.
        oldest.release();
        this.#evictedSlow++;
        return true;
      }
      oldest.movedAt = now;
      this.#slowOrder.push(oldest);
      answered++;
    }
    return false;
  }

  /**
   * At the open connections cap: closes this admission's oldest slow
   * handshake if its peer has kept it waiting SLOW_EVICT_AFTER_MS in the
   * pool (a failure of its source, as for a connection that waits for a
   * slot). True if one was closed.
   */
  evictSlow(): boolean {
    return this.#evictOldest("open-limit");
  }

  /**
   * At the open connections cap: closes the newest connection waiting for
   * a slot from the source with the most waiting here, if that is two or
   * more and `newcomer` is another source (its own crowd would gain
   * nothing). Not a failure of that source: it sent a good line, and is
   * closed for being many. True if one was closed.
   */
  evictWaiter(newcomer: string): boolean {
    for (let n = this.#mostWaiting; n >= 2; n--) {
      for (const source of this.#crowds.get(n) ?? []) {
        if (source.key === newcomer) continue;
        // The newest: the others have waited longer for their turn.
        let ticket = source.queue.pop();
        while (ticket && !ticket.live) ticket = source.queue.pop();
        if (!ticket) continue; // cannot be: `waiting` counts its live tickets
        ticket.live = false;
        this.#dequeued(ticket);
        if (ticket.evict("open-limit")) {
          this.#evictedWaiting++;
          return true;
        }
        // Its waiter cannot be closed (none given): it waits on, where it was.
        ticket.live = true;
        this.#enqueued(source, ticket);
        return false;
      }
    }
    return false;
  }

  /** The listener closed a connection without its version line at the open connections cap: counted with the others. */
  silentEvicted(): void {
    this.#evictedSilent++;
  }

  /** A live ticket joins the back of its source's queue. */
  #enqueued(source: Source, ticket: Ticket): void {
    source.queue.push(ticket);
    ticket.source = source;
    this.#waiting++;
    this.#countWaiting(source, 1);
  }

  /** A live ticket has left its source's queue (granted, cancelled or closed): it waits no more. */
  #dequeued(ticket: Ticket): void {
    this.#waiting--;
    if (ticket.source) this.#countWaiting(ticket.source, -1);
  }

  /** A source's live tickets change by `delta` (±1): its place among the crowds moves with them. */
  #countWaiting(source: Source, delta: 1 | -1): void {
    const from = source.waiting;
    const to = from + delta;
    if (from > 0) {
      const crowd = this.#crowds.get(from)!;
      crowd.delete(source);
      if (crowd.size === 0) this.#crowds.delete(from);
    }
    source.waiting = to;
    if (to > 0) {
      let crowd = this.#crowds.get(to);
      if (!crowd) this.#crowds.set(to, (crowd = new Set()));
      crowd.add(source);
    }
    // A count moves by one: the most falls to `to` only when it was the last at the most.
    if (to > this.#mostWaiting) this.#mostWaiting = to;
    else if (from === this.#mostWaiting && !this.#crowds.has(from)) this.#mostWaiting = to;
  }

  /** Whether a source has failed lately: enough to wait behind the others (Rule 2). */
  #failing(source: Source): boolean {
    return this.#failScore(source, this.#options.clock.elapsed()) >= FAILING_SCORE;
  }

  /** A source with tickets joins the back of its ring: the failing one if it has failed lately. */
  #joinRing(source: Source): void {
    if (this.#failing(source)) this.#failingRing.push(source);
    else this.#ring.push(source);
  }

  /**
   * The source whose turn it is: the ring's next, but every
   * FAILING_TURN_EVERY-th the failing ring's (or whenever the ring is
   * empty). A source of the ring that has failed since it joined goes to
   * the failing ring as its turn comes: a flood's sources, each in the ring
   * as their failures began, went on being served in turn for seconds.
   */
  #nextSource(): Source | undefined {
    for (;;) {
      if (this.#failingRing.length > 0 && (this.#ring.length === 0 || this.#cleanTurns >= FAILING_TURN_EVERY - 1)) {
        this.#cleanTurns = 0;
        return this.#failingRing.shift();
      }
      const source = this.#ring.shift();
      if (source === undefined || !this.#failing(source)) {
        this.#cleanTurns++;
        return source;
      }
      this.#failingRing.push(source);
    }
  }

  /** Free slots go to the next sources in the rings. */
  #next(): void {
    while (this.#free()) {
      const source = this.#nextSource();
      if (!source) return;
      let ticket = source.queue.shift();
      while (ticket && !ticket.live) ticket = source.queue.shift();
      if (source.queue.length > 0) this.#joinRing(source);
      else {
        source.inRing = false;
        this.#forgetIfIdle(source);
      }
      if (!ticket) continue;
      ticket.live = false;
      this.#dequeued(ticket);
      this.#grant(ticket, this.#failing(source));
    }
  }

  #source(key: string): Source {
    let source = this.#sources.get(key);
    if (!source) {
      if (this.#sources.size >= this.#sweepAt) this.#sweep();
      source = { key, open: 0, queue: new Fifo(), inRing: false, waiting: 0, tokens: FAILURE_BURST, refilledAt: this.#options.clock.elapsed(), failScore: 0, failedAt: 0 };
      this.#sources.set(key, source);
    }
    return source;
  }

  #refill(source: Source): void {
    const now = this.#options.clock.elapsed();
    source.tokens = Math.min(FAILURE_BURST, source.tokens + ((now - source.refilledAt) * FAILURE_REFILL_PER_SECOND) / 1000);
    source.refilledAt = now;
  }

  /** Forgotten, it would come back with a full bucket and no failures: kept until its failures no longer count. */
  #forgetIfIdle(source: Source): void {
    if (source.open > 0 || source.inRing) return;
    this.#refill(source);
    if (source.tokens < FAILURE_BURST) return;
    const score = this.#failScore(source, this.#options.clock.elapsed());
    if (score < 1) this.#sources.delete(source.key);
  }

  #sweep(): void {
    for (const source of [...this.#sources.values()]) this.#forgetIfIdle(source);
    this.#sweepAt = Math.max(SWEEP_FLOOR, 2 * this.#sources.size);
  }
}
