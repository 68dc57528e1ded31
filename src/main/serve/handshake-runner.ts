// Where the handshake's expensive steps run: inline on the main thread
// (`--workers 0`), or on a Piscina pool of worker threads. The connection
// code sees one interface either way; the engine code is the same.
//
// With a pool the main thread does no asymmetric crypto: the ClientHello's
// ephemeral key shares come from a reservoir that worker tasks refill in
// batches, and each handshake's server flight is one worker task.
//
// A worker that Piscina starts again (the one before died) after `npm
// install -g` replaced the files is of another build than the server
// (src/build.ts): it says so, and the pool's handshakes run inline from
// then on, those it held too, until the server is restarted. So they do
// when a worker cannot load its files at all (Piscina starts no other).
// Piscina's "error" event is always listened to: unheard, it is thrown.

import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import type { Piscina } from "piscina";
import {
  generateEphemeralKeyShares,
  runHandshakeTask,
  type EphemeralKeyShares,
  type HandshakeTask,
  type HandshakeTaskResult,
  type TlsSettings,
} from "../../tls/index.js";
import { WORKER_LOADED, type HandshakeWorkerData, type OtherBuild, type WorkerRequest, type WorkerResponse } from "../../workers/handshake-protocol.js";
import { installedBuild, type BuildStamp } from "../../build.js";
import { packBytes } from "../../workers/pack-bytes.js";

export interface HandshakeRunner {
  /** Fresh, never reused key shares for one ClientHello. */
  keyShares(): Promise<EphemeralKeyShares>;
  run(task: HandshakeTask): Promise<HandshakeTaskResult>;
  /**
   * Whether every worker has loaded its code (at once inline); false if
   * not within WORKER_LOAD_WAIT_MS. Await it before dropping privileges:
   * a worker reads its modules from disk as it starts, and the
   * installation may be readable by root alone.
   */
  ready(): Promise<boolean>;
  /** Number of worker threads (0 = inline, and once a pool went inline); read by metrics. */
  readonly workers: number;
  /** Handshake tasks waiting for a worker (always 0 inline); read by metrics. */
  readonly queued: number;
  close(): Promise<void>;
}

/**
 * One worker per core beside the main thread's, from two cores up; inline
 * on one. From the per-thread CPU a secret (docs/BENCHMARK.md, "Per
 * thread"): inline, the main thread does all of a secret's work and bounds
 * the rate alone at 1 / (its CPU a secret), whatever the cores; with
 * workers it keeps part of it, and the hand-off adds CPU in all. On a
 * machine that serves only Mandos, a second core for the pool pays when
 * 2 / (process CPU a secret with workers) > 1 / (inline main thread's),
 * which the figures show on 2 cores; on one core the hand-off only costs.
 * (A load generator on the same two cores takes one of them: then inline
 * wins, which is what an earlier default was chosen from.)
 * At most MAX_DEFAULT_WORKERS: past a few workers the main thread, not
 * the cores, bounds the pool.
 */
export function defaultWorkerCount(cores = availableParallelism()): number {
  return cores >= 2 ? Math.min(cores - 1, MAX_DEFAULT_WORKERS) : 0;
}

/**
 * The pool's main thread spends 112-161 µs a secret and a worker 254-302
 * (docs/BENCHMARK.md, "Per thread, and the default worker count"), so two
 * to three workers already give the main thread all it can hand over;
 * four leave room for a slower main thread. More would each hold ~14 MiB
 * and 8 descriptors of the open-files reserve for nothing. (From four
 * cores the default is serve threads, and the pool serves only with
 * `--serve-threads 0`.)
 */
export const MAX_DEFAULT_WORKERS = 4;

/**
 * The server's known key IDs as a table the tasks read (src/tls/known-keys.ts),
 * current at each call; null: look every key up after the handshake only.
 */
export type KnownKeys = () => SharedArrayBuffer | null;

/** What a pool needs beside its size and settings. */
export interface PoolOptions {
  /** The server's build, read as it started: each worker compares its files' with it. */
  readonly build: BuildStamp;
  /**
   * Called once if the workers cannot serve: a worker's files are another
   * build, or a worker could not load them (what to log: why). Handshakes
   * then run inline.
   */
  readonly onInline?: (why: string) => void;
  /** Called when a worker that had loaded failed with no task of its own; Piscina starts another (what to log). */
  readonly onWorkerError?: (message: string) => void;
  /** The workers' Piscina entry; by default ../../workers/handshake-entry.cjs (tests give workers that misbehave). */
  readonly entry?: URL;
}

/** `pool`: by default, the build of these files as they are now. */
export function createHandshakeRunner(workers: number, settings: TlsSettings, knownKeys: KnownKeys = () => null, pool?: PoolOptions): HandshakeRunner {
  return workers <= 0 ? new InlineRunner(settings, knownKeys) : new PoolRunner(workers, settings, knownKeys, pool ?? { build: installedBuild() });
}

class InlineRunner implements HandshakeRunner {
  readonly workers = 0;
  readonly queued = 0;
  readonly #settings: TlsSettings;
  readonly #knownKeys: KnownKeys;
  constructor(settings: TlsSettings, knownKeys: KnownKeys) {
    this.#settings = settings;
    this.#knownKeys = knownKeys;
  }
  keyShares(): Promise<EphemeralKeyShares> {
    return Promise.resolve(generateEphemeralKeyShares(this.#settings.keyShareGroups));
  }
  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }
  run(task: HandshakeTask): Promise<HandshakeTaskResult> {
    // A Promise already for a TLS 1.2 flight (OpenPGP.js); at once for TLS 1.3.
    const result = runHandshakeTask(task, { knownKeys: this.#knownKeys() });
    return result instanceof Promise ? result : Promise.resolve(result);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Key shares kept ready. A burst of this many connections starts without
 * waiting for keygen; each refill task makes REFILL_BATCH shares, so the
 * per-task overhead (a message each way) is paid once per batch.
 */
const RESERVOIR_TARGET = 256;
const REFILL_BATCH = 32;
/** Handshake tasks per batch: 16 × ~0.3 ms keeps a batch under 5 ms. */
const MAX_BATCH = 16;
/**
 * Piscina, loaded by the first pool: a serve thread or `--workers 0` runs
 * none, and loading it costs a thread ~0.9 MiB of heap.
 */
function piscina(): typeof Piscina {
  return (createRequire(import.meta.url)("piscina") as typeof import("piscina")).Piscina;
}

/** How long ready() waits for the workers to load: a cold start of Node and our modules takes well under a second. */
const WORKER_LOAD_WAIT_MS = 10_000;

/** A task waiting for a worker, with its promise's settlers. */
interface Waiting {
  readonly task: HandshakeTask;
  readonly resolve: (r: HandshakeTaskResult) => void;
  readonly reject: (e: Error) => void;
}

class PoolRunner implements HandshakeRunner {
  readonly #size: number;
  readonly #pool: Piscina<WorkerRequest, WorkerResponse>;
  readonly #groups: TlsSettings["keyShareGroups"];
  // Invariant: #reservoir.length + #refilling * REFILL_BATCH covers the
  // target plus every waiter, so a waiter is always eventually served.
  readonly #reservoir: EphemeralKeyShares[] = [];
  readonly #waiters: Array<(shares: EphemeralKeyShares) => void> = [];
  #refilling = 0;
  #closed = false;
  readonly #queue: Waiting[] = [];
  #batchesInFlight = 0;
  readonly #knownKeys: KnownKeys;
  #dispatchScheduled = false;
  readonly #ready: Promise<boolean>;
  readonly #settings: TlsSettings;
  readonly #onInline: ((why: string) => void) | undefined;
  readonly #onWorkerError: ((message: string) => void) | undefined;
  #loadedOrInline: (ready: true) => void = () => undefined;
  /** Set once a worker was of another build or could not load: every handshake runs here from then on. */
  #inline: InlineRunner | null = null;
  #destroyed: Promise<void> | null = null;

  constructor(workers: number, settings: TlsSettings, knownKeys: KnownKeys, options: PoolOptions) {
    this.#size = workers;
    this.#knownKeys = knownKeys;
    this.#settings = settings;
    this.#groups = settings.keyShareGroups;
    this.#onInline = options.onInline;
    this.#onWorkerError = options.onWorkerError;
    const Pool = piscina();
    this.#pool = new Pool<WorkerRequest, WorkerResponse>({
      // CommonJS that import()s handshake.js: never loaded through require(esm) (see the entry).
      filename: (options.entry ?? new URL("../../workers/handshake-entry.cjs", import.meta.url)).href,
      workerData: { build: options.build } satisfies HandshakeWorkerData,
      minThreads: workers,
      maxThreads: workers,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      // Workers wait for tasks on their message port, not in Atomics.wait:
      // with one thread under a sustained burst, the Atomics wake-up was
      // seen to be missed, leaving every later handshake queued for ever.
      atomics: "disabled",
      // No run and wait time histograms: nothing reads them, and they cost the main thread per task.
      recordTiming: false,
    });
    this.#ready = new Promise((resolve) => {
      let loaded = 0;
      const timer = setTimeout(() => resolve(false), WORKER_LOAD_WAIT_MS);
      timer.unref();
      this.#loadedOrInline = (ready) => {
        clearTimeout(timer);
        resolve(ready);
      };
      this.#pool.on("message", (message: unknown) => {
        if (isOtherBuild(message)) this.#toInline(message.otherBuild);
        else if (message === WORKER_LOADED && ++loaded === workers) this.#loadedOrInline(true);
      });
    });
    // Unheard, Piscina's "error" would be thrown, and end the server.
    this.#pool.on("error", (error: unknown) => this.#poolError(error));
    this.#refill();
  }

  ready(): Promise<boolean> {
    return this.#ready;
  }

  get workers(): number {
    return this.#inline ? 0 : this.#size;
  }

  get queued(): number {
    return this.#queue.length;
  }

  keyShares(): Promise<EphemeralKeyShares> {
    const ready = this.#reservoir.pop();
    if (this.#inline) return ready ? Promise.resolve(ready) : this.#inline.keyShares();
    this.#refill();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#refill();
    });
  }

  run(task: HandshakeTask): Promise<HandshakeTaskResult> {
    if (this.#closed) return Promise.reject(new Error("handshake runner closed"));
    if (this.#inline) return this.#inline.run(task);
    return new Promise((resolve, reject) => {
      this.#queue.push({ task, resolve, reject });
      this.#schedule();
    });
  }

  /** One dispatch at the end of this turn of the event loop (setImmediate runs after its I/O callbacks). */
  #schedule(): void {
    if (this.#dispatchScheduled) return;
    this.#dispatchScheduled = true;
    setImmediate(PoolRunner.#dispatchDue, this);
  }

  // Module-lived functions with their context as arguments, not arrows
  // made a call: V8 holds optimised code weakly, and an arrow made for one
  // batch lost its code at the next full collection and was compiled again
  // (docs/BENCHMARK.md, "Closures compiled again").
  static #dispatchDue(runner: PoolRunner): void {
    runner.#dispatchScheduled = false;
    runner.#dispatch();
  }

  /**
   * Self-clocking batches: at most one batch in flight per worker; tasks
   * that arrive meanwhile wait here and leave together when a worker's
   * batch comes back. A new task does not leave at once but at the end of
   * the event loop's turn (#schedule), with every task that the same turn's
   * reads produced: in a reboot wave one turn handles many sockets, and a
   * round trip to a worker costs ~0.35 ms of CPU for a task sent alone
   * (structured clone, the key's transfer, a thread wake-up each way) and
   * ~0.02 ms a task in a batch of 16. The waiting tasks are split evenly
   * over the free workers, MAX_BATCH at most each.
   */
  #dispatch(): void {
    while (this.#queue.length > 0 && this.#batchesInFlight < this.#size) {
      const free = this.#size - this.#batchesInFlight;
      const batch = this.#queue.splice(0, Math.min(MAX_BATCH, Math.ceil(this.#queue.length / free)));
      this.#batchesInFlight++;
      const tasks: HandshakeTask[] = [];
      for (const b of batch) tasks.push(b.task);
      this.#pool.run(packBytes({ kind: "handshakes", tasks, knownKeys: this.#knownKeys() })).then(
        PoolRunner.#batchDone.bind(null, this, batch),
        PoolRunner.#batchFailed.bind(null, this, batch),
      );
    }
  }

  static #batchDone(runner: PoolRunner, batch: readonly Waiting[], response: WorkerResponse): void {
    runner.#batchesInFlight--;
    if (response.kind === "otherBuild") {
      runner.#toInline(response.message);
      for (const b of batch) runner.#inline!.run(b.task).then(b.resolve, b.reject);
      return;
    }
    if (response.kind !== "handshakes" || response.results.length !== batch.length) {
      for (const b of batch) b.reject(new Error("worker answered the wrong kind of task"));
    } else {
      for (let i = 0; i < batch.length; i++) {
        const r = response.results[i]!;
        if (r.ok) batch[i]!.resolve(r.result);
        else batch[i]!.reject(new Error(r.error));
      }
    }
    runner.#dispatch();
  }

  static #batchFailed(runner: PoolRunner, batch: readonly Waiting[], error: unknown): void {
    runner.#batchesInFlight--;
    // The pool destroyed as it went inline: the tasks it held run here.
    const inline = runner.#closed ? null : runner.#inline;
    for (const b of batch) {
      if (inline) inline.run(b.task).then(b.resolve, b.reject);
      else b.reject(error instanceof Error ? error : new Error(String(error)));
    }
    runner.#dispatch();
  }

  /**
   * Piscina's "error" event, one of:
   * - a worker's answer that came after the pool was destroyed (going
   *   inline, or closing): its task was rejected already, nothing to do;
   * - a worker that could not load its files (an installation in the
   *   middle of an upgrade, a file gone, files readable by root alone
   *   once privileges are dropped): Piscina starts none again after
   *   that, so every handshake would wait for ever; they run inline;
   * - a worker that had loaded failed outside any task: Piscina started
   *   another in its place.
   */
  #poolError(error: unknown): void {
    if (this.#inline || this.#closed) return;
    const message = poolErrorWords(error);
    if (this.#pool.threads.length < this.#size) this.#toInline(message);
    else this.#onWorkerError?.(message);
  }

  /**
   * The workers cannot serve (a worker's files are another build than the
   * server's, or a worker could not load them): said once, and from now on
   * every handshake runs inline, the waiting ones first; the pool is
   * destroyed, and the batches it held run inline as they fail. Key shares
   * made already are kept: they are as fresh as any.
   */
  #toInline(why: string): void {
    if (this.#inline || this.#closed) return;
    const inline = new InlineRunner(this.#settings, this.#knownKeys);
    this.#inline = inline;
    this.#loadedOrInline(true);
    this.#onInline?.(why);
    for (const b of this.#queue.splice(0)) inline.run(b.task).then(b.resolve, b.reject);
    for (const waiter of this.#waiters.splice(0)) void inline.keyShares().then(waiter);
    this.#destroyed = this.#pool.destroy();
  }

  #refill(): void {
    if (this.#closed || this.#inline) return;
    while (this.#reservoir.length + this.#refilling * REFILL_BATCH < RESERVOIR_TARGET + this.#waiters.length) {
      this.#refilling++;
      this.#pool.run({ kind: "keygen", groups: this.#groups, count: REFILL_BATCH }).then(this.#refilled, this.#refillFailed);
    }
  }

  /** One function for the runner's life (its code stays); see #dispatchDue. */
  readonly #refilled = (response: WorkerResponse): void => {
    this.#refilling--;
    if (response.kind === "otherBuild") this.#toInline(response.message);
    if (response.kind !== "keygen") return;
    for (const shares of response.shares) {
      const waiter = this.#waiters.shift();
      if (waiter) waiter(shares);
      else this.#reservoir.push(shares);
    }
    this.#refill();
  };

  readonly #refillFailed = (): void => {
    // Only a closing pool rejects; waiters then never resolve, and
    // their connections are being torn down anyway.
    this.#refilling--;
  };

  async close(): Promise<void> {
    this.#closed = true;
    for (const b of this.#queue.splice(0)) b.reject(new Error("handshake runner closed"));
    this.#destroyed ??= this.#pool.destroy();
    await this.#destroyed;
  }
}

/**
 * What to log of an error Piscina's pool emitted. Its words for an answer
 * to a task it no longer has quote the answer whole (key shares with their
 * private keys, a handshake's traffic secrets): never logged, only said.
 */
export function poolErrorWords(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.startsWith("Unexpected message from Worker") ? "it answered a task the pool no longer had" : message;
}

function isOtherBuild(message: unknown): message is OtherBuild {
  return typeof message === "object" && message !== null && typeof (message as Partial<OtherBuild>).otherBuild === "string";
}
