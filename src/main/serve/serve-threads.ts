// Serve threads: the connections run whole on worker threads that share
// the listening socket, and the main thread keeps the registry. Per
// secret, the main thread only counts the source in and out, answers the
// decision and republishes the connection's events, a batch per thread
// and turn each way (serve-protocol.ts). A refusal for the source limit
// waits until every thread has sent its batch (source-recheck.ts).
//
// The first thread binds (or takes --socket's descriptor); the others
// listen on the same descriptor, and whichever thread is free accepts.
// Node 20 can neither duplicate a descriptor nor bind with SO_REUSEPORT,
// so the threads share one descriptor number, and the first of them to
// close it would free that number for reuse while the others still hold
// it: a later close by another thread would then close whatever file or
// socket had taken the number. So no thread ever closes it: close() stops
// the accepting (new connections are reset), drains, and leaves the
// threads idle until the process exits, when the kernel closes it.
// A socket a thread with SO_REUSEPORT was measured and not taken: a queue
// a thread, filled by a hash, leaves connections waiting while a thread
// idles (docs/BENCHMARK.md, "Serve threads on sockets of their own").

import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { TlsSettings } from "../../tls/index.js";
import type { Channel } from "../events.js";
import type { Logger } from "../daemon/log.js";
import type { Registry, SecretDecision } from "../clients/contract.js";
import { Admission, type AdmissionRefusal, type HandshakeCounts } from "./admission.js";
import { MAX_HANDSHAKES_IN_FLIGHT, MAX_OPEN_CONNECTIONS, MAX_SLOW_HANDSHAKES } from "./limits.js";
import { returnAbortController, takeAbortController } from "./abort-pool.js";
import { systemClock } from "../clock.js";
import { within } from "../within.js";
import { OwnFailureLines, type ListenOptions } from "./listener.js";
import { FORWARDED_CHANNELS, type ClientKeys, type FromThread, type ThreadOp, type ToThread, type ServeThreadData } from "./serve-protocol.js";
import { buildClientIndex } from "./client-index.js";
import { knownKeysOf } from "./known-keys.js";
import type { KnownKeys } from "./handshake-runner.js";
import { packBytes } from "../../workers/pack-bytes.js";
import { sharedBounds, type SharedBounds } from "./shared-limit.js";
import { SourceRecheck, type RecheckPeer } from "./source-recheck.js";
import type { BuildStamp } from "../../build.js";

/**
 * None below four cores, then one per core but one (the main thread's).
 * From the per-thread CPU a secret (docs/BENCHMARK.md, "Serve threads"):
 * serve threads spend as much a secret as the pool's main thread and
 * worker together or more, so on few cores the pool serves as much or
 * more, with a shorter tail; but the pool's main thread caps one process
 * near 2,400-3,000 secrets/s whatever the cores, while serve threads
 * leave the main thread 50-80 µs a secret and the cores bound them: from
 * four cores up they serve more. At most MAX_DEFAULT_SERVE_THREADS.
 */
export function defaultServeThreadCount(cores = availableParallelism()): number {
  return cores >= 4 ? Math.min(cores - 1, MAX_DEFAULT_SERVE_THREADS) : 0;
}

/**
 * With serve threads the main thread still spends 26-39 µs a secret (the
 * registry's decision, the sources, the events; fast machines, sessions
 * 22-25) and bounds one process near 25,000-38,000 secrets/s; a serve
 * thread with its share of V8's helpers spends ~500-540 µs, so 14 to 18
 * threads reach that bound (docs/BENCHMARK.md, "Per thread, and the
 * default worker count"). Past it a thread adds no secrets a second, only
 * ~20 MiB at a wave's peak and 8 descriptors of the open-files reserve: a
 * 64-core host would have held 63 threads and ~1.3 GiB.
 */
export const MAX_DEFAULT_SERVE_THREADS = 16;

/** How much longer than its grace a serve thread has to say it closed (ServeThreads.close). */
export const CLOSE_SLACK_MS = 5_000;

/** How often each serve thread is asked whether it is there (ServeThreads.watchLiveness). */
export const LIVENESS_PING_MS = 1_000;

/**
 * How long a serve thread may leave a ping unanswered before it is taken
 * for wedged: far above any turn of its event loop (a wave's batch is
 * milliseconds), well within systemd's 30 s watchdog.
 */
export const THREAD_UNANSWERED_MS = 10_000;

/**
 * What each of `count` serve threads may hold. Handshake slots are a
 * thread's CPU, shared out: as many handshakes at once as one listener
 * allows, so that a burst queues as it would there. Open connections
 * (`maxOpen`: the process's descriptors) and the slow pool (its memory)
 * bound the process, and whichever thread wakes first accepts a whole
 * burst: they are counted by every thread together (shared-limit.ts).
 */
export function serveThreadLimits(count: number, maxOpen: number): { readonly slots: number; readonly shared: SharedBounds } {
  return { slots: Math.ceil(MAX_HANDSHAKES_IN_FLIGHT / count), shared: sharedBounds(maxOpen, MAX_SLOW_HANDSHAKES) };
}

export interface ServeThreadsDeps {
  readonly registry: Registry;
  readonly tlsSettings: TlsSettings;
  readonly logger: Logger;
  readonly maxPerSource: number;
  /** Open connections at most, all threads together (MAX_OPEN_CONNECTIONS if not given). */
  readonly maxOpen?: number;
  /** The server's build (src/build.ts): a thread whose files are another ends at once, saying so. */
  readonly build?: BuildStamp;
}

/** How long ready() waits: a cold start of Node and our modules takes well under a second. */
const THREAD_LOAD_WAIT_MS = 10_000;

/** The main thread's channel for each forwarded name: a forwarded event is published again there. */
const republish = new Map<string, Channel<unknown>>(FORWARDED_CHANNELS.map((c) => [c.name, c]));

/** What a thread tells the set of them. */
interface ThreadHooks {
  /** The thread has ended (error or exit). */
  ended(thread: ServeThread, why: Error): void;
  /** Runs before each batch of answers leaves for the thread. */
  beforeAnswer(): void;
  /** A source-limit refusal of the thread's connection `id`: true if it is held to be decided again (source-recheck.ts), false to answer it now. */
  holdRefusal(thread: ServeThread, id: number, source: string): boolean;
  /** The thread has sent what it had when asked for `round`. */
  flushed(thread: ServeThread, round: number): void;
  /** The thread answered a ping (the liveness watch). */
  answered(thread: ServeThread): void;
  /** A secret request of one of its connections failed (our fault): said, a flood summed up (listener.ts). */
  requestFailed(line: string): void;
}

const NO_HANDSHAKES: HandshakeCounts = { holding: 0, slow: 0, waiting: 0, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 };

class ServeThread implements RecheckPeer {
  readonly worker: Worker;
  readonly index: number;
  open = 0;
  handshakes = NO_HANDSHAKES;
  readonly #deps: ServeThreadsDeps;
  /** Pending requests' controllers, from abort-pool.ts. */
  readonly #aborts = new Map<number, AbortController>();
  #decisions: Array<{ id: number; decision: SecretDecision }> = [];
  #admissions: Array<{ id: number; refusal: AdmissionRefusal | null }> = [];
  #flushScheduled = false;
  readonly #admission: Admission;
  readonly #waiters = new Map<FromThread["kind"], { resolve: (m: FromThread) => void; reject: (e: Error) => void }>();
  /** Why the thread ended, once it has: every wait on it then fails at once. */
  #ended: Error | null = null;
  readonly #hooks: ThreadHooks;

  constructor(data: ServeThreadData, deps: ServeThreadsDeps, admission: Admission, hooks: ThreadHooks) {
    this.#hooks = hooks;
    this.#admission = admission;
    this.#deps = deps;
    this.index = data.index;
    this.worker = new Worker(new URL("../../workers/serve.js", import.meta.url), { workerData: data });
    this.worker.on("message", (m: FromThread) => this.#onMessage(m));
    this.worker.on("error", (e) => {
      // The stack too: a thread's death is a bug to find from the log alone.
      deps.logger.error(`Serve thread ${data.index} failed: ${e.stack ?? e.message}`);
      this.#end(e);
    });
    this.worker.on("exit", (code) => this.#end(new Error(`serve thread ${data.index} exited with code ${code}`)));
  }

  /** The thread is gone: its waits fail, and its connections' pending requests are withdrawn. */
  #end(why: Error): void {
    if (this.#ended) return;
    this.#ended = why;
    for (const w of this.#waiters.values()) w.reject(why);
    this.#waiters.clear();
    for (const abort of this.#aborts.values()) abort.abort();
    this.#aborts.clear();
    this.#hooks.ended(this, why);
  }

  get ended(): boolean {
    return this.#ended !== null;
  }

  /** The thread's next message of this kind; rejects if the thread ends first. */
  next<K extends FromThread["kind"]>(kind: K): Promise<Extract<FromThread, { kind: K }>> {
    if (this.#ended) return Promise.reject(this.#ended);
    return new Promise((resolve, reject) => this.#waiters.set(kind, { resolve: resolve as (m: FromThread) => void, reject }));
  }

  post(message: ToThread): void {
    this.worker.postMessage(message);
  }

  flush(round: number): void {
    this.post({ kind: "flush", round });
  }

  /** Answers the thread's connection `id`: admitted (null) or why not. */
  answerEnter(id: number, refusal: AdmissionRefusal | null): void {
    this.#admissions.push({ id, refusal });
    this.#schedule();
  }

  /** When the ping not yet answered was sent (liveness watch); null when none waits. */
  pingSentAt: number | null = null;
  /** Said unanswering, not yet said answering again. */
  silent = false;

  #onMessage(m: FromThread): void {
    if (m.kind === "pong") {
      this.pingSentAt = null;
      this.open = m.open;
      this.handshakes = m.handshakes;
      this.#hooks.answered(this);
      return;
    }
    if (m.kind === "batch") {
      this.open = m.open;
      this.handshakes = m.handshakes;
      for (const op of m.ops) this.#op(op);
      if (m.round !== undefined) this.#hooks.flushed(this, m.round);
      return;
    }
    // "listening" and "listen-failed" answer the same wait.
    const kind = m.kind === "listen-failed" ? "listening" : m.kind;
    const waiter = this.#waiters.get(kind);
    this.#waiters.delete(kind);
    waiter?.resolve(m);
  }

  #op(op: ThreadOp): void {
    const { registry, logger } = this.#deps;
    switch (op.op) {
      case "event":
        republish.get(op.channel)?.publish(op.message);
        return;
      case "request": {
        const abort = takeAbortController();
        this.#aborts.set(op.id, abort);
        // Bound methods, not arrows made a request (docs/BENCHMARK.md, "Closures compiled again").
        registry.requestSecret(op.name, op.key, op.address, abort.signal).then(this.#decide.bind(this, op.id), this.#requestFailed.bind(this, op.id, op.name));
        return;
      }
      case "enter": {
        const refusal = this.#admission.enter(op.source);
        // Another thread's leaves may not be in yet: decided again once they are.
        if (refusal === "source-limit" && this.#hooks.holdRefusal(this, op.id, op.source)) return;
        this.answerEnter(op.id, refusal);
        return;
      }
      case "leave":
        this.#admission.leave(op.source);
        return;
      case "failed":
        this.#admission.failed(op.source);
        return;
      case "abort":
        this.#aborts.get(op.id)?.abort();
        this.#aborts.delete(op.id);
        return;
      case "delivered":
        registry.secretDelivered(op.name);
        return;
      case "not-found":
        registry.notFound(op.keyId, op.address);
        return;
      case "log":
        logger[op.level](op.message);
        return;
    }
  }

  #requestFailed(id: number, name: string, error: unknown): void {
    this.#hooks.requestFailed(`Secret request for ${name} failed: ${String(error)}`);
    this.#decide(id, { give: false, reason: "aborted" });
  }

  #decide(id: number, decision: SecretDecision): void {
    const abort = this.#aborts.get(id);
    if (!abort) return;
    this.#aborts.delete(id);
    returnAbortController(abort);
    this.#decisions.push({ id, decision });
    this.#schedule();
  }

  /** The answers leave at the end of this turn, together. */
  #schedule(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#hooks.beforeAnswer();
      const answer = answersMessage(this.#decisions, this.#admissions);
      this.#decisions = [];
      this.#admissions = [];
      this.worker.postMessage(answer);
    });
  }
}

/**
 * The registry's answers for a serve thread, packed: a secret is a view on
 * clients.conf's shared secret chunk (../config/secret-arena.ts), which a
 * structured clone would copy whole, 64 KiB for each secret sent.
 */
export function answersMessage(
  decisions: ReadonlyArray<{ readonly id: number; readonly decision: SecretDecision }>,
  admissions: ReadonlyArray<{ readonly id: number; readonly refusal: AdmissionRefusal | null }>,
): ToThread {
  return packBytes<ToThread>({ kind: "answers", decisions, admissions });
}

/** Has `thread` listen; its listen error (EADDRINUSE...) is thrown here with its code. */
async function listenOn(thread: ServeThread, options: ListenOptions): Promise<Extract<FromThread, { kind: "listening" }>> {
  const answer = thread.next("listening") as Promise<FromThread>; // "listen-failed" answers the same wait
  thread.post({ kind: "listen", options });
  const r = await answer;
  if (r.kind === "listening") return r;
  throw Object.assign(new Error(r.kind === "listen-failed" ? r.message : "serve thread did not listen"), { code: r.kind === "listen-failed" ? r.code : undefined });
}

export class ServeThreads {
  readonly #threads: ServeThread[] = [];
  readonly #deps: ServeThreadsDeps;
  #generation = -1;
  /** A build of the key tables waits for the end of this turn (#keysChanged). */
  #keysScheduled = false;
  readonly #knownKeys: KnownKeys;
  readonly #unsubscribe: () => void;
  readonly #loaded: Promise<boolean>;
  #onEndedListener: ((why: Error) => void) | null = null;
  /** The shared listening descriptor, once the first thread listens. */
  #fd = -1;
  /** A thread's end before onEnded() was called, told to it then. */
  #endedEarly: Error | null = null;
  /** The channels last said to have subscribers (#syncChannels); null: not said yet, all are forwarded. */
  #channels: string | null = null;
  #closing = false;
  /** The threads' connections' secret requests that failed, decided here: said, a flood summed up. */
  readonly #requestFailures: OwnFailureLines;

  constructor(count: number, deps: ServeThreadsDeps) {
    this.#deps = deps;
    this.#requestFailures = new OwnFailureLines(systemClock, deps.logger);
    // One count of the sources for all threads (admission.ts, Rules 1 and 3); each thread keeps its own handshake slots.
    const admission = new Admission({ clock: systemClock, maxPerSource: deps.maxPerSource, slots: 0 });
    const { slots, shared } = serveThreadLimits(count, deps.maxOpen ?? MAX_OPEN_CONNECTIONS);
    const recheck = new SourceRecheck(this.#threads, (held, last) => {
      const refusal = admission.enter(held.source);
      if (refusal === "source-limit" && !last) return false;
      held.peer.answerEnter(held.id, refusal);
      return true;
    });
    for (let index = 0; index < count; index++) {
      this.#threads.push(new ServeThread({ index, stride: count, tlsSettings: deps.tlsSettings, slots, shared, ...(deps.build ? { build: deps.build } : {}) }, deps, admission, {
        ended: (thread, why) => {
          recheck.ended(thread);
          this.#ended(why);
        },
        beforeAnswer: () => this.#syncChannels(),
        holdRefusal: (thread, id, source) => recheck.hold(thread, id, source),
        requestFailed: (line) => this.#requestFailures.note("secret-request", line),
        flushed: (thread, round) => recheck.flushed(thread, round),
        answered: (thread) => {
          if (!thread.silent) return;
          thread.silent = false;
          this.#deps.logger.warning(`Serve thread ${thread.index} answers again`);
        },
      }));
    }
    const loaded = Promise.all(this.#threads.map((t) => t.next("loaded"))).then(() => true, () => false);
    this.#loaded = Promise.race([loaded, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), THREAD_LOAD_WAIT_MS).unref())]);
    this.#knownKeys = knownKeysOf(deps.registry);
    this.#sendKeys();
    this.#unsubscribe = deps.registry.subscribe(() => this.#keysChanged());
  }

  /** Tells the threads which connection channels have subscribers here, when that has changed. */
  #syncChannels(): void {
    let names = "";
    for (const c of FORWARDED_CHANNELS) if (c.hasSubscribers) names += `${c.name} `;
    if (names === this.#channels) return;
    this.#channels = names;
    const message: ToThread = { kind: "channels", names: names.split(" ").filter(Boolean) };
    for (const t of this.#threads) t.post(message);
  }

  /**
   * A registry event: the tables are built again once the events of this
   * turn are in. Built at each event, a reload that added 1,000 clients to
   * 10,000 built them 1,000 times, ~30 ms each, and held the main thread
   * for over 30 s (systemd's watchdog kills at 30). Until the new tables
   * arrive, a thread finds a new client unknown (its mandos-client tries
   * again), and a removed or re-keyed one is refused by the registry,
   * which checks the key a request names.
   */
  #keysChanged(): void {
    if (this.#keysScheduled || this.#deps.registry.keyIdGeneration === this.#generation) return;
    this.#keysScheduled = true;
    setImmediate(() => {
      this.#keysScheduled = false;
      if (!this.#closing) this.#sendKeys();
    });
  }

  #sendKeys(): void {
    const { registry } = this.#deps;
    if (registry.keyIdGeneration === this.#generation) return;
    this.#generation = registry.keyIdGeneration;
    const keys: ClientKeys = { index: buildClientIndex(registry.list()), knownKeys: this.#knownKeys() };
    for (const t of this.#threads) t.post({ kind: "keys", keys });
  }

  /**
   * Called once if a thread ends while serving: its connections are lost,
   * and its end closed the shared descriptor under the others (see the
   * header), so the server must stop, as it would on an uncaught exception
   * on the main thread, and be restarted.
   */
  onEnded(listener: (why: Error) => void): void {
    const early = this.#endedEarly;
    this.#endedEarly = null;
    if (early) listener(early);
    else this.#onEndedListener = listener;
  }

  #ended(why: Error): void {
    if (this.#closing) return;
    const listener = this.#onEndedListener;
    this.#onEndedListener = null;
    if (listener) listener(why);
    else this.#endedEarly ??= why;
  }

  /** Whether every thread has loaded its code; false if not within THREAD_LOAD_WAIT_MS. Await it before dropping privileges. */
  ready(): Promise<boolean> {
    return this.#loaded;
  }

  get openConnections(): number {
    let n = 0;
    for (const t of this.#threads) n += t.open;
    return n;
  }

  /** The threads' handshakes, as each last told with its batch of events. */
  get handshakes(): HandshakeCounts {
    let holding = 0;
    let slow = 0;
    let waiting = 0;
    let evictedSlow = 0;
    let evictedWaiting = 0;
    let evictedSilent = 0;
    for (const t of this.#threads) {
      holding += t.handshakes.holding;
      slow += t.handshakes.slow;
      waiting += t.handshakes.waiting;
      evictedSlow += t.handshakes.evictedSlow;
      evictedWaiting += t.handshakes.evictedWaiting;
      evictedSilent += t.handshakes.evictedSilent;
    }
    return { holding, slow, waiting, evictedSlow, evictedWaiting, evictedSilent };
  }

  /** The listening socket's descriptor the threads share (-1 until listening): the process's, so the main thread can look at it (listening-socket.ts). */
  get fd(): number {
    return this.#fd;
  }

  async listen(options: ListenOptions): Promise<{ address: string; port: number }> {
    // The log, metrics and audit have subscribed by now; checked again before each answer.
    this.#syncChannels();
    const [first, ...rest] = this.#threads;
    const bound = await listenOn(first!, options);
    this.#fd = bound.fd;
    await Promise.all(rest.map((t) => listenOn(t, { ...options, fd: bound.fd })));
    return { address: bound.address, port: bound.port };
  }

  /**
   * Pings each thread every LIVENESS_PING_MS; one that has not answered
   * for THREAD_UNANSWERED_MS (wedged in a loop by a bug: its connections
   * wait, and it accepts no more) is said, at ERROR, and unanswering()
   * names it, for /health and the systemd watchdog, which restarts the
   * server. Returns a function that stops the watch.
   */
  watchLiveness(now: () => number = () => performance.now()): () => void {
    const look = (): void => {
      for (const t of this.#threads) {
        if (t.ended) continue;
        if (t.pingSentAt === null) {
          t.pingSentAt = now();
          t.post({ kind: "ping" });
        } else if (!t.silent && now() - t.pingSentAt >= THREAD_UNANSWERED_MS) {
          t.silent = true;
          this.#deps.logger.error(`Serve thread ${t.index} has not answered for ${THREAD_UNANSWERED_MS / 1000} s: the connections it holds wait, and it accepts no more; the server must be restarted (under systemd, its watchdog does)`);
        }
      }
    };
    const timer = setInterval(look, LIVENESS_PING_MS);
    timer.unref();
    look();
    return () => clearInterval(timer);
  }

  /** Why a serve thread is taken for wedged (watchLiveness), or null. */
  unanswering(): string | null {
    const silent = this.#threads.find((t) => t.silent && !t.ended);
    return silent ? `serve thread ${silent.index} has not answered for ${THREAD_UNANSWERED_MS / 1000} s or more` : null;
  }

  /**
   * Stops accepting, lets the connections finish within `graceMs`, and
   * resolves once every thread has closed, or has not answered within
   * `graceMs` + CLOSE_SLACK_MS: a thread that no longer answers (wedged in
   * a loop) must not hold the stop for ever, and with it the state's last
   * save; its connections end with the process. `false` then.
   */
  async close(graceMs: number): Promise<boolean> {
    this.#closing = true;
    this.#unsubscribe();
    this.#requestFailures.stop();
    const answered = await Promise.all(this.#threads.map(async (t, index) => {
      // Not terminated: a thread's end would close the shared descriptor
      // under the others (see the header). It idles until the process exits.
      t.worker.unref();
      if (t.ended) return true;
      const closed = t.next("closed").then(() => true, () => true);
      t.post({ kind: "close", graceMs });
      const limitMs = graceMs + CLOSE_SLACK_MS;
      const inTime = await within(closed, limitMs, false);
      if (!inTime) this.#deps.logger.error(`Serve thread ${index} did not close within ${limitMs / 1000} s; stopping without it (its connections end with the process)`);
      return inTime;
    }));
    return answered.every(Boolean);
  }
}
