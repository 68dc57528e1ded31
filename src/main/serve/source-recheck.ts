// With serve threads, every thread's connections are counted per source on
// the main thread (admission.ts, Rule 1), from the batches each thread
// sends once a turn. A connection one thread closed is counted out only
// when that thread's batch arrives; a new connection from the same source
// that another thread accepted meanwhile can arrive first, and be counted
// against a source that no longer holds that many: a soak found a source
// holding 96 connections at once refused for 128 (1,570 of 9,000
// connections, 120 at once, with two threads).
//
// So a refusal for the source limit is not given at once. It is held, each
// thread is asked to send what it has (a "round"), and once every thread
// has answered it is decided again: each thread's leaves from before the
// refusal came are in by then (a thread's messages keep their order, and
// the connection that closed came before the one refused). A thread that
// answered early may have closed more since, counted only with its next
// batch, while the others' new connections were counted: a refusal still
// over at its round's end is held again, for up to MAX_RECHECK_ROUNDS (one
// round left 6-17 of 3,000 refused on Node 18). The refusals that come
// during a round wait for the next. Nothing else waits: an admitted
// connection, or one refused for its failures, is answered as before. With
// one thread its leaves and enters arrive in their order: nothing is held.

/** Rounds a refusal may be held for before it is given. */
export const MAX_RECHECK_ROUNDS = 3;

/** A thread, as the rounds see it. */
export interface RecheckPeer {
  /** Asks the thread to send what it has at once, with `round` (it answers through SourceRecheck.flushed). */
  flush(round: number): void;
  /** A thread that has ended answers no more. */
  readonly ended: boolean;
}

/** A refusal held for the next round. */
export interface HeldEnter<P extends RecheckPeer> {
  readonly peer: P;
  readonly id: number;
  readonly source: string;
  /** The rounds it has been held for, this one included. */
  readonly rounds: number;
}

/**
 * Decides a held refusal again at its round's end and answers it, true;
 * or false, with `last` false only, to hold it for one more round.
 */
export type Redecide<P extends RecheckPeer> = (held: HeldEnter<P>, last: boolean) => boolean;

export class SourceRecheck<P extends RecheckPeer> {
  readonly #peers: readonly P[];
  readonly #decide: Redecide<P>;
  #round = 0;
  /** The threads the round under way still waits for; null when none is. */
  #awaiting: Set<P> | null = null;
  /** Held for the round under way, and for the one after it. */
  #current: Array<HeldEnter<P>> = [];
  #next: Array<HeldEnter<P>> = [];

  /** `decide` is called for each held refusal once its round is over. */
  constructor(peers: readonly P[], decide: Redecide<P>) {
    this.#peers = peers;
    this.#decide = decide;
  }

  /** Holds a source-limit refusal of `peer`'s connection `id` for the next round; false (answer it now) with one thread. */
  hold(peer: P, id: number, source: string): boolean {
    if (this.#peers.length < 2) return false;
    this.#held({ peer, id, source, rounds: 1 });
    return true;
  }

  #held(held: HeldEnter<P>): void {
    this.#next.push(held);
    if (this.#awaiting === null) this.#start();
  }

  /** `peer` has sent what it had when asked for `round`. */
  flushed(peer: P, round: number): void {
    if (round !== this.#round || this.#awaiting === null) return;
    this.#awaiting.delete(peer);
    if (this.#awaiting.size === 0) this.#finish();
  }

  /** A thread has ended: the round no longer waits for it. */
  ended(peer: P): void {
    if (this.#awaiting?.delete(peer) && this.#awaiting.size === 0) this.#finish();
  }

  #start(): void {
    this.#current = this.#next;
    this.#next = [];
    const round = ++this.#round;
    this.#awaiting = new Set(this.#peers.filter((p) => !p.ended));
    for (const p of this.#awaiting) p.flush(round);
    if (this.#awaiting.size === 0) this.#finish();
  }

  #finish(): void {
    const held = this.#current;
    this.#current = [];
    // Still in the round while deciding: one held again waits for the next.
    for (const h of held) {
      if (h.peer.ended || this.#decide(h, h.rounds >= MAX_RECHECK_ROUNDS)) continue;
      this.#held({ ...h, rounds: h.rounds + 1 });
    }
    this.#awaiting = null;
    if (this.#next.length > 0) this.#start();
  }
}
