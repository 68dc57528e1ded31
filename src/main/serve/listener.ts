// The accept loop: one listening socket on the main thread, admission
// control in front of the handshake, and the set of live connections.
//
// Admission: at most MAX_HANDSHAKES_IN_FLIGHT connections are between
// accept and a finished handshake. Others wait, unread, in a FIFO (bounded
// by ADMISSION_WAIT_MS each and MAX_OPEN_CONNECTIONS in all), so that a
// burst is served first come, first served instead of every handshake
// slowing down together.
//
// The facts (a connection not admitted; the connections' own, see
// connection.ts) go to events.ts's channels; every deadline is the clock's.

import { createServer, type Server, type Socket } from "node:net";
import type { TlsSettings } from "../../tls/index.js";
import type { Clock, TimerHandle } from "../clock.js";
import { events } from "../events.js";
import { Connection } from "./connection.js";
import { InterfaceFilter } from "./interface-filter.js";
import type { HandshakeRunner } from "./handshake-runner.js";
import { ADMISSION_WAIT_MS, LISTEN_BACKLOG, MAX_HANDSHAKES_IN_FLIGHT, MAX_OPEN_CONNECTIONS } from "./limits.js";
import type { Logger } from "../daemon/log.js";
import type { Registry } from "../clients/contract.js";

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

export interface ListenerDeps {
  readonly registry: Registry;
  readonly runner: HandshakeRunner;
  readonly tlsSettings: TlsSettings;
  /** For the listening socket's own troubles and internal failures; the facts go to events.ts's channels. */
  readonly logger: Logger;
  /** Every deadline: the connections' and the admission wait. */
  readonly clock: Clock;
}

interface Waiting {
  readonly socket: Socket;
  readonly timer: TimerHandle;
}

export class Listener {
  readonly #deps: ListenerDeps;
  readonly #server: Server;
  readonly #connections = new Set<Connection>();
  // FIFO of accepted sockets waiting for a handshake slot; #head indexes
  // the oldest so that shift() stays O(1) on large bursts.
  #waiting: (Waiting | undefined)[] = [];
  #head = 0;
  #inFlight = 0;
  #interface: InterfaceFilter | null = null;
  /** Set while close() waits for the last connection to end. */
  #drained: (() => void) | null = null;

  constructor(deps: ListenerDeps) {
    this.#deps = deps;
    this.#server = createServer({ pauseOnConnect: true, noDelay: true }, (socket) => this.#accept(socket));
    this.#server.maxConnections = MAX_OPEN_CONNECTIONS;
    this.#server.on("error", (error) => deps.logger.error(`Listening socket error: ${error.message}`));
  }

  /** Binds and listens; resolves with the bound address and port. */
  listen(options: ListenOptions): Promise<{ address: string; port: number }> {
    if (options.interface) {
      this.#interface = new InterfaceFilter(options.interface);
      if (!this.#interface.exists()) this.#deps.logger.warning(`Interface ${options.interface} does not exist (yet)`);
    }
    return new Promise((resolve, reject) => {
      const onError = (error: Error): void => reject(error);
      this.#server.once("error", onError);
      const done = (): void => {
        this.#server.off("error", onError);
        const bound = this.#server.address();
        if (bound && typeof bound === "object") resolve({ address: bound.address, port: bound.port });
        else resolve({ address: String(bound), port: 0 });
      };
      if (options.fd !== undefined) {
        this.#server.listen({ fd: options.fd, backlog: LISTEN_BACKLOG }, done);
        return;
      }
      let host = options.address !== "" ? options.address : options.ipv6 ? "::" : "0.0.0.0";
      // A link-local address needs its scope; the reference takes it from --interface.
      if (options.interface && /^fe80:/i.test(host) && !host.includes("%")) host = `${host}%${options.interface}`;
      // ipv6Only false: one socket serves IPv6 and IPv4-mapped clients.
      this.#server.listen({ host, port: options.port, backlog: LISTEN_BACKLOG, ipv6Only: false }, done);
    });
  }

  get openConnections(): number {
    return this.#connections.size + (this.#waiting.length - this.#head);
  }

  #accept(socket: Socket): void {
    if (this.#interface && !this.#interface.accepts(socket.localAddress)) {
      this.#notAdmitted(socket, "not-on-interface");
      socket.destroy();
      return;
    }
    if (this.#inFlight < MAX_HANDSHAKES_IN_FLIGHT) {
      this.#start(socket);
      return;
    }
    const entry: Waiting = {
      socket,
      timer: this.#deps.clock.setTimeout(() => {
        this.#notAdmitted(socket, "admission-timeout");
        socket.destroy();
      }, ADMISSION_WAIT_MS),
    };
    socket.once("close", () => entry.timer.cancel());
    this.#waiting.push(entry);
  }

  #notAdmitted(socket: Socket, why: "admission-timeout" | "not-on-interface"): void {
    if (!events.connectionNotAdmitted.hasSubscribers) return;
    events.connectionNotAdmitted.publish({ address: socket.remoteAddress ?? "?", localAddress: socket.localAddress ?? "?", why });
  }

  #start(socket: Socket): void {
    this.#inFlight++;
    const connection = new Connection(socket, {
      registry: this.#deps.registry,
      runner: this.#deps.runner,
      tlsSettings: this.#deps.tlsSettings,
      logger: this.#deps.logger,
      clock: this.#deps.clock,
      releaseSlot: () => {
        this.#inFlight--;
        this.#admitNext();
      },
      onClosed: () => {
        this.#connections.delete(connection);
        if (this.#connections.size === 0) this.#drained?.();
      },
    });
    this.#connections.add(connection);
  }

  #admitNext(): void {
    while (this.#inFlight < MAX_HANDSHAKES_IN_FLIGHT && this.#head < this.#waiting.length) {
      const entry = this.#waiting[this.#head];
      this.#waiting[this.#head++] = undefined;
      if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#head);
        this.#head = 0;
      }
      if (!entry) continue;
      entry.timer.cancel();
      if (entry.socket.destroyed) continue;
      this.#start(entry.socket);
    }
  }

  /**
   * Stops accepting; connections already past the handshake and about to
   * receive a secret may finish within `graceMs`; the rest are dropped.
   */
  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (let i = this.#head; i < this.#waiting.length; i++) this.#waiting[i]?.socket.destroy();
    this.#waiting = [];
    this.#head = 0;
    if (this.#connections.size > 0) {
      await new Promise<void>((resolve) => {
        const grace = this.#deps.clock.setTimeout(() => resolve(), graceMs);
        this.#drained = () => {
          grace.cancel();
          resolve();
        };
      });
      this.#drained = null;
    }
    for (const c of this.#connections) c.shutdown();
    await closed;
  }
}
