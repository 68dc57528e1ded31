// A client's connection to the system bus, for talking to avahi-daemon
// (avahi.ts): method calls whose failures keep their D-Bus error names
// (Avahi answers a taken name with org.freedesktop.Avahi.CollisionError,
// and the reference acts on that name), and signals delivered through match
// rules. src/main/dbus's BusConnection serves objects; it drops signals and
// keeps error names only in message text, so it does not fit here.

import { createRequire } from "node:module";
import type { EventEmitter } from "node:events";
import { CodedError } from "../../errors.js";
import { BUS_CONNECT_TIMEOUT_MS, MESSAGE_TYPE, type WireMessage } from "../dbus/connection.js";
import type { WireValue } from "../dbus/values.js";

export { BUS_CONNECT_TIMEOUT_MS };

const require = createRequire(import.meta.url);
const dbusNative = require("@homebridge/dbus-native") as {
  createConnection(options: { busAddress: string }): WireConnection;
};

interface WireConnection extends EventEmitter {
  message(msg: WireMessage): void;
  end(): void;
  stream: { destroy(): void };
}

export const BUS_ERROR = {
  /** The bus could not be reached or did not answer Hello in time. */
  connectFailed: "MANDOS_ZEROCONF_BUS_CONNECT_FAILED",
  /** The connection was closed or lost before the answer came. */
  disconnected: "MANDOS_ZEROCONF_BUS_DISCONNECTED",
  /** The peer answered with a D-Bus error; its name is in `errorName`. */
  remote: "MANDOS_ZEROCONF_BUS_REMOTE_ERROR",
  /** No answer within the time given. */
  timeout: "MANDOS_ZEROCONF_BUS_TIMEOUT",
} as const;

export type BusErrorCode = (typeof BUS_ERROR)[keyof typeof BUS_ERROR];

export class BusCallError extends CodedError<BusErrorCode> {
  /** The D-Bus error name of a remote error ("org.freedesktop.Avahi.CollisionError"); "" otherwise. */
  readonly errorName: string;
  constructor(code: BusErrorCode, message: string, errorName = "") {
    super(code, message);
    this.errorName = errorName;
  }
}

/** A received signal. */
export interface BusSignal {
  readonly sender: string;
  readonly path: string;
  readonly interface: string;
  readonly member: string;
  readonly body: readonly WireValue[];
}

export interface MethodCall {
  readonly destination: string;
  readonly path: string;
  readonly interface: string;
  readonly member: string;
  readonly signature?: string;
  readonly body?: WireValue[];
}

export class SystemBusClient {
  readonly #wire: WireConnection;
  #serial = 1;
  readonly #pending = new Map<number, { resolve: (body: WireValue[]) => void; reject: (e: Error) => void }>();
  #onSignal: (signal: BusSignal) => void = () => undefined;
  #onClose: (error: Error) => void = () => undefined;
  #closed = false;

  private constructor(wire: WireConnection) {
    this.#wire = wire;
    wire.on("message", (msg: WireMessage) => this.#dispatch(msg));
    wire.on("error", (error: Error) => this.#lost(new BusCallError(BUS_ERROR.disconnected, error.message)));
    wire.on("end", () => this.#lost(new BusCallError(BUS_ERROR.disconnected, "the bus closed the connection")));
  }

  /** Connects to `address`, authenticates and says Hello. */
  static async connect(address: string, timeoutMs = BUS_CONNECT_TIMEOUT_MS): Promise<SystemBusClient> {
    let wire: WireConnection;
    try {
      wire = dbusNative.createConnection({ busAddress: address });
    } catch (error) {
      throw new BusCallError(BUS_ERROR.connectFailed, `cannot connect to ${address}: ${(error as Error).message}`);
    }
    const bus = new SystemBusClient(wire);
    try {
      await bus.call({
        destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus", member: "Hello",
      }, timeoutMs);
      return bus;
    } catch (error) {
      bus.close();
      throw new BusCallError(BUS_ERROR.connectFailed, `cannot connect to ${address}: ${(error as Error).message}`);
    }
  }

  /** Called for every signal that one of our match rules lets through. */
  onSignal(handler: (signal: BusSignal) => void): void {
    this.#onSignal = handler;
  }

  /** Called once when the connection is lost (not on close()). */
  onClose(handler: (error: Error) => void): void {
    this.#onClose = handler;
  }

  /** Resolves with the reply's body; rejects with a BusCallError. */
  call(msg: MethodCall, timeoutMs = BUS_CONNECT_TIMEOUT_MS): Promise<WireValue[]> {
    if (this.#closed) return Promise.reject(new BusCallError(BUS_ERROR.disconnected, "not connected"));
    const serial = this.#serial++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(serial);
        reject(new BusCallError(BUS_ERROR.timeout, `no answer to ${msg.member} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(serial, {
        resolve: (body) => { clearTimeout(timer); resolve(body); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
      try {
        this.#wire.message({
          type: MESSAGE_TYPE.methodCall,
          serial,
          destination: msg.destination,
          path: msg.path,
          interface: msg.interface,
          member: msg.member,
          ...(msg.signature ? { signature: msg.signature, body: msg.body ?? [] } : {}),
        });
      } catch (error) {
        this.#pending.get(serial)?.reject(new BusCallError(BUS_ERROR.disconnected, `cannot send ${msg.member}: ${(error as Error).message}`));
        this.#pending.delete(serial);
      }
    });
  }

  /** A method call on the bus daemon itself. */
  callBus(member: string, signature = "", body: WireValue[] = []): Promise<WireValue[]> {
    return this.call({
      destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
      member, ...(signature ? { signature, body } : {}),
    });
  }

  /** A match rule (D-Bus specification, "Match Rules") from its keys, values quoted. */
  static matchRule(keys: Readonly<Record<string, string>>): string {
    return Object.entries(keys).map(([key, value]) => `${key}='${value.replace(/'/g, "'\\''")}'`).join(",");
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#failPending(new BusCallError(BUS_ERROR.disconnected, "connection closed"));
    try {
      this.#wire.end();
      this.#wire.stream.destroy();
    } catch {
      // already gone
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  #dispatch(msg: WireMessage): void {
    if (msg.type === MESSAGE_TYPE.methodReturn || msg.type === MESSAGE_TYPE.error) {
      const waiter = msg.replySerial === undefined ? undefined : this.#pending.get(msg.replySerial);
      if (!waiter) return;
      this.#pending.delete(msg.replySerial!);
      if (msg.type === MESSAGE_TYPE.methodReturn) {
        waiter.resolve(msg.body ?? []);
      } else {
        const errorName = msg.errorName ?? "";
        waiter.reject(new BusCallError(BUS_ERROR.remote, `${errorName}: ${String(msg.body?.[0] ?? "")}`, errorName));
      }
      return;
    }
    if (msg.type === MESSAGE_TYPE.signal) {
      this.#onSignal({
        sender: msg.sender ?? "",
        path: msg.path ?? "",
        interface: msg.interface ?? "",
        member: msg.member ?? "",
        body: msg.body ?? [],
      });
    }
  }

  #lost(error: Error): void {
    if (this.#closed) return;
    this.close();
    this.#onClose(error);
  }

  #failPending(error: Error): void {
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}
