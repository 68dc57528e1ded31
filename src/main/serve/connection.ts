// One client connection, from accept to close: the Mandos protocol's steps
// (docs/PROTOCOL.md, "Version 1, step by step") as a state machine over a socket, the TLS engine and the
// registry.
//
// Theory of operation. The socket's bytes go to whichever state wants them;
// the TLS engine is driven sans-IO (receive, then drain output, events and
// tasks); its expensive steps go to the handshake runner (inline or a worker)
// and come back asynchronously, during which incoming bytes stay buffered in
// the engine.
//
// Invariants:
//   Rule 1: no byte of a secret is handed to the engine before the handshake
//           is complete, the peer's key ID matched a client, and the registry
//           decided to give (enabled; approved or no approval needed).
//   Rule 2: every state has a deadline; none waits on the peer for ever
//           (see limits.ts). Waiting for approval has the registry's own.
//   Rule 3: every path ends in #close(), which is idempotent, clears the
//           deadline, releases the handshake slot (or leaves the queue for
//           one) and withdraws a pending registry request.
//   Rule 5: only a connection that sent a good version line asks for a
//           handshake slot (admission.ts); a silent socket holds none.
//   Rule 4: the facts (accepted, version line, handshake done, client not
//           found or rejected, secret sent, closed) are published on
//           events.ts's channels, not logged: logging is a subscriber
//           (daemon/log-serve.ts). Only internal failures are logged here.
//
// Transitions (anything else is a bug and closes the connection):
//
//   AwaitingLine     --line ok-->            AwaitingSlot
//   AwaitingSlot     --slot granted-->       Handshaking
//   Handshaking      --handshake-complete--> AwaitingDecision
//   AwaitingDecision --give-->               Sending
//   (any)            --error/eof/timeout-->  Closed
//   Sending          --flushed-->            Closed

import type { Socket } from "node:net";
import { EngineDriver, TlsClient, type EngineSink, type GnutlsError, type EphemeralKeyShares, type HandshakeTask, type HandshakeTaskResult, type TlsEvent, type TlsSettings } from "../../tls/index.js";
import { EMPTY_KEY_ID, normaliseKeyId } from "../clients/settings.js";
import type { Clock, TimerHandle } from "../clock.js";
import { events, type ConnectionOutcome, type ConnectionRef, type ConnectionStage } from "../events.js";
import type { HandshakeRunner } from "./handshake-runner.js";
import type { EvictReason, Slot, SlotTicket } from "./admission.js";
import {
  ADMISSION_WAIT_MS,
  DECISION_CORK_MS,
  HANDSHAKE_TIMEOUT_MS,
  IDLE_EVICT_AFTER_MS,
  MAX_HANDSHAKE_READS,
  PEER_SLOW_MS,
  SEND_TIMEOUT_MS,
  SLOW_EVICT_AFTER_MS,
  VERSION_LINE_MAX_BYTES,
  VERSION_LINE_TIMEOUT_MS,
} from "./limits.js";
import type { SecretDecision, SecretSource } from "../clients/contract.js";
import { findLineEnd, judgeVersionBytes } from "./version-line.js";
import { returnAbortController, takeAbortController } from "./abort-pool.js";
import { scopeId, splitZone } from "./peer-address.js";

export type ConnectionState = ConnectionStage | "Closed";

const NEXT: Record<ConnectionState, readonly ConnectionState[]> = {
  AwaitingLine: ["AwaitingSlot", "Closed"],
  AwaitingSlot: ["Handshaking", "Closed"],
  Handshaking: ["AwaitingDecision", "Closed"],
  AwaitingDecision: ["Sending", "Closed"],
  Sending: ["Closed"],
  Closed: [],
};

// Connection IDs, unique within the process (channels are process-wide):
// a serve thread numbers its own as n × stride + its index.
let lastId = 0;
let idStride = 1;
let idOffset = 0;

/** A serve thread's share of the connection IDs (serve-threads.ts). */
export function numberConnections(index: number, stride: number): void {
  idOffset = index;
  idStride = stride;
}

/**
 * What every connection of a listener shares: one object, not one a
 * connection (a connection waiting for its slot is promoted to the old
 * generation in a wave, and every full collection walks what it holds).
 */
/**
 * A failure of ours in a connection: a state machine fault ("bug"), the
 * runner out of the handshake's time, a task that threw, no key shares, a
 * secret request that failed.
 */
export type OwnFailure = "bug" | "runner-timeout" | "task-failed" | "key-shares" | "secret-request";

export interface ConnectionHost {
  readonly registry: SecretSource;
  readonly runner: HandshakeRunner;
  readonly tlsSettings: TlsSettings;
  /**
   * Says a failure of our own at ERROR (the facts go to events.ts's
   * channels); the listener sums a flood of each kind up, but for "bug".
   */
  ownFailure(kind: OwnFailure, line: string): void;
  /** Every deadline and duration. */
  readonly clock: Clock;
  /**
   * Asks for a handshake slot for a peer of `source`; `granted` may run
   * before this returns. The slot is released when the handshake ends.
   * `evict` closes the connection to make room (admission.ts): while it
   * waits for its slot, or in the slow pool if it still waits on its peer.
   */
  requestSlot(
    source: string,
    granted: (slot: Slot, connection: Connection) => void,
    evict: (connection: Connection, why: EvictReason) => boolean,
    connection: Connection,
  ): SlotTicket;
  /**
   * The secret is going out: the connection no longer counts against its
   * source (admission.ts, Rule 1). Said before the write, not when its
   * callback comes: the peer has its secret, and may connect again, before
   * then, and with serve threads another thread may count that next
   * connection first (source-recheck.ts).
   */
  sending(source: string): void;
  /**
   * Called once, at the very end; `failed` when the peer failed the
   * protocol (admission.ts, Rule 3): it ended before a decision for any
   * reason but ours, its key was unknown, or its client was refused.
   * `left`: sending() was said (the source has its count back).
   */
  closed(connection: Connection, source: string, outcome: ConnectionOutcome, failed: boolean, left: boolean): void;
}

/** No bytes: the line and early buffers' value between uses (one Buffer, not one a connection). */
const EMPTY = Buffer.alloc(0);

/** The connection a socket belongs to, for the socket's event handlers, which every connection shares. */
const CONNECTION = Symbol("mandos-ts.connection");
type OwnedSocket = Socket & { [CONNECTION]?: Connection };

export class Connection {
  #state: ConnectionState = "AwaitingLine";
  readonly #socket: OwnedSocket;
  readonly #deps: ConnectionHost;
  /** The source the peer counts against (serve/source.ts). */
  readonly #source: string;
  readonly #ref: ConnectionRef;
  readonly #started: number;
  #line: Buffer = EMPTY;
  #tls: TlsClient | null = null;
  #driver: EngineDriver | null = null;
  /** Socket reads since the handshake began, against MAX_HANDSHAKE_READS. */
  #handshakeReads = 0;
  /** Time spent waiting on the handshake runner so far (HandshakeDone.runnerWaitMs). */
  #runnerWaitMs = 0;
  #keyId = "";
  /** The client whose secret the peer asked for, once its key was found (for mandos:secret:abandoned). */
  #client: string | null = null;
  /** A legacy peer's OpenPGP fingerprint, once its handshake is done. */
  #fingerprint: string | undefined = undefined;
  #deadline: TimerHandle | null = null;
  /** What the deadline's timeout event says the connection was doing. */
  #deadlineWhat = "";
  /** The handshake slot, from its grant to the handshake's end. */
  #slot: Slot | null = null;
  /** Looks, PEER_SLOW_MS after the slot came, whether the peer keeps us waiting (#checkSlow). */
  #slowCheck: TimerHandle | null = null;
  #ticket: SlotTicket | null = null;
  /** Bytes after the version line, kept while waiting for a slot. */
  #early: Buffer = EMPTY;
  /** Its key was unknown, or its client was refused the secret (disabled, denied, approval timed out): a failure of its source. */
  #keyRefused = false;
  #abort: AbortController | null = null;
  /** Set while our Finished waits, corked, for the decision. */
  #cork: NodeJS.Timeout | null = null;

  constructor(socket: Socket, deps: ConnectionHost, source: string) {
    this.#socket = socket;
    this.#deps = deps;
    this.#source = source;
    this.#started = deps.clock.elapsed();
    const address = socket.remoteAddress ?? "";
    const port = socket.remotePort ?? 0;
    // The reference logs Python's socket address tuple; keep its form.
    const [host, zone] = splitZone(address);
    const label = socket.remoteFamily === "IPv6" ? `('${host}', ${port}, 0, ${scopeId(zone)})` : `('${host}', ${port})`;
    this.#ref = { id: ++lastId * idStride + idOffset, address, port, source, label };
    if (events.connectionAccepted.hasSubscribers) events.connectionAccepted.publish({ connection: this.#ref });
    socket.setNoDelay(true);
    this.#socket[CONNECTION] = this;
    socket.on("data", Connection.#socketData);
    socket.on("end", Connection.#socketEnd);
    socket.on("error", Connection.#socketError);
    socket.on("close", Connection.#socketClose);
    this.#arm(VERSION_LINE_TIMEOUT_MS, "waiting for the version line");
    socket.resume();
  }

  // The socket's events, one function each for every connection.
  static #socketData(this: OwnedSocket, chunk: Buffer): void {
    const c = this[CONNECTION];
    if (c) c.#onData(chunk);
  }

  static #socketEnd(this: OwnedSocket): void {
    const c = this[CONNECTION];
    if (c) c.#onEnd();
  }

  static #socketError(this: OwnedSocket, error: NodeJS.ErrnoException): void {
    const c = this[CONNECTION];
    if (c) c.#onSocketError(error);
  }

  static #socketClose(this: OwnedSocket): void {
    const c = this[CONNECTION];
    if (c) c.#close("peer-closed");
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Closed: the runner drops a task of its still waiting for a worker (RunnerCaller). */
  get closed(): boolean {
    return this.#state === "Closed";
  }

  /** Its source had failed lately when it got its slot: its runner work waits behind others' (RunnerCaller). */
  get behind(): boolean {
    return this.#slot?.behind === true;
  }

  /** How events name this connection. */
  get ref(): ConnectionRef {
    return this.#ref;
  }

  /** Server shutdown: drop a connection that has not been given its secret. */
  shutdown(): void {
    if (this.#state !== "Sending") this.#close("shutdown");
  }

  /**
   * At a stop: whether its peer keeps it waiting as the open connections
   * cap counts that (no version line after IDLE_EVICT_AFTER_MS; in the
   * slow pool SLOW_EVICT_AFTER_MS and still waiting on its peer). The stop
   * closes it rather than wait its grace for it (listener.ts).
   */
  keepsStopWaiting(now: number): boolean {
    if (this.#state === "AwaitingLine") return now - this.#started >= IDLE_EVICT_AFTER_MS;
    const since = this.#slot?.slowSince ?? null;
    return this.#state === "Handshaking" && since !== null && now - since >= SLOW_EVICT_AFTER_MS && this.#waitsOnPeer;
  }

  /** The handshake's engine has no task out and waits on its peer (not on us: key shares, a worker). */
  get #waitsOnPeer(): boolean {
    return this.#driver !== null && this.#driver.pending === null;
  }

  /** Waiting for its version line since `acceptedAt` (the listener's idle ones, listener.ts). */
  get awaitingLine(): boolean {
    return this.#state === "AwaitingLine";
  }

  /** When it was accepted, on the host clock's monotonic time (Clock.elapsed). */
  get acceptedAt(): number {
    return this.#started;
  }

  /**
   * The server is at its open connections cap and a new connection waits
   * at accept: closed, as a timeout of its peer, if it still waits for its
   * version line (IDLE_EVICT_AFTER_MS). False if it has sent it.
   */
  evictIdle(): boolean {
    if (this.#state !== "AwaitingLine") return false;
    this.#close("timeout", `waiting for the version line: over ${IDLE_EVICT_AFTER_MS / 1000} s, closed for a new connection at the open connections cap`);
    return true;
  }

  #to(next: ConnectionState): void {
    if (!NEXT[this.#state].includes(next)) {
      this.#deps.ownFailure("bug", `BUG: connection ${this.#ref.label} ${this.#state} -> ${next}`);
      this.#close("internal-error");
      return;
    }
    this.#state = next;
  }

  #arm(ms: number, what: string): void {
    this.#deadline?.cancel();
    this.#deadlineWhat = what;
    this.#deadline = this.#deps.clock.setTimeoutWith(Connection.#deadlinePassed, ms, this);
  }

  static #deadlinePassed(c: Connection): void {
    c.#deadline = null;
    // The handshake's time ran out while it waited on us (its key shares,
    // or a task out on the runner): our failure, not its peer's, and not
    // counted against its source.
    if (c.#state === "Handshaking" && !c.#waitsOnPeer) {
      c.#deps.ownFailure("runner-timeout", `Handshake of ${c.#ref.label} waited on the handshake runner until its ${HANDSHAKE_TIMEOUT_MS / 1000} s ran out`);
      c.#close("internal-error", "the handshake runner did not answer in time");
      return;
    }
    c.#close("timeout", c.#deadlineWhat);
  }

  static #slotGranted(slot: Slot, c: Connection): void {
    c.#onSlot(slot);
  }

  /**
   * The admission makes room (admission.ts). Waiting for a slot: closed
   * for a newcomer at the open connections cap, its source having the most
   * waiting. In the slow pool for SLOW_EVICT_AFTER_MS, with the pool full
   * and a connection waiting for a slot, or at the cap: closed as a
   * timeout of its peer if its peer still keeps it waiting.
   */
  static #evicted(c: Connection, why: EvictReason): boolean {
    if (c.#state === "AwaitingSlot") {
      c.#close("evicted", "waiting for a handshake slot: its source had the most waiting when a connection from another came at the open connections cap");
      return true;
    }
    if (c.#state !== "Handshaking" || !c.#waitsOnPeer) return false;
    const when = why === "open-limit" ? "at the open connections cap" : "while the slow pool was full and others waited";
    c.#close("timeout", `in the TLS handshake: its peer kept it waiting over ${SLOW_EVICT_AFTER_MS / 1000} s ${when}`);
    return true;
  }

  static #slowCheckDue(c: Connection): void {
    c.#checkSlow();
  }

  #elapsed(): number {
    return this.#deps.clock.elapsed() - this.#started;
  }

  #onData(chunk: Buffer): void {
    switch (this.#state) {
      case "AwaitingLine":
        return this.#onLineData(chunk);
      case "AwaitingSlot":
        // Paused, but a chunk already read may still be delivered.
        this.#early = Buffer.concat([this.#early, chunk]);
        return;
      case "Handshaking":
        if (++this.#handshakeReads > MAX_HANDSHAKE_READS) return this.#tooManyReads();
        this.#driver?.receive(chunk);
        return;
      case "AwaitingDecision":
      case "Sending":
        this.#driver?.receive(chunk);
        return;
      case "Closed":
        return;
    }
  }

  /**
   * A handshake past MAX_HANDSHAKE_READS: a TLS error of the peer's (logged
   * as a handshake that failed, held back as every peer's line is, and a
   * failure of its source), in the words GnuTLS has for a handshake past its
   * size (as MAX_HANDSHAKE_BUFFER_BYTES). The socket is destroyed, not
   * ended: a peer that trickles would go on being read.
   */
  #tooManyReads(): void {
    this.#close("tls-error", `more than ${MAX_HANDSHAKE_READS} reads before the handshake completed`, "GNUTLS_E_UNEXPECTED_PACKET_LENGTH");
    this.#socket.destroy();
  }

  #onLineData(chunk: Buffer): void {
    this.#line = this.#line.length === 0 ? chunk : Buffer.concat([this.#line, chunk]);
    const end = findLineEnd(this.#line);
    if (end < 0 ? this.#line.length > VERSION_LINE_MAX_BYTES : end > VERSION_LINE_MAX_BYTES) {
      this.#publishLine(null, false, `longer than ${VERSION_LINE_MAX_BYTES} bytes`);
      this.#close("bad-version");
      return;
    }
    if (end < 0) return;
    const rest = this.#line.subarray(end);
    if (!this.#judgeLine(this.#line.subarray(0, end))) return;
    this.#to("AwaitingSlot");
    // Nothing more is read until the slot comes: the rest stays in the kernel.
    this.#socket.pause();
    this.#arm(ADMISSION_WAIT_MS, "waiting for a handshake slot");
    // Kept only when the peer sent more (it should not: the handshake is ours to start).
    this.#early = rest.length > 0 ? rest : EMPTY;
    this.#ticket = this.#deps.requestSlot(this.#source, Connection.#slotGranted, Connection.#evicted, this);
  }

  /** Publishes the line's verdict; false (and closed) if it is refused. */
  #judgeLine(bytes: Buffer): boolean {
    this.#line = EMPTY;
    const verdict = judgeVersionBytes(bytes);
    this.#publishLine(verdict.line, verdict.ok, verdict.ok ? undefined : verdict.reason);
    if (!verdict.ok) this.#close("bad-version");
    return verdict.ok;
  }

  #onSlot(slot: Slot): void {
    this.#ticket = null;
    this.#slot = slot;
    if (this.#state !== "AwaitingSlot") {
      this.#releaseSlot();
      return;
    }
    this.#to("Handshaking");
    this.#arm(HANDSHAKE_TIMEOUT_MS, "during the TLS handshake");
    this.#slowCheck = this.#deps.clock.setTimeoutWith(Connection.#slowCheckDue, PEER_SLOW_MS, this);
    const early = this.#early;
    this.#early = EMPTY;
    this.#startTls(early);
  }

  /**
   * PEER_SLOW_MS into the handshake, and again as long as the wait is ours:
   * when the handshake waits on its peer (the engine has no task out and
   * its key shares came), the slot goes to the next connection
   * (admission.ts, Rule 2). While it waits on us (key shares, a worker)
   * it keeps the slot: handing it on would only lengthen the queue. So
   * does it while the slow pool is full.
   */
  #checkSlow(): void {
    this.#slowCheck = null;
    const slot = this.#slot;
    if (!slot || this.#state !== "Handshaking") return;
    const waitsOnPeer = this.#waitsOnPeer;
    // Not moved (ours to wait for, or the slow pool full): look again later.
    if (!(waitsOnPeer && slot.slow())) this.#slowCheck = this.#deps.clock.setTimeoutWith(Connection.#slowCheckDue, PEER_SLOW_MS, this);
  }

  #publishLine(line: string | null, accepted: boolean, reason: string | undefined): void {
    if (!events.versionLine.hasSubscribers) return;
    events.versionLine.publish({
      connection: this.#ref,
      line,
      accepted,
      maxBytes: VERSION_LINE_MAX_BYTES,
      ...(reason === undefined ? {} : { reason }),
    });
  }

  #startTls(early: Buffer): void {
    // No reads until the engine exists; bytes that arrive meanwhile wait in
    // the kernel.
    this.#socket.pause();
    const asked = this.#deps.clock.elapsed();
    // Bound methods, not arrows, for every continuation of a connection:
    // V8 holds optimised code weakly, so the code of an arrow made for one
    // connection went with it at the next full collection, and the next
    // connection's arrow was compiled again (docs/BENCHMARK.md, "Closures
    // compiled again"). A bound method's code belongs to the class.
    this.#deps.runner.keyShares(this).then(this.#sharesReady.bind(this, asked, early), this.#sharesFailed.bind(this));
  }

  #sharesReady(asked: number, early: Buffer, shares: EphemeralKeyShares): void {
    this.#runnerWaitMs += this.#deps.clock.elapsed() - asked;
    if (this.#state !== "Handshaking") return;
    const tls = new TlsClient(this.#deps.tlsSettings, shares);
    this.#tls = tls;
    this.#driver = new EngineDriver(tls, this.#engineSink(), this.#runTask.bind(this));
    tls.start();
    if (early.length > 0) this.#driver.receive(early);
    else this.#driver.pump();
    this.#socket.resume();
  }

  #sharesFailed(error: unknown): void {
    this.#deps.ownFailure("key-shares", `No key shares for ${this.#ref.label}: ${String(error)}`);
    this.#close("internal-error");
  }

  /** Where the engine's bytes and events go (src/tls/drive.ts drives it): one small object a handshake, its methods shared. */
  #engineSink(): EngineSink {
    return new Connection.#Sink(this);
  }

  static readonly #Sink = class ConnectionSink implements EngineSink {
    readonly #c: Connection;

    constructor(c: Connection) {
      this.#c = c;
    }

    write(bytes: Buffer): void {
      this.#c.#socket.write(bytes);
    }

    beforeWrite(event: TlsEvent): void {
      if (event.type !== "handshake-complete") return;
      // Our Finished is about to be written; when the secret follows
      // soon (no approval) both leave in one segment. Uncorked by the
      // decision, or after DECISION_CORK_MS, so an approval wait delays
      // the Finished no longer.
      const c = this.#c;
      c.#socket.cork();
      c.#cork = setTimeout(Connection.#corkExpired, DECISION_CORK_MS, c);
    }

    event(event: TlsEvent): void {
      this.#c.#onTlsEvent(event);
    }

    taskFailed(error: unknown): void {
      const c = this.#c;
      c.#deps.ownFailure("task-failed", `Handshake task for ${c.#ref.label} failed: ${String(error)}`);
      c.#close("internal-error");
    }
  };

  static #corkExpired(c: Connection): void {
    c.#uncork();
  }

  /** A handshake task on the runner (the pool or inline), its wait counted. */
  #runTask(task: HandshakeTask): Promise<HandshakeTaskResult> {
    return this.#deps.runner.run(task, this).finally(this.#taskBack.bind(this, this.#deps.clock.elapsed()));
  }

  #taskBack(asked: number): void {
    this.#runnerWaitMs += this.#deps.clock.elapsed() - asked;
  }

  #onTlsEvent(event: TlsEvent): void {
    switch (event.type) {
      case "handshake-complete":
        if (this.#state !== "Handshaking") return;
        this.#onPeerKey(event.keyId, event.fingerprint);
        return;
      case "data":
        // The protocol has the client send nothing after the handshake.
        return;
      case "closed":
        if (this.#state !== "Sending") this.#close("peer-closed", "sent close_notify");
        return;
      case "error":
        // A key no client has, refused in the handshake (src/tls/known-keys.ts):
        // a modern peer's before its signature was checked, a legacy peer's
        // once its ServerKeyExchange signature verified (flight12.ts). The
        // same refusal as after a handshake.
        if (event.error.code === "TLS_UNKNOWN_PEER_KEY" && event.error.keyId !== undefined) {
          // A legacy peer's identity is its v4 fingerprint (40 hex digits); a key ID has 64.
          const id = event.error.keyId;
          if (id.length === 40) this.#notFound("", false, id);
          else {
            this.#keyId = id;
            this.#notFound(id, false);
          }
          this.#flushAndClose("refused");
          return;
        }
        this.#flushAndClose("tls-error", event.error.message, event.error.gnutls);
        return;
    }
  }

  /** `fingerprint`: a legacy peer's (TLS 1.2, OpenPGP), looked up instead of the key ID, as the reference does. */
  #onPeerKey(keyId: string, fingerprint: string | undefined): void {
    this.#keyId = keyId;
    this.#fingerprint = fingerprint;
    if (events.handshakeDone.hasSubscribers) {
      events.handshakeDone.publish({
        connection: this.#ref,
        keyId,
        ...(fingerprint === undefined ? {} : { fingerprint }),
        durationMs: this.#elapsed(),
        runnerWaitMs: this.#runnerWaitMs,
      });
    }
    this.#to("AwaitingDecision");
    this.#deadline?.cancel();
    this.#deadline = null;
    this.#releaseSlot();
    const { registry } = this.#deps;
    const key = fingerprint !== undefined ? normaliseKeyId(fingerprint) : keyId;
    const client =
      fingerprint !== undefined ? registry.byFingerprint(key)
      : keyId === EMPTY_KEY_ID ? undefined
      : registry.byKeyId(keyId);
    if (!client) {
      this.#notFound(keyId, true, fingerprint);
      this.#close("refused");
      return;
    }
    this.#client = client.name;
    const abort = takeAbortController();
    this.#abort = abort;
    registry.requestSecret(client.name, key, this.#ref.address, abort.signal).then(
      this.#decided.bind(this, client.name, keyId, abort),
      this.#decisionFailed.bind(this, client.name, abort),
    );
  }

  #decided(name: string, keyId: string, abort: AbortController, decision: SecretDecision): void {
    this.#abort = null;
    returnAbortController(abort);
    if (this.#state !== "AwaitingDecision") return;
    if (!decision.give) {
      // A refusal costs its source a token, as an unknown key does: a
      // disabled machine retries every 10 s, a key replayed in a loop is
      // throttled (admission.ts, Rule 3). Not a wait closed for a newer one.
      const reason = decision.reason;
      this.#keyRefused = reason === "disabled" || reason === "denied" || reason === "approval_timeout";
      // "aborted" while the connection is open: the request failed on the
      // main thread (a serve thread's connection), as #decisionFailed.
      if (reason === "aborted") {
        this.#close("internal-error");
        return;
      }
      if (events.clientRejected.hasSubscribers) {
        events.clientRejected.publish({ connection: this.#ref, client: name, keyId, ...this.#legacyFingerprint(), reason });
      }
      this.#close("refused");
      return;
    }
    this.#sendSecret(name, decision.secret);
  }

  #decisionFailed(name: string, abort: AbortController, error: unknown): void {
    this.#abort = null;
    returnAbortController(abort);
    this.#deps.ownFailure("secret-request", `Secret request for ${name} failed: ${String(error)}`);
    this.#close("internal-error");
  }

  #legacyFingerprint(): { fingerprint?: string } {
    return this.#fingerprint === undefined ? {} : { fingerprint: this.#fingerprint };
  }

  #sendSecret(name: string, secret: Buffer): void {
    const tls = this.#tls;
    if (!tls) return;
    this.#to("Sending");
    this.#deps.sending(this.#source);
    this.#arm(SEND_TIMEOUT_MS, "sending the secret");
    tls.send(secret);
    tls.close();
    const out = tls.takeOutput();
    // end() writes the secret and close_notify behind the corked Finished, then uncorks: one segment.
    if (this.#cork) clearTimeout(this.#cork);
    this.#cork = null;
    this.#socket.end(out ?? Buffer.alloc(0), this.#secretFlushed.bind(this, name));
  }

  #secretFlushed(name: string): void {
    if (this.#state === "Closed") return;
    if (events.secretSent.hasSubscribers) {
      events.secretSent.publish({ connection: this.#ref, client: name, keyId: this.#keyId, ...this.#legacyFingerprint(), durationMs: this.#elapsed() });
    }
    this.#deps.registry.secretDelivered(name);
    this.#close("secret-sent");
  }

  /**
   * A reset (or a failed write). In the handshake, as the reference's
   * GnuTLS reports it: before our ClientHello is written, its write fails;
   * after, its read does, unless ours was a write.
   */
  #onSocketError(error: NodeJS.ErrnoException): void {
    const code = error.code ?? error.message;
    const gnutls: GnutlsError | undefined =
      this.#state === "AwaitingSlot" || code === "EPIPE" ? "GNUTLS_E_PUSH_ERROR"
      : this.#state === "Handshaking" ? "GNUTLS_E_PULL_ERROR"
      : undefined;
    this.#close("socket-error", code, gnutls);
  }

  #onEnd(): void {
    if (this.#state === "Sending" || this.#state === "Closed") return;
    if (this.#state === "AwaitingLine") {
      // The end of the stream ends the line, as in the reference's
      // readline(): no bytes at all is an empty line (a port scanner's or a
      // health check's connect and close), refused and logged; a good line
      // goes on to the handshake, which the peer has already left.
      if (!this.#judgeLine(this.#line)) return;
      this.#to("AwaitingSlot");
    }
    // Gone in the handshake: GnuTLS tells a stream cut inside a record from one cut between records.
    const gnutls: GnutlsError | undefined =
      this.#state === "AwaitingSlot" || this.#state === "Handshaking" ? (this.#tls?.partialRecord === true ? "GNUTLS_E_UNEXPECTED_PACKET_LENGTH" : "GNUTLS_E_PREMATURE_TERMINATION")
      : undefined;
    this.#close("peer-closed", `closed the connection in ${this.#state}`, gnutls);
  }

  /** No client has `keyId`: counted against the source (admission.ts, Rule 3) and published. */
  /** `fingerprint`: a legacy peer's; the reference names it where it would name the key ID ("key_id or fpr"). */
  #notFound(keyId: string, proven: boolean, fingerprint?: string): void {
    this.#keyRefused = true;
    if (events.clientNotFound.hasSubscribers) {
      events.clientNotFound.publish({ connection: this.#ref, keyId, ...(fingerprint === undefined ? {} : { fingerprint }), proven });
    }
    // The reference's ClientNotFound carries the host without its zone.
    this.#deps.registry.notFound(keyId || (fingerprint ?? ""), splitZone(this.#ref.address)[0]);
  }

  #flushAndClose(outcome: ConnectionOutcome, detail?: string, gnutls?: GnutlsError): void {
    // The engine has queued an alert for the peer; send it, then go.
    const out = this.#tls?.takeOutput();
    if (out && !this.#socket.destroyed) this.#socket.end(out);
    this.#close(outcome, detail, gnutls);
  }

  #uncork(): void {
    if (!this.#cork) return;
    clearTimeout(this.#cork);
    this.#cork = null;
    this.#socket.uncork();
  }

  #releaseSlot(): void {
    this.#slowCheck?.cancel();
    this.#slowCheck = null;
    this.#slot?.release();
    this.#slot = null;
  }

  #close(outcome: ConnectionOutcome, detail?: string, gnutls?: GnutlsError): void {
    const stage = this.#state;
    if (stage === "Closed") return;
    this.#state = "Closed";
    this.#uncork();
    this.#driver?.stop();
    this.#deadline?.cancel();
    this.#deadline = null;
    this.#abort?.abort();
    this.#abort = null;
    this.#ticket?.cancel();
    this.#ticket = null;
    this.#releaseSlot();
    if (outcome === "secret-sent" || outcome === "tls-error") {
      // end() on an ended stream only builds an error to throw away.
      if (!this.#socket.writableEnded) this.#socket.end();
    } else {
      // A known or unknown key refused after its handshake: close_notify
      // first, as the reference's bye(), so that mandos-client reads an end
      // (and retries quietly) instead of "Unknown error while reading data".
      // The write reaches the kernel at once (nothing else is queued, see
      // #uncork above), and close(2) sends it before the FIN; a peer that
      // does not read loses it, and no descriptor is kept for it.
      if (outcome === "refused" && stage === "AwaitingDecision" && this.#tls !== null && !this.#socket.destroyed) {
        this.#tls.close();
        const out = this.#tls.takeOutput();
        if (out) this.#socket.write(out);
      }
      this.#socket.destroy();
    }
    // A known client's request cut short (bad-version and evicted end a
    // connection before its key is known, refused and secret-sent are told).
    if (this.#client !== null && (stage === "AwaitingDecision" || stage === "Sending") && events.secretAbandoned.hasSubscribers
      && outcome !== "refused" && outcome !== "secret-sent" && outcome !== "bad-version" && outcome !== "evicted") {
      events.secretAbandoned.publish({ connection: this.#ref, client: this.#client, keyId: this.#keyId, ...this.#legacyFingerprint(), outcome, stage });
    }
    if (events.connectionClosed.hasSubscribers) {
      const connection = this.#ref;
      const durationMs = this.#elapsed();
      // One object, of one of four shapes (`gnutls` comes only with a
      // `detail`, `legacy` only with `gnutls`).
      events.connectionClosed.publish(
        detail === undefined ? { connection, outcome, stage, durationMs }
        : gnutls === undefined ? { connection, outcome, stage, durationMs, detail }
        : this.#tls?.legacySession !== true ? { connection, outcome, stage, durationMs, detail, gnutls }
        : { connection, outcome, stage, durationMs, detail, gnutls, legacy: true },
      );
    }
    const beforeDecision = stage === "AwaitingLine" || stage === "Handshaking";
    const ours = outcome === "shutdown" || outcome === "internal-error";
    this.#deps.closed(this, this.#source, outcome, this.#keyRefused || (beforeDecision && !ours), stage === "Sending");
  }
}
