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
//
// A worker is never trusted to answer: each request out on the pool has a
// deadline (WORKER_ANSWER_MS). A worker that misses it (wedged: an endless
// loop on some input) is ended and replaced, and one that dies mid-request
// is replaced by Piscina; either way the request's tasks, pure functions
// of their inputs, run again once on a worker, never inline (an input that
// wedged a worker would wedge the main thread), and a refill is asked again.

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
import { FAILING_TURN_EVERY, WORKER_ANSWER_MS } from "./limits.js";

/**
 * Whoever asks for a task or key shares (a connection): once it is closed,
 * a task of its that still waits for a worker is dropped (rejected), and
 * no key shares are handed to it.
 */
export interface RunnerCaller {
  readonly closed: boolean;
  /**
   * Its source has failed lately (admission.ts, Rule 2): its tasks and
   * key shares wait behind those of callers that are not. Read as it asks.
   */
  readonly behind?: boolean;
}

export interface HandshakeRunner {
  /** Fresh, never reused key shares for one ClientHello. */
  keyShares(caller?: RunnerCaller): Promise<EphemeralKeyShares>;
  run(task: HandshakeTask, caller?: RunnerCaller): Promise<HandshakeTaskResult>;
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
  /** Workers ended and replaced because they did not answer in time; read by metrics. */
  readonly replaced: number;
  /**
   * Why the pool is not serving as it should, or null: a worker missed its
   * deadline and has not ended yet (said until its thread is gone; one
   * that never ends, stuck outside JavaScript, needs a restart). /health
   * and the watchdog read it.
   */
  readonly unanswering: string | null;
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
  /** Called when the pool reports a worker's fault that is no exit: an answer to a request it no longer had (what to log). */
  readonly onWorkerError?: (message: string) => void;
  /**
   * Called when a worker exited on its own (what to log: its exit code,
   * and its uncaught error if it had one); its request runs again
   * elsewhere, and Piscina starts another.
   */
  readonly onWorkerExit?: (message: string) => void;
  /** Called when a worker did not answer within `answerWithinMs` (what to log); it is ended and its request runs again elsewhere. */
  readonly onWorkerStuck?: (message: string) => void;
  /** A worker's deadline for a request: WORKER_ANSWER_MS (tests give less). */
  readonly answerWithinMs?: number;
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
  readonly replaced = 0;
  readonly unanswering = null;
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
  readonly caller: RunnerCaller | undefined;
  readonly resolve: (r: HandshakeTaskResult) => void;
  readonly reject: (e: Error) => void;
  /** Its first request failed (the worker died or missed its deadline): it goes alone, and is not sent a third time. */
  retried: boolean;
  /** Its caller was behind as it asked: it waits in the runner's queue of those. */
  readonly behind: boolean;
}

/** A connection waiting for key shares the reservoir did not have. */
interface ShareWaiter {
  readonly caller: RunnerCaller | undefined;
  readonly resolve: (shares: EphemeralKeyShares) => void;
}

/**
 * One request out on the pool (a batch of handshake tasks, or a key-share
 * refill when `batch` is null), with its deadline: one timer a request,
 * not a task. It is also the request's abort signal, in the EventEmitter
 * shape Piscina accepts: aborted, Piscina ends the worker running it and
 * starts another (an AbortController and its EventTarget would cost every
 * batch more for the same).
 */
class Request {
  readonly runner: PoolRunner;
  readonly batch: Waiting[] | null;
  /** Answered, failed or given up: whatever comes later is ignored. */
  settled = false;
  timer: NodeJS.Timeout | undefined = undefined;
  // The signal Piscina reads.
  aborted = false;
  reason: string | undefined = undefined;
  #onAbort: (() => void) | null = null;

  constructor(runner: PoolRunner, batch: Waiting[] | null) {
    this.runner = runner;
    this.batch = batch;
  }

  once(_: "abort", listener: () => void): void {
    this.#onAbort = listener;
  }

  off(): void {
    this.#onAbort = null;
  }

  // What Piscina calls to remove its listener (its types say off).
  removeListener(): void {
    this.#onAbort = null;
  }

  abort(reason: string): void {
    this.aborted = true;
    this.reason = reason;
    const listener = this.#onAbort;
    this.#onAbort = null;
    listener?.();
  }

  /** Settles it once: false if it was already. */
  settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.timer);
    return true;
  }
}

class PoolRunner implements HandshakeRunner {
  readonly #size: number;
  readonly #pool: Piscina<WorkerRequest, WorkerResponse>;
  readonly #groups: TlsSettings["keyShareGroups"];
  // Invariant: #reservoir.length + #refilling * REFILL_BATCH covers the
  // target plus every waiter, so a waiter is always eventually served (a
  // refill that fails or misses its deadline is asked again).
  readonly #reservoir: EphemeralKeyShares[] = [];
  readonly #waiters: ShareWaiter[] = [];
  /** Waiters whose callers are behind: served once #waiters are. */
  readonly #behindWaiters: ShareWaiter[] = [];
  #refilling = 0;
  #closed = false;
  readonly #queue: Waiting[] = [];
  /** Tasks whose callers are behind: they leave once #queue is empty, or fill its batch. */
  readonly #behind: Waiting[] = [];
  #batchesInFlight = 0;
  readonly #knownKeys: KnownKeys;
  #dispatchScheduled = false;
  readonly #ready: Promise<boolean>;
  readonly #settings: TlsSettings;
  readonly #onInline: ((why: string) => void) | undefined;
  readonly #onWorkerError: ((message: string) => void) | undefined;
  readonly #onWorkerExit: ((message: string) => void) | undefined;
  readonly #onWorkerStuck: ((message: string) => void) | undefined;
  readonly #answerWithinMs: number;
  #loadedOrInline: (ready: true) => void = () => undefined;
  /** Set once a worker was of another build or could not load: every handshake runs here from then on. */
  #inline: InlineRunner | null = null;
  #destroyed: Promise<void> | null = null;
  /** Worker threads whose exit is listened to. */
  readonly #watched = new WeakSet<object>();
  /** A worker's uncaught error, by thread ID, said with its exit. */
  readonly #failures = new Map<number, string>();
  /** Workers ended for a missed deadline that have not exited yet, by thread ID: what to say until they have. */
  readonly #ending = new Map<number, string>();
  #replaced = 0;

  constructor(workers: number, settings: TlsSettings, knownKeys: KnownKeys, options: PoolOptions) {
    this.#size = workers;
    this.#knownKeys = knownKeys;
    this.#settings = settings;
    this.#groups = settings.keyShareGroups;
    this.#onInline = options.onInline;
    this.#onWorkerError = options.onWorkerError;
    this.#onWorkerExit = options.onWorkerExit;
    this.#onWorkerStuck = options.onWorkerStuck;
    this.#answerWithinMs = options.answerWithinMs ?? WORKER_ANSWER_MS;
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
    this.#watchExits();
    this.#refill();
  }

  ready(): Promise<boolean> {
    return this.#ready;
  }

  get workers(): number {
    return this.#inline ? 0 : this.#size;
  }

  get queued(): number {
    return this.#queue.length + this.#behind.length;
  }

  get replaced(): number {
    return this.#replaced;
  }

  get unanswering(): string | null {
    if (this.#ending.size === 0) return null;
    return [...this.#ending.values()].join("; ");
  }

  keyShares(caller?: RunnerCaller): Promise<EphemeralKeyShares> {
    const ready = this.#reservoir.pop();
    if (this.#inline) return ready ? Promise.resolve(ready) : this.#inline.keyShares();
    this.#refill();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => {
      (caller?.behind === true ? this.#behindWaiters : this.#waiters).push({ caller, resolve });
      this.#refill();
    });
  }

  run(task: HandshakeTask, caller?: RunnerCaller): Promise<HandshakeTaskResult> {
    if (this.#closed) return Promise.reject(new Error("handshake runner closed"));
    if (this.#inline) return this.#inline.run(task);
    return new Promise((resolve, reject) => {
      const behind = caller?.behind === true;
      (behind ? this.#behind : this.#queue).push({ task, caller, resolve, reject, retried: false, behind });
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
   * over the free workers, MAX_BATCH at most each. A task sent again goes
   * alone: if its input is what wedged or killed a worker, it fails alone.
   * A task whose connection closed meanwhile is dropped here. Tasks of
   * callers that are behind take one place in FAILING_TURN_EVERY of a
   * batch while others wait (behindShare), and what the others leave.
   * Before, they had only what the others left: in a wave that kept 16
   * tasks waiting, none of them ever left (a machine behind a NAT address
   * with failing neighbours waited 11-12 s, the wave's length).
   */
  #dispatch(): void {
    while (this.#batchesInFlight < this.#size) {
      const waiting = this.#queue.length + this.#behind.length;
      if (waiting === 0) return;
      const batch: Waiting[] = [];
      const tasks: HandshakeTask[] = [];
      // Tasks sent again are at the front of their queue (#lost): each goes alone.
      const alone = this.#queue[0]?.retried === true ? this.#queue : this.#behind[0]?.retried === true ? this.#behind : null;
      if (alone) PoolRunner.#take(alone, 1, batch, tasks);
      else {
        const wanted = Math.min(MAX_BATCH, Math.ceil(waiting / (this.#size - this.#batchesInFlight)));
        const share = behindShare(wanted, this.#behind.length);
        PoolRunner.#take(this.#queue, wanted - share, batch, tasks);
        PoolRunner.#take(this.#behind, wanted, batch, tasks);
        PoolRunner.#take(this.#queue, wanted, batch, tasks);
      }
      if (batch.length === 0) continue;
      this.#batchesInFlight++;
      const request = this.#sent(batch);
      this.#pool.run(packBytes({ kind: "handshakes", tasks, knownKeys: this.#knownKeys() }), { signal: request }).then(
        PoolRunner.#batchDone.bind(null, request),
        PoolRunner.#requestFailed.bind(null, request),
      );
    }
  }

  /** Moves tasks from the front of `queue` into `batch` until it holds `wanted`; a task whose connection closed is dropped. */
  static #take(queue: Waiting[], wanted: number, batch: Waiting[], tasks: HandshakeTask[]): void {
    let taken = 0;
    while (batch.length < wanted && taken < queue.length) {
      const w = queue[taken++]!;
      if (w.caller?.closed === true) w.reject(new Error("its connection closed"));
      else {
        batch.push(w);
        tasks.push(w.task);
      }
    }
    queue.splice(0, taken);
  }

  /** A request about to go out, its deadline set. */
  #sent(batch: Waiting[] | null): Request {
    const request = new Request(this, batch);
    request.timer = setTimeout(PoolRunner.#deadlinePassed, this.#answerWithinMs, request);
    request.timer.unref();
    return request;
  }

  static #batchDone(request: Request, response: WorkerResponse): void {
    if (!request.settle()) return;
    const runner = request.runner;
    const batch = request.batch!;
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

  /**
   * A request rejected: the pool was destroyed (going inline, or closing),
   * or its worker died under it (Piscina: "worker exited with code: N", or
   * the worker's uncaught error; the exit is said by #workerExited). A
   * task never fails its request: its own failure is in its answer.
   */
  static #requestFailed(request: Request, error: unknown): void {
    if (!request.settle()) return;
    request.runner.#lost(request, error instanceof Error ? error : new Error(String(error)));
  }

  /**
   * A request's deadline passed. Not judged yet: an answer the worker
   * posted in time may still wait in this turn's I/O (the main thread
   * itself may have been held up past the deadline), and setImmediate runs
   * after it.
   */
  static #deadlinePassed(request: Request): void {
    if (!request.settled) setImmediate(PoolRunner.#judgeLate, request);
  }

  static #judgeLate(request: Request): void {
    const runner = request.runner;
    // The pool destroyed (going inline, or closing): its rejection comes, and settles the request.
    if (request.settled || runner.#closed || runner.#inline) return;
    request.settle();
    const seconds = runner.#answerWithinMs / 1000;
    // Aborted, Piscina ends the worker that holds the request (at once,
    // within this call) and starts another; one still in Piscina's queue
    // is only taken out of it, and no worker is to blame.
    const before = runner.#pool.threads;
    request.abort(`no answer in ${seconds} s`);
    const now = new Set(runner.#pool.threads);
    const ended = before.find((w) => !now.has(w));
    if (ended) {
      runner.#replaced++;
      const id = ended.threadId;
      runner.#ending.set(id, `handshake worker ${id} did not answer in ${seconds} s and has not ended`);
      runner.#onWorkerStuck?.(`Handshake worker ${id} did not answer in ${seconds} s; replacing it`);
      runner.#watchExits();
    }
    runner.#lost(request, new Error(`a handshake worker did not answer in ${seconds} s`));
  }

  /**
   * A request that will never be answered. Its handshake tasks go back to
   * the front of the queue, to run again on a worker (never inline: an
   * input that wedged a worker would wedge the main thread), once: a task
   * lost a second time fails. A refill is asked again.
   */
  #lost(request: Request, error: Error): void {
    const batch = request.batch;
    if (batch === null) {
      this.#refilling--;
      this.#refill();
      return;
    }
    this.#batchesInFlight--;
    // The pool destroyed as it went inline: the tasks it held run here.
    const inline = this.#closed ? null : this.#inline;
    if (inline || this.#closed) {
      for (const b of batch) {
        if (inline) inline.run(b.task).then(b.resolve, b.reject);
        else b.reject(error);
      }
      return;
    }
    for (let i = batch.length - 1; i >= 0; i--) {
      const b = batch[i]!;
      if (b.retried || b.caller?.closed === true) b.reject(error);
      else {
        b.retried = true;
        (b.behind ? this.#behind : this.#queue).unshift(b);
      }
    }
    this.#dispatch();
  }

  /**
   * Listens for the exit of every worker not yet listened to: at the start,
   * and whenever one may have been replaced (Piscina starts the next one
   * as it removes the last, before the exit events).
   */
  #watchExits(): void {
    for (const worker of this.#pool.threads) {
      if (this.#watched.has(worker)) continue;
      this.#watched.add(worker);
      worker.once("error", PoolRunner.#workerFailed.bind(null, this, worker.threadId));
      worker.once("exit", PoolRunner.#workerExited.bind(null, this, worker.threadId));
    }
  }

  /** A worker's uncaught error: it exits next, and the exit says it. */
  static #workerFailed(runner: PoolRunner, id: number, error: unknown): void {
    runner.#failures.set(id, poolErrorWords(error));
  }

  static #workerExited(runner: PoolRunner, id: number, code: number): void {
    const failure = runner.#failures.get(id);
    runner.#failures.delete(id);
    // Piscina's own exit handler ran first: a replacement, if any, is in its threads.
    if (runner.#closed || runner.#inline) return;
    runner.#watchExits();
    // Ended by us for a missed deadline (said then): no longer a worker that does not answer.
    if (runner.#ending.delete(id)) return;
    runner.#onWorkerExit?.(`Handshake worker ${id} exited with code ${code}${failure === undefined ? "" : ` (${failure})`}; another was started`);
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
   *   another in its place; its exit says it (#workerExited), once;
   * - a worker's answer to a request the pool no longer had.
   */
  #poolError(error: unknown): void {
    if (this.#inline || this.#closed) return;
    const message = poolErrorWords(error);
    if (this.#pool.threads.length < this.#size) this.#toInline(message);
    else if (isLateAnswer(error)) this.#onWorkerError?.(message);
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
    this.#ending.clear();
    this.#loadedOrInline(true);
    this.#onInline?.(why);
    for (const b of [...this.#queue.splice(0), ...this.#behind.splice(0)]) inline.run(b.task).then(b.resolve, b.reject);
    for (const waiter of [...this.#waiters.splice(0), ...this.#behindWaiters.splice(0)]) void inline.keyShares().then(waiter.resolve);
    this.#destroyed = this.#pool.destroy();
  }

  #refill(): void {
    if (this.#closed || this.#inline) return;
    while (this.#reservoir.length + this.#refilling * REFILL_BATCH < RESERVOIR_TARGET + this.#waiters.length + this.#behindWaiters.length) {
      this.#refilling++;
      const request = this.#sent(null);
      this.#pool.run({ kind: "keygen", groups: this.#groups, count: REFILL_BATCH }, { signal: request }).then(
        PoolRunner.#refilled.bind(null, request),
        PoolRunner.#requestFailed.bind(null, request),
      );
    }
  }

  static #refilled(request: Request, response: WorkerResponse): void {
    if (!request.settle()) return;
    const runner = request.runner;
    runner.#refilling--;
    if (response.kind === "otherBuild") runner.#toInline(response.message);
    if (response.kind !== "keygen") return;
    const shares = response.shares;
    // As a batch (#dispatch): the waiters that are behind get their share first, then the others, then what is left.
    let next = PoolRunner.#handOut(runner.#behindWaiters, shares, 0, behindShare(shares.length, runner.#behindWaiters.length));
    next = PoolRunner.#handOut(runner.#waiters, shares, next);
    next = PoolRunner.#handOut(runner.#behindWaiters, shares, next);
    for (; next < shares.length; next++) runner.#reservoir.push(shares[next]!);
    runner.#refill();
  }

  /**
   * Hands `shares` from `next` on to the front of `waiters`, in turn, at
   * most `most` of them, and drops those served; a waiter whose connection
   * closed is passed over (the shares stay fresh for the next). Returns
   * the first share not handed out.
   */
  static #handOut(waiters: ShareWaiter[], shares: readonly EphemeralKeyShares[], next: number, most = Infinity): number {
    const stop = Math.min(shares.length, next + most);
    let served = 0;
    for (; served < waiters.length; served++) {
      const waiter = waiters[served]!;
      if (waiter.caller?.closed === true) continue;
      if (next === stop) break;
      waiter.resolve(shares[next++]!);
    }
    waiters.splice(0, served);
    return next;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const b of [...this.#queue.splice(0), ...this.#behind.splice(0)]) b.reject(new Error("handshake runner closed"));
    this.#destroyed ??= this.#pool.destroy();
    await this.#destroyed;
  }
}

/**
 * Of `places` (a batch's tasks, a refill's key shares), those kept for the
 * work of callers that are behind while others wait too: one in
 * FAILING_TURN_EVERY, as admission.ts's slots, and no more than they ask.
 */
function behindShare(places: number, waiting: number): number {
  return Math.min(waiting, Math.ceil(places / FAILING_TURN_EVERY));
}

/**
 * What to log of an error Piscina's pool emitted. Its words for an answer
 * to a task it no longer has quote the answer whole (key shares with their
 * private keys, a handshake's traffic secrets): never logged, only said.
 */
export function poolErrorWords(error: unknown): string {
  if (isLateAnswer(error)) return "it answered a task the pool no longer had";
  const message = error instanceof Error ? error.message : String(error);
  // Node says a module it cannot read (root-only files once privileges
  // are dropped) is not found, as it says of one that is not there.
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND" || code === "EACCES") {
    return `${message.split("\n", 1)[0]} (missing, or not readable by the user the server runs as)`;
  }
  return message;
}

/** Piscina's error for a worker's answer to a task it no longer has (it has no code to tell it by). */
function isLateAnswer(error: unknown): boolean {
  return (error instanceof Error ? error.message : String(error)).startsWith("Unexpected message from Worker");
}

function isOtherBuild(message: unknown): message is OtherBuild {
  return typeof message === "object" && message !== null && typeof (message as Partial<OtherBuild>).otherBuild === "string";
}
