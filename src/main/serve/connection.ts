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
//           deadline, releases the handshake slot and withdraws a pending
//           registry request.
//
// Transitions (anything else is a bug and closes the connection):
//
//   AwaitingLine     --line ok-->            Handshaking
//   Handshaking      --handshake-complete--> AwaitingDecision
//   AwaitingDecision --give-->               Sending
//   (any)            --error/eof/timeout-->  Closed
//   Sending          --flushed-->            Closed

import type { Socket } from "node:net";
import { TlsClient, type TlsEvent, type TlsSettings } from "../../tls/index.js";
import { EMPTY_KEY_ID } from "../clients/settings.js";
import type { HandshakeRunner } from "./handshake-runner.js";
import {
  HANDSHAKE_TIMEOUT_MS,
  SEND_TIMEOUT_MS,
  VERSION_LINE_MAX_BYTES,
  VERSION_LINE_TIMEOUT_MS,
} from "./limits.js";
import type { Logger } from "../daemon/log.js";
import type { Registry, SecretDecision } from "../clients/contract.js";
import { findLineEnd, judgeVersionLine } from "./version-line.js";

export type ConnectionState = "AwaitingLine" | "Handshaking" | "AwaitingDecision" | "Sending" | "Closed";

const NEXT: Record<ConnectionState, readonly ConnectionState[]> = {
  AwaitingLine: ["Handshaking", "Closed"],
  Handshaking: ["AwaitingDecision", "Closed"],
  AwaitingDecision: ["Sending", "Closed"],
  Sending: ["Closed"],
  Closed: [],
};

/** How a connection ended, for logs, metrics and tests. */
export type ConnectionOutcome =
  | "secret-sent"
  | "bad-version"
  | "line-too-long"
  | "timeout"
  | "peer-closed"
  | "tls-error"
  | "unknown-key"
  | "refused"
  | "socket-error"
  | "shutdown"
  | "internal-error";

export interface ConnectionDeps {
  readonly registry: Registry;
  readonly runner: HandshakeRunner;
  readonly tlsSettings: TlsSettings;
  readonly logger: Logger;
  /** Called once, when the handshake slot can go to the next connection. */
  readonly releaseSlot: () => void;
  /** Called once, at the very end. */
  readonly onClosed: (outcome: ConnectionOutcome) => void;
}

export class Connection {
  #state: ConnectionState = "AwaitingLine";
  readonly #socket: Socket;
  readonly #deps: ConnectionDeps;
  readonly #address: string;
  readonly #label: string;
  #line: Buffer = Buffer.alloc(0);
  #tls: TlsClient | null = null;
  #taskRunning = false;
  #deadline: NodeJS.Timeout | null = null;
  #slotHeld = true;
  #abort: AbortController | null = null;

  constructor(socket: Socket, deps: ConnectionDeps) {
    this.#socket = socket;
    this.#deps = deps;
    this.#address = socket.remoteAddress ?? "";
    // The reference logs Python's socket address tuple; keep its form.
    this.#label =
      socket.remoteFamily === "IPv6"
        ? `('${this.#address}', ${socket.remotePort ?? 0}, 0, 0)`
        : `('${this.#address}', ${socket.remotePort ?? 0})`;
    deps.logger.info(`TCP connection from: ${this.#label}`);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("end", () => this.#onEnd());
    socket.on("error", (error: NodeJS.ErrnoException) => {
      deps.logger.debug(`Socket error from ${this.#label}: ${error.code ?? error.message}`);
      this.#close("socket-error");
    });
    socket.on("close", () => this.#close("peer-closed"));
    this.#arm(VERSION_LINE_TIMEOUT_MS, "waiting for the version line");
    socket.resume();
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Server shutdown: drop a connection that has not been given its secret. */
  shutdown(): void {
    if (this.#state !== "Sending") this.#close("shutdown");
  }

  // A method, not an inline comparison: handlers called above may have
  // closed the connection, which TypeScript's narrowing cannot see.
  #closed(): boolean {
    return this.#state === "Closed";
  }

  #to(next: ConnectionState): void {
    if (!NEXT[this.#state].includes(next)) {
      this.#deps.logger.error(`BUG: connection ${this.#label} ${this.#state} -> ${next}`);
      this.#close("internal-error");
      return;
    }
    this.#state = next;
  }

  #arm(ms: number, what: string): void {
    if (this.#deadline) clearTimeout(this.#deadline);
    this.#deadline = setTimeout(() => {
      this.#deps.logger.info(`Connection ${this.#label} timed out ${what}`);
      this.#close("timeout");
    }, ms);
    this.#deadline.unref();
  }

  #onData(chunk: Buffer): void {
    switch (this.#state) {
      case "AwaitingLine":
        return this.#onLineData(chunk);
      case "Handshaking":
      case "AwaitingDecision":
      case "Sending":
        if (this.#tls) {
          this.#tls.receive(chunk);
          this.#pump();
        }
        return;
      case "Closed":
        return;
    }
  }

  #onLineData(chunk: Buffer): void {
    this.#line = this.#line.length === 0 ? chunk : Buffer.concat([this.#line, chunk]);
    const end = findLineEnd(this.#line);
    if (end < 0) {
      if (this.#line.length > VERSION_LINE_MAX_BYTES) {
        this.#deps.logger.error(`Unknown protocol version: line from ${this.#label} longer than ${VERSION_LINE_MAX_BYTES} bytes`);
        this.#close("line-too-long");
      }
      return;
    }
    if (end > VERSION_LINE_MAX_BYTES) {
      this.#deps.logger.error(`Unknown protocol version: line from ${this.#label} longer than ${VERSION_LINE_MAX_BYTES} bytes`);
      this.#close("line-too-long");
      return;
    }
    const line = this.#line.subarray(0, end).toString("latin1");
    const rest = this.#line.subarray(end);
    this.#line = Buffer.alloc(0);
    this.#deps.logger.debug(`Protocol version: ${JSON.stringify(line)}`);
    const verdict = judgeVersionLine(line);
    if (!verdict.ok) {
      this.#deps.logger.error(`Unknown protocol version: ${verdict.reason}`);
      this.#close("bad-version");
      return;
    }
    this.#to("Handshaking");
    this.#arm(HANDSHAKE_TIMEOUT_MS, "during the TLS handshake");
    this.#startTls(rest);
  }

  #startTls(early: Buffer): void {
    // No reads until the engine exists; bytes that arrive meanwhile wait in
    // the kernel.
    this.#socket.pause();
    this.#deps.runner.keyShares().then(
      (shares) => {
        if (this.#state !== "Handshaking") return;
        const tls = new TlsClient(this.#deps.tlsSettings, shares);
        this.#tls = tls;
        tls.start();
        if (early.length > 0) tls.receive(early);
        this.#pump();
        this.#socket.resume();
      },
      (error: unknown) => {
        this.#deps.logger.error(`No key shares for ${this.#label}: ${String(error)}`);
        this.#close("internal-error");
      },
    );
  }

  /** Drains the engine: output to the socket, events, then a task if one is due. */
  #pump(): void {
    const tls = this.#tls;
    if (!tls || this.#state === "Closed") return;
    for (;;) {
      const event = tls.nextEvent();
      if (event?.type === "handshake-complete") {
        // Our Finished is about to be written; when the secret follows at
        // once (no approval) both leave in one segment. Uncork by the next
        // turn of the event loop at the latest, so an approval wait delays
        // nothing.
        this.#socket.cork();
        setImmediate(() => this.#socket.uncork());
      }
      const out = tls.takeOutput();
      if (out) this.#socket.write(out);
      if (event) {
        this.#onTlsEvent(event);
        if (this.#closed()) return;
        continue;
      }
      if (!out) break;
    }
    if (this.#taskRunning) return;
    const task = tls.takeTask();
    if (!task) return;
    this.#taskRunning = true;
    this.#deps.runner.run(task).then(
      (result) => {
        this.#taskRunning = false;
        if (this.#state === "Closed") return;
        tls.completeTask(result);
        this.#pump();
      },
      (error: unknown) => {
        this.#taskRunning = false;
        // A pool torn down at shutdown rejects the tasks of connections it already closed.
        if (this.#closed()) return;
        this.#deps.logger.error(`Handshake task for ${this.#label} failed: ${String(error)}`);
        this.#close("internal-error");
      },
    );
  }

  #onTlsEvent(event: TlsEvent): void {
    switch (event.type) {
      case "handshake-complete":
        if (this.#state !== "Handshaking") return;
        this.#deps.logger.debug("Handshake succeeded");
        this.#onPeerKey(event.keyId);
        return;
      case "data":
        // The protocol has the client send nothing after the handshake.
        return;
      case "closed":
        if (this.#state !== "Sending") {
          this.#deps.logger.debug(`Peer ${this.#label} sent close_notify`);
          this.#close("peer-closed");
        }
        return;
      case "error":
        if (this.#state === "Handshaking") {
          this.#deps.logger.warning(`Handshake failed: ${event.error.message}`);
        } else {
          this.#deps.logger.warning(`TLS error from ${this.#label}: ${event.error.message}`);
        }
        this.#flushAndClose("tls-error");
        return;
    }
  }

  #onPeerKey(keyId: string): void {
    this.#deps.logger.debug(`Key ID: ${keyId}`);
    this.#to("AwaitingDecision");
    if (this.#deadline) clearTimeout(this.#deadline);
    this.#deadline = null;
    this.#releaseSlot();
    const { registry, logger } = this.#deps;
    const client = keyId === EMPTY_KEY_ID ? undefined : registry.byKeyId(keyId);
    if (!client) {
      logger.info(`Client not found for key ID: ${keyId}, address: ${this.#label}`);
      registry.notFound(keyId, this.#address);
      this.#close("unknown-key");
      return;
    }
    const abort = new AbortController();
    this.#abort = abort;
    registry.requestSecret(client.name, this.#address, abort.signal).then(
      (decision) => {
        this.#abort = null;
        if (this.#state !== "AwaitingDecision") return;
        if (!decision.give) {
          logRefusal(logger, client.name, decision.reason);
          this.#close("refused");
          return;
        }
        this.#sendSecret(client.name, decision.secret);
      },
      (error: unknown) => {
        this.#abort = null;
        logger.error(`Secret request for ${client.name} failed: ${String(error)}`);
        this.#close("internal-error");
      },
    );
  }

  #sendSecret(name: string, secret: Buffer): void {
    const tls = this.#tls;
    if (!tls) return;
    this.#to("Sending");
    this.#arm(SEND_TIMEOUT_MS, "sending the secret");
    tls.send(secret);
    tls.close();
    const out = tls.takeOutput();
    this.#socket.end(out ?? Buffer.alloc(0), () => {
      if (this.#state === "Closed") return;
      this.#deps.logger.info(`Sending secret to ${name}`);
      this.#deps.registry.secretDelivered(name);
      this.#close("secret-sent");
    });
  }

  #onEnd(): void {
    if (this.#state === "Sending" || this.#state === "Closed") return;
    this.#deps.logger.debug(`Peer ${this.#label} closed the connection in ${this.#state}`);
    this.#close("peer-closed");
  }

  #flushAndClose(outcome: ConnectionOutcome): void {
    // The engine has queued an alert for the peer; send it, then go.
    const out = this.#tls?.takeOutput();
    if (out && !this.#socket.destroyed) this.#socket.end(out);
    this.#close(outcome);
  }

  #releaseSlot(): void {
    if (!this.#slotHeld) return;
    this.#slotHeld = false;
    this.#deps.releaseSlot();
  }

  #close(outcome: ConnectionOutcome): void {
    if (this.#state === "Closed") return;
    this.#state = "Closed";
    if (this.#deadline) clearTimeout(this.#deadline);
    this.#deadline = null;
    this.#abort?.abort();
    this.#abort = null;
    this.#releaseSlot();
    if (outcome === "secret-sent" || outcome === "tls-error") {
      // end() on an ended stream only builds an error to throw away.
      if (!this.#socket.writableEnded) this.#socket.end();
    } else {
      this.#socket.destroy();
    }
    this.#deps.onClosed(outcome);
  }
}

/** The reference's log line for each reason a known client gets nothing. */
function logRefusal(logger: Logger, name: string, reason: Exclude<SecretDecision, { give: true }>["reason"]): void {
  switch (reason) {
    case "disabled":
      logger.info(`Client ${name} is disabled`);
      return;
    case "denied":
      logger.warning(`Client ${name} was not approved`);
      return;
    case "approval_timeout":
      logger.warning(`Client ${name} timed out while waiting for approval`);
      return;
    case "removed":
      logger.info(`Client ${name} was refused: Removed`);
      return;
    case "aborted":
      logger.info(`Client ${name} was refused: Aborted`);
  }
}
