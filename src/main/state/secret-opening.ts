// The opening, while the server serves, of the secrets the Python server
// sealed in its clients.pickle (../clients/secret-to-open.ts): after a
// switch, every client's, ~70 ms of a core each (reference-secret.ts).
// The server does not wait for them: it serves from the start, and a
// connection whose client's secret is still sealed waits for that one
// alone, which is opened next (`hurry`), ahead of the others. So a machine
// that boots meanwhile waits about two secrets' time, not the fleet's.
//
// The openings run on worker threads (src/workers/reference-secret.ts),
// one core fewer than the machine has (at least one): the main thread keeps
// a core for the connections. The order is ours, not Piscina's queue: no
// more is handed to the pool than it has threads, so a hurried secret is
// the next one a thread takes.
//
// And the opening is background work: while the server is busy serving
// connections (a reboot storm), it starts none that no connection waits
// for, so that the storm's handshakes have every core; a connecting
// client's own is still opened at once. It looks again every
// BUSY_RECHECK_MS, and starts one anyway every MAX_PAUSE_MS. A pause that
// lasts is told to its watch.

import { availableParallelism } from "node:os";
import { setImmediate as yieldTurn } from "node:timers/promises";
import type { Logger } from "../daemon/log.js";
import type { HandshakeCounts } from "../serve/admission.js";
import { secretToOpen, type SecretToOpen } from "../clients/secret-to-open.js";
import { openReferenceSecret, referenceSecretPool, type OpeningWatch, type ReferenceSecretPool } from "./reference-secret.js";

/** While the server is busy, how often the opening looks whether it may go on. */
export const BUSY_RECHECK_MS = 250;
/** A pause is told once it has lasted this long: a storm's, not one connection's. */
export const PAUSE_TOLD_MS = 1_000;
/**
 * However busy the server, one is started at least this often: a reboot
 * storm is over in seconds, but peers that keep a handshake under way
 * without end (a hostile trickle) must not stop the opening for good.
 */
export const MAX_PAUSE_MS = 10_000;

/**
 * The server is busy serving connections: handshakes hold a slot or wait
 * for one. Not those in the slow pool: a slow peer's handshake costs
 * nothing while it waits.
 */
export function handshakesUnderWay({ holding, waiting }: HandshakeCounts): boolean {
  return holding + waiting > 0;
}

/** How many threads open them: one fewer than the cores, at least one. */
export function openingThreads(): number {
  return Math.max(1, availableParallelism() - 1);
}

/** What the opening needs of the registry (ClientRegistry has it). */
export interface SealedSecretHolder {
  /** Whether `name` still waits for this opening (not removed, no secret set since). */
  holdsPlaceholder(name: string, placeholder: Buffer): boolean;
  /** The opened secret, or null when it did not open (clients.conf's is then in effect). */
  secretOpened(name: string, placeholder: Buffer, secret: Buffer | null): void;
}

/** One client's sealed secret to open: its name and the placeholder it holds meanwhile. */
export interface ToOpen {
  readonly name: string;
  readonly placeholder: Buffer;
}

export interface SecretOpeningOptions {
  readonly holder: SealedSecretHolder;
  readonly logger: Logger;
  /** Told as it begins and as each one settles (observe/start-progress.ts). */
  readonly watch?: OpeningWatch;
  /** Worker threads; by default one fewer than the cores, at least one. */
  readonly threads?: number;
  /** The workers' Piscina entry (tests give one that cannot load). */
  readonly entry?: URL;
  /**
   * Whether the server is busy serving connections: meanwhile no secret
   * that no connection waits for is started. Never busy without it.
   */
  readonly busy?: () => boolean;
  /** How long a pause has lasted is told by this clock (monotonic milliseconds; performance.now by default). */
  readonly clock?: () => number;
}

interface Entry {
  readonly item: ToOpen;
  /** Handed to a thread (or opened here, or found no longer wanted). */
  started: boolean;
  /** A connection waits for it. */
  hurried: boolean;
}

export class SecretOpening {
  readonly #items: readonly ToOpen[];
  readonly #byName: Map<string, Entry>;
  readonly #options: SecretOpeningOptions;
  readonly #threads: number;
  /** Asked for by a waiting connection, oldest first; the next ones a thread takes. */
  readonly #hurried: Entry[] = [];
  /** Handed to a pool that failed before it answered: taken first. */
  readonly #again: Entry[] = [];
  /** The next in the registry's order not yet started. */
  #next = 0;
  #running = 0;
  #settled = 0;
  #pool: ReferenceSecretPool | null = null;
  /** The pool failed: the rest are opened here, one at a time. */
  #here = false;
  #openingHere = false;
  #stopped = false;
  /** Since when the server has been too busy for the next one (null: not paused). */
  #pausedAt: number | null = null;
  /** This pause was told to the watch. */
  #pauseTold = false;
  /** The next look while paused. */
  #recheck: NodeJS.Timeout | null = null;
  /** When the last one no connection waits for was started. */
  #lastStart = 0;
  readonly #done: Promise<boolean>;
  #resolveDone!: (all: boolean) => void;

  constructor(items: readonly ToOpen[], options: SecretOpeningOptions) {
    this.#items = items;
    this.#byName = new Map(items.map((item) => [item.name, { item, started: false, hurried: false }]));
    this.#options = options;
    this.#threads = Math.max(1, options.threads ?? openingThreads());
    this.#done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  /** True once every secret is open (or did not open, or is no longer wanted); false when stopped first. */
  get done(): Promise<boolean> {
    return this.#done;
  }

  /** Starts the threads and the openings. */
  start(): void {
    if (this.#items.length === 0) {
      this.#resolveDone(true);
      return;
    }
    this.#options.watch?.begin?.(this.#items.length, this.#threads);
    this.#lastStart = this.#now();
    const pool = referenceSecretPool(this.#threads, this.#options.entry);
    pool.onError((error) => this.#poolFailed(error));
    this.#pool = pool;
    this.#run();
  }

  /** A connection waits for `name`'s secret: it is the next one a thread takes. */
  hurry(name: string): void {
    const entry = this.#byName.get(name);
    if (!entry || entry.started || entry.hurried || this.#stopped) return;
    entry.hurried = true;
    this.#hurried.push(entry);
    this.#run();
  }

  /** Ends the threads; the secrets not yet open stay sealed (the state file carries them). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#recheck) clearTimeout(this.#recheck);
    this.#recheck = null;
    const pool = this.#pool;
    this.#pool = null;
    this.#resolveDone(false);
    await pool?.destroy();
  }

  /** Starts what may start now: on the pool's threads, or here once they failed. */
  #run(): void {
    if (!this.#here) this.#fill();
    else if (!this.#openingHere) void this.#openHere();
  }

  /**
   * The next to start: a hurried one first, then the registry's order
   * unless the server is busy ("busy"); null when none is left.
   */
  #take(): Entry | null | "busy" {
    const again = this.#again.shift();
    if (again) return again;
    while (this.#hurried.length > 0) {
      const entry = this.#hurried.shift()!;
      if (!entry.started) return entry;
    }
    while (this.#next < this.#items.length) {
      const entry = this.#byName.get(this.#items[this.#next]!.name)!;
      if (entry.started) {
        this.#next++;
        continue;
      }
      const now = this.#now();
      if (this.#options.busy?.()) {
        if (now - this.#lastStart < MAX_PAUSE_MS) return this.#pause(now);
      } else {
        this.#resume();
      }
      this.#lastStart = now;
      this.#next++;
      return entry;
    }
    return null;
  }

  /** The server is too busy for the next one: looks again in a while, and tells a pause that lasts. */
  #pause(now: number): "busy" {
    this.#pausedAt ??= now;
    if (!this.#pauseTold && now - this.#pausedAt >= PAUSE_TOLD_MS) {
      this.#pauseTold = true;
      this.#options.watch?.paused?.(true, this.#settled, this.#items.length, now - this.#pausedAt);
    }
    this.#recheck ??= setTimeout(() => {
      this.#recheck = null;
      if (!this.#stopped) this.#run();
    }, BUSY_RECHECK_MS);
    return "busy";
  }

  /** The opening goes on: a pause that was told is told to be over. */
  #resume(): void {
    if (this.#pausedAt === null) return;
    if (this.#pauseTold) this.#options.watch?.paused?.(false, this.#settled, this.#items.length, this.#now() - this.#pausedAt);
    this.#pausedAt = null;
    this.#pauseTold = false;
  }

  #now(): number {
    return this.#options.clock?.() ?? performance.now();
  }

  /** The next one still wanted, marked started; those no longer wanted are settled on the way. */
  #startNext(): { readonly entry: Entry; readonly sealed: SecretToOpen } | null | "busy" {
    for (;;) {
      const entry = this.#take();
      if (entry === null || entry === "busy") return entry;
      entry.started = true;
      const { name, placeholder } = entry.item;
      const sealed = secretToOpen(placeholder);
      if (sealed && this.#options.holder.holdsPlaceholder(name, placeholder)) return { entry, sealed };
      this.#settle(entry, undefined);
    }
  }

  /** Hands the pool as many as it has threads. */
  #fill(): void {
    while (!this.#stopped && !this.#here && this.#pool !== null && this.#running < this.#threads) {
      const next = this.#startNext();
      if (next === null || next === "busy") return;
      const { entry, sealed } = next;
      this.#running++;
      this.#pool.run(sealed).then(
        (opened) => {
          this.#running--;
          if (this.#stopped) return;
          this.#settle(entry, opened.secret === null ? null : Buffer.from(opened.secret));
          this.#fill();
        },
        () => {
          // A pool destroyed by stop(), or one that failed: opened here then.
          this.#running--;
          if (this.#stopped) return;
          this.#again.push(entry);
          if (this.#here) this.#run();
        },
      );
    }
  }

  /**
   * One secret settled: `secret` the opened one, null when it did not open,
   * undefined when no longer wanted (the client removed, or a secret set).
   */
  #settle({ item, hurried }: Entry, secret: Buffer | null | undefined): void {
    const { holder, logger, watch } = this.#options;
    if (secret !== undefined) {
      holder.secretOpened(item.name, item.placeholder, secret);
      if (secret === null) logger.debug(`Failed to decrypt ${item.name} old secret`);
      else if (hurried) logger.debug(`Opened ${item.name}'s sealed secret ahead of the others: a connection waits for it`);
    }
    this.#settled++;
    watch?.opened?.(this.#settled, this.#items.length);
    if (this.#settled === this.#items.length) {
      this.#resolveDone(true);
      void this.stop();
    }
  }

  /** The pool cannot open them (a worker that could not load): the rest are opened here, hurried ones first. */
  #poolFailed(error: Error): void {
    if (this.#stopped || this.#here) return;
    this.#here = true;
    this.#options.logger.warning(`The threads opening the sealed secrets failed (${error.message}); opening the rest on the main thread, which holds connections ~70 ms a secret`);
    const pool = this.#pool;
    this.#pool = null;
    void pool?.destroy().catch(() => undefined);
    this.#run();
  }

  /**
   * Opens the rest here, one a turn, until none is left or the server is
   * busy (a task the failed pool hands back, a hurry, the look again after
   * a pause start it again).
   */
  async #openHere(): Promise<void> {
    this.#openingHere = true;
    try {
      for (;;) {
        // Between two, the connections and a hurry come in.
        await yieldTurn();
        if (this.#stopped) return;
        const next = this.#startNext();
        if (next === null || next === "busy") return;
        const secret = await openReferenceSecret(next.sealed.sealed, next.sealed.configSecret);
        if (this.#stopped) return;
        this.#settle(next.entry, secret);
      }
    } finally {
      this.#openingHere = false;
    }
  }
}

