// The accept loop: one listening socket on the main thread, fair admission
// (admission.ts) in front of the handshake, and the set of live connections.
//
// At accept, a connection's source (source.ts) must be under its cap and
// not throttled, or the socket is closed before a byte is read. Accepted
// connections read their version line holding no slot; then at most
// HANDSHAKE_SLOTS_PER_WORKER for each of the runner's workers (inline,
// MAX_HANDSHAKES_IN_FLIGHT) are between that line and a finished handshake,
// besides those waiting on slow peers (the slow pool, MAX_SLOW_HANDSHAKES),
// the others waiting (unread, ADMISSION_WAIT_MS at most) round-robin across
// sources, so that a burst is served in turn instead of every handshake
// slowing down together, and one crowded source does not push the others
// back. MAX_OPEN_CONNECTIONS bounds them all. At that cap a new connection
// takes the place of, in this order: the oldest that has said nothing for
// IDLE_EVICT_AFTER_MS; the oldest slow handshake whose peer has been
// silent SLOW_EVICT_AFTER_MS in the slow pool; the newest connection
// waiting for a slot from the source with the most waiting, if two or
// more and not the newcomer's (admission.ts). With none of them it is
// closed. A serve thread makes room among its own connections only.
//
// The facts (a connection not admitted; the connections' own, see
// connection.ts) go to events.ts's channels; every deadline is the clock's.

import { createServer, type Server, type Socket } from "node:net";
import type { TlsSettings } from "../../tls/index.js";
import type { Clock, TimerHandle } from "../clock.js";
import { events } from "../events.js";
import { Admission, type AdmissionRefusal, type HandshakeCounts } from "./admission.js";
import { Connection, type ConnectionHost, type OwnFailure } from "./connection.js";
import { InterfaceFilter } from "./interface-filter.js";
import { passedSocketError } from "./passed-socket.js";
import type { HandshakeRunner } from "./handshake-runner.js";
import {
  DEFAULT_MAX_PER_SOURCE,
  HANDSHAKE_SLOTS_PER_WORKER,
  IDLE_EVICT_AFTER_MS,
  LISTEN_BACKLOG,
  MAX_HANDSHAKES_IN_FLIGHT,
  MAX_OPEN_CONNECTIONS,
  MAX_SLOW_HANDSHAKES,
  SLOW_RESERVE_PER_THREAD,
} from "./limits.js";
import { sourceOf } from "./source.js";
import { Limit, type SharedLimits } from "./shared-limit.js";
import { Fifo } from "./fifo.js";
import { SummedLines, type Logger } from "../daemon/log.js";
import type { SecretSource } from "../clients/contract.js";

export interface ListenOptions {
  /** Address to bind; "" for any. */
  readonly address: string;
  /** Port; 0 for an OS-chosen one. */
  readonly port: number;
  readonly ipv6: boolean;
  /** An already-bound listening socket's file descriptor (--socket), instead of address/port. */
  readonly fd?: number | undefined;
  /** Serve only connections that arrive on this interface (--interface); see interface-filter.ts. */
  readonly interface?: string | undefined;
}

/**
 * Who counts the sources (admission.ts, Rules 1 and 3): the listener's own
 * admission, or, on a serve thread, the main thread's for every thread
 * (serve-threads.ts), whose answer comes a turn later.
 */
export interface SourceGate {
  enter(source: string): AdmissionRefusal | null | Promise<AdmissionRefusal | null>;
  leave(source: string): void;
  failed(source: string): void;
}

/**
 * How often a stop looks for connections whose peers keep it waiting
 * (Listener.close): a quarter of IDLE_EVICT_AFTER_MS and SLOW_EVICT_AFTER_MS.
 */
const STOP_LOOK_MS = 250;

export interface ListenerDeps {
  readonly registry: SecretSource;
  readonly runner: HandshakeRunner;
  readonly tlsSettings: TlsSettings;
  /** For the listening socket's own troubles and internal failures; the facts go to events.ts's channels. */
  readonly logger: Logger;
  /** Every deadline: the connections' and the admission wait. */
  readonly clock: Clock;
  /** Open connections per source at most (0: no limit); DEFAULT_MAX_PER_SOURCE if not given. */
  readonly maxPerSource?: number | undefined;
  /** Counts the sources instead of this listener's admission (a serve thread's; then maxPerSource is not used here). */
  readonly gate?: SourceGate | undefined;
  /** Open connections at most, MAX_OPEN_CONNECTIONS if not given. */
  readonly maxOpen?: number | undefined;
  /**
   * Handshake slots (a serve thread's share of them); if not given,
   * HANDSHAKE_SLOTS_PER_WORKER for each of the runner's workers, or
   * MAX_HANDSHAKES_IN_FLIGHT inline.
   */
  readonly slots?: number | undefined;
  /**
   * The open connections and the slow pool, counted with the other serve
   * threads (shared-limit.ts), with SLOW_RESERVE_PER_THREAD of the pool
   * this listener's own; then maxOpen is not used. If not given, the slow
   * pool is this listener's own, MAX_SLOW_HANDSHAKES.
   */
  readonly shared?: SharedLimits | undefined;
}

/** What a summed line of each kind of failure of our own counts. */
const OWN_FAILURE_WORDS: Readonly<Record<Exclude<OwnFailure, "bug">, string>> = {
  "runner-timeout": "handshakes that waited on the handshake runner until their time ran out",
  "task-failed": "handshake tasks that failed",
  "key-shares": "connections given no key shares",
  "secret-request": "secret requests that failed",
};

/**
 * A connection's ERROR lines for failures of our own. Of each kind the
 * first is said, the rest summed up every 10 s with the last of them; a
 * kind that begins is said at once, and a state machine fault ("bug")
 * always.
 */
export class OwnFailureLines {
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #kinds = new Map<OwnFailure, { readonly lines: SummedLines; last: string }>();

  constructor(clock: Clock, logger: Logger) {
    this.#clock = clock;
    this.#logger = logger;
  }

  note(kind: OwnFailure, line: string): void {
    if (kind === "bug") {
      this.#logger.error(line);
      return;
    }
    let of = this.#kinds.get(kind);
    if (of === undefined) {
      const summed = new SummedLines(
        this.#clock, 10_000,
        (message) => this.#logger.error(message),
        (count, seconds) => this.#logger.error(`${count} more ${OWN_FAILURE_WORDS[kind]} in the last ${seconds} s (the last: ${of!.last})`),
      );
      of = { lines: summed, last: line };
      this.#kinds.set(kind, of);
    }
    of.last = line;
    of.lines.note(line);
  }

  /** Says what is still counted; no timer is left. */
  stop(): void {
    for (const { lines } of this.#kinds.values()) lines.stop();
  }
}

export class Listener {
  readonly #deps: ListenerDeps;
  readonly #server: Server;
  readonly #acceptErrors: SummedLines;
  /** Handshakes' failures of our own (connection.ts's ERROR lines), each kind said once, then summed up. */
  readonly #ownFailures: OwnFailureLines;
  readonly #connections = new Set<Connection>();
  /**
   * Connections in the order accepted, while they may still wait for their
   * version line: those that have sent it (or closed) leave from the front
   * as each new one comes, so it holds the last VERSION_LINE_TIMEOUT_MS
   * of connections at most.
   */
  readonly #lineless = new Fifo<Connection>();
  readonly #admission: Admission;
  readonly #gate: SourceGate;
  /** Open connections: every socket from accept until it is closed, the process's descriptors. */
  readonly #open: Limit;
  /** What every connection shares (connection.ts). */
  readonly #host: ConnectionHost;
  #closing = false;
  #interface: InterfaceFilter | null = null;
  /** Set while close() waits for the last connection to end. */
  #drained: (() => void) | null = null;

  constructor(deps: ListenerDeps) {
    this.#deps = deps;
    this.#admission = new Admission({
      clock: deps.clock,
      maxPerSource: deps.maxPerSource ?? DEFAULT_MAX_PER_SOURCE,
      // Never more than inline: with many workers (--workers 200), 64 each
      // would pass the open-connections cap, and fair admission never act.
      slots: deps.slots ?? (deps.runner.workers > 0 ? Math.min(HANDSHAKE_SLOTS_PER_WORKER * deps.runner.workers, MAX_HANDSHAKES_IN_FLIGHT) : MAX_HANDSHAKES_IN_FLIGHT),
      slowPool: deps.shared?.slow ?? new Limit(MAX_SLOW_HANDSHAKES),
      // A thread closes only its own slow handshakes for its waiting connections: it needs some there.
      slowReserve: deps.shared ? SLOW_RESERVE_PER_THREAD : 0,
    });
    this.#gate = deps.gate ?? this.#admission;
    this.#open = deps.shared?.open ?? new Limit(deps.maxOpen ?? MAX_OPEN_CONNECTIONS);
    const admission = this.#admission;
    const gate = this.#gate;
    const open = this.#open;
    // A connection's own ERROR lines (a task that threw, the runner out of
    // time) come one a connection: a broken or wedged worker would write
    // one for each of thousands of machines. Of each kind the first is
    // said, the rest summed up every 10 s with the last of them; a kind
    // that begins is said at once, and a state machine fault always.
    const ownFailures = new OwnFailureLines(deps.clock, deps.logger);
    this.#ownFailures = ownFailures;
    this.#host = {
      registry: deps.registry,
      runner: deps.runner,
      tlsSettings: deps.tlsSettings,
      ownFailure: (kind, line) => ownFailures.note(kind, line),
      clock: deps.clock,
      requestSlot: (source, granted, evict, connection) => admission.requestSlot(source, granted, connection, evict),
      sending: (source) => gate.leave(source),
      closed: (connection, source, _outcome, failed, left) => {
        if (failed) {
          gate.failed(source);
          // A serve thread's slots are its own: its ring must see its failing sources too.
          if (gate !== admission) admission.failed(source);
        }
        if (!left) gate.leave(source);
        open.give();
        this.#connections.delete(connection);
        if (this.#connections.size === 0) this.#drained?.();
      },
    };
    // Not Node's maxConnections: it counts this thread's sockets only, and
    // serve threads bound the process's together (shared-limit.ts).
    this.#server = createServer({ pauseOnConnect: true, noDelay: true }, (socket) => this.#accept(socket));
    // A failing accept (ENOBUFS, ENOMEM) fails again at every turn: said once, then summed up.
    this.#acceptErrors = new SummedLines(
      deps.clock, 10_000,
      (message) => deps.logger.error(`Listening socket error: ${message}`),
      (count, seconds) => deps.logger.error(`Listening socket errors: ${count} more in the last ${seconds} s`),
    );
    // Only while listening: listen's own failure (EADDRINUSE) comes here too,
    // and listen() hands it to its caller, who says it (once).
    this.#server.on("error", (error) => {
      if (this.#server.listening) this.#acceptErrors.note(error.message);
    });
  }

  /** Binds and listens; resolves with the bound address and port. */
  listen(options: ListenOptions): Promise<{ address: string; port: number }> {
    // Given only if it exists (main.ts, as the reference's ENODEV).
    if (options.interface) this.#interface = new InterfaceFilter(options.interface);
    return new Promise((resolve, reject) => {
      const fd = options.fd;
      const onError = (error: NodeJS.ErrnoException): void => {
        // Node's own EINVAL for a descriptor that is no stream socket
        // (libuv's guess: not TCP, not UNIX): a datagram socket, or a
        // socket connected already (passed-socket.ts checked it is one).
        if (fd !== undefined && error.code === "EINVAL") reject(passedSocketError(fd, "EINVAL", "not a TCP socket that can listen: a datagram socket, or one connected already"));
        else reject(error);
      };
      this.#server.once("error", onError);
      const done = (): void => {
        this.#server.off("error", onError);
        const bound = this.#server.address();
        if (bound && typeof bound === "object") {
          resolve({ address: bound.address, port: bound.port });
          return;
        }
        // A UNIX-domain socket (a pipe to Node): its peers have no IP address to serve.
        this.#server.close();
        reject(passedSocketError(fd ?? -1, "EAFNOSUPPORT", "a UNIX-domain socket, not TCP"));
      };
      if (options.fd !== undefined) {
        // The backlog as an argument: Node 20 reads `backlog` from the
        // options only when it binds, and listens on a given descriptor
        // with its default of 511 otherwise. listen(2) on a listening
        // socket sets its backlog anew, so every serve thread after the
        // first cut the shared queue to 511, and a burst of 1,000 overflowed
        // it: SYNs dropped, clients retrying after 1 s and 3 s.
        this.#server.listen({ fd: options.fd }, LISTEN_BACKLOG, done);
        return;
      }
      let host = options.address !== "" ? options.address : options.ipv6 ? "::" : "0.0.0.0";
      // A link-local address needs its scope; the reference takes it from --interface.
      if (options.interface && /^fe80:/i.test(host) && !host.includes("%")) host = `${host}%${options.interface}`;
      // ipv6Only false: one socket serves IPv6 and IPv4-mapped clients.
      this.#server.listen({ host, port: options.port, backlog: LISTEN_BACKLOG, ipv6Only: false }, done);
    });
  }

  /** The listening socket's file descriptor, once listening (for serve threads that share it). */
  get fd(): number {
    const handle = (this.#server as unknown as { _handle?: { fd?: number } })._handle;
    return handle?.fd ?? -1;
  }

  get openConnections(): number {
    return this.#connections.size;
  }

  /** Handshakes holding a slot, in the slow pool, and waiting for a slot. */
  get handshakes(): HandshakeCounts {
    return this.#admission.counts;
  }

  #accept(socket: Socket): void {
    if (this.#closing) {
      // Closed but still listening (a serve thread's shared socket): as refused.
      socket.resetAndDestroy();
      return;
    }
    // Undefined when the peer reset before we got to it (see below).
    const address = socket.remoteAddress;
    const source = address === undefined ? undefined : sourceOf(address);
    if (!this.#open.take() && !(source !== undefined && this.#makeRoom(source) && this.#open.take())) {
      // At the cap, closed before a byte is read, as Node's maxConnections would.
      this.#notAdmitted(socket, "open-limit");
      socket.destroy();
      return;
    }
    // From here every way out gives the count back: #drop, or the connection's close.
    if (this.#interface && !this.#interface.accepts(socket.localAddress)) {
      this.#notAdmitted(socket, "not-on-interface");
      this.#drop(socket);
      return;
    }
    // Reset by its peer before we got to it (a scanner's connect-then-RST):
    // the kernel no longer knows its address, so there is no source to
    // count it against, nothing to log it as (it was "('', 0)", every such
    // peer in one per-source bucket), and nobody to answer.
    if (source === undefined) {
      this.#drop(socket);
      return;
    }
    const refusal = this.#gate.enter(source);
    if (!(refusal instanceof Promise)) {
      this.#admit(socket, source, refusal);
      return;
    }
    // Bound methods, not arrows made a connection (docs/BENCHMARK.md, "Closures compiled again").
    refusal.then(this.#admit.bind(this, socket, source), this.#admissionFailed.bind(this, socket));
  }

  #admissionFailed(socket: Socket, error: unknown): void {
    this.#deps.logger.error(`Admission of ${socket.remoteAddress ?? "?"} failed: ${String(error)}`);
    this.#drop(socket);
  }

  /** Closes an accepted socket that never became a connection, and gives its count back. */
  #drop(socket: Socket, reset = false): void {
    this.#open.give();
    if (reset) socket.resetAndDestroy();
    else socket.destroy();
  }

  #admit(socket: Socket, source: string, refusal: AdmissionRefusal | null): void {
    if (refusal) {
      this.#notAdmitted(socket, refusal);
      // A reset, not a FIN: nothing was said, and no TIME_WAIT is left here.
      this.#drop(socket, true);
      return;
    }
    if (this.#closing || socket.destroyed) {
      // Closed while the gate answered (a serve thread's): nothing was read.
      this.#gate.leave(source);
      this.#drop(socket);
      return;
    }
    const connection = new Connection(socket, this.#host, source);
    this.#connections.add(connection);
    this.#dropSpoken();
    this.#lineless.push(connection);
  }

  /** Lets go of the connections at the front that no longer wait for their line. */
  #dropSpoken(): void {
    for (let c = this.#lineless.peek(); c !== undefined && !c.awaitingLine; c = this.#lineless.peek()) this.#lineless.shift();
  }

  /**
   * At the open connections cap, for a newcomer from `newcomer`: closes a
   * connection that gives its count back (with serve threads, to every
   * thread's count: another may take it first). False if none may go.
   */
  #makeRoom(newcomer: string): boolean {
    return this.#evictLineless() || this.#admission.evictSlow() || this.#admission.evictWaiter(newcomer);
  }

  /** Closes the oldest connection that has waited IDLE_EVICT_AFTER_MS for its version line; false if there is none. */
  #evictLineless(): boolean {
    this.#dropSpoken();
    const oldest = this.#lineless.peek();
    if (oldest === undefined || this.#deps.clock.elapsed() - oldest.acceptedAt < IDLE_EVICT_AFTER_MS) return false;
    this.#lineless.shift();
    if (!oldest.evictIdle()) return false;
    this.#admission.silentEvicted();
    return true;
  }

  #notAdmitted(socket: Socket, why: AdmissionRefusal | "not-on-interface" | "open-limit"): void {
    if (!events.connectionNotAdmitted.hasSubscribers) return;
    events.connectionNotAdmitted.publish({ address: socket.remoteAddress ?? "?", localAddress: socket.localAddress ?? "?", why });
  }

  /**
   * Stops accepting; the connections open may finish within `graceMs`,
   * but those whose peers keep them waiting (Connection.keepsStopWaiting:
   * as the open connections cap counts them), looked for every
   * STOP_LOOK_MS, are closed rather than waited for; then all but those
   * sending a secret are closed. Before 2026-12 a silent peer held every
   * stop its whole grace (6-11 s stops during a wave with hostile peers).
   * `keepListening`: the socket is shared with other threads and must not
   * be closed (see serve-threads.ts); connections are then reset at accept.
   */
  async close(graceMs: number, keepListening = false): Promise<void> {
    this.#closing = true;
    this.#acceptErrors.stop();
    const closed = keepListening ? Promise.resolve() : new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (this.#connections.size > 0) {
      const clock = this.#deps.clock;
      await new Promise<void>((resolve) => {
        let look: TimerHandle | null = null;
        const grace = clock.setTimeout(() => {
          look?.cancel();
          resolve();
        }, graceMs);
        this.#drained = () => {
          grace.cancel();
          look?.cancel();
          look = null;
          resolve();
        };
        const closeStalled = (): void => {
          look = null;
          const now = clock.elapsed();
          for (const c of [...this.#connections]) if (c.keepsStopWaiting(now)) c.shutdown();
          if (this.#connections.size > 0 && this.#drained !== null) look = clock.setTimeout(closeStalled, STOP_LOOK_MS);
        };
        closeStalled();
      });
      this.#drained = null;
    }
    for (const c of this.#connections) c.shutdown();
    this.#ownFailures.stop();
    await closed;
  }
}
