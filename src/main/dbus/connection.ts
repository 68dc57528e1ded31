// One connection to a D-Bus message bus: as a server that exports objects
// (dbus/service.ts), and as a client that calls another's methods and
// follows its signals through match rules (zeroconf/avahi.ts: a remote
// error keeps its D-Bus name, as Avahi's CollisionError must be told apart).
// @homebridge/dbus-native does the transport, the SASL EXTERNAL handshake
// and the unmarshalling; what we send is marshalled by marshal.ts, and
// routing, introspection and properties are ours (service.ts), because the
// reference's introspection, deprecation annotations and property semantics
// are part of the API we must match.

import { createRequire } from "node:module";
import type { EventEmitter } from "node:events";
import { DbusError, DBUS_ERROR, ERROR_NAME } from "./errors.js";
import type { WireValue } from "./values.js";
import { MessageTooLarge, marshalMessage } from "./marshal.js";

const require = createRequire(import.meta.url);
const dbusNative = require("@homebridge/dbus-native") as {
  createConnection(options: { busAddress: string }): WireConnection;
};

/** The message shape dbus-native reads and writes. */
export interface WireMessage {
  type: number;
  serial?: number;
  flags?: number;
  path?: string;
  interface?: string;
  member?: string;
  errorName?: string;
  replySerial?: number;
  destination?: string;
  sender?: string;
  signature?: string;
  body?: WireValue[];
}

interface WireConnection extends EventEmitter {
  end(): void;
  stream: { write(bytes: Buffer): boolean; destroy(): void; readonly writableLength: number; once(event: "drain", listener: () => void): unknown };
}

export const MESSAGE_TYPE = { methodCall: 1, methodReturn: 2, error: 3, signal: 4 } as const;
const NO_REPLY_EXPECTED = 1;

/**
 * The longest message the system bus takes: dbus-daemon's built-in
 * max_message_size, which Debian's /usr/share/dbus-1/system.conf leaves as
 * it is. The bus cannot be asked for it, and drops a connection that sends
 * a longer one; such a message is not sent (DbusError "tooLarge").
 */
export const BUS_MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

/** The default system bus, as libdbus finds it (dbus-daemon(1)). */
export const DEFAULT_SYSTEM_BUS = "unix:path=/var/run/dbus/system_bus_socket";

/** How long connecting and claiming the name may take before we serve without D-Bus. */
export const BUS_CONNECT_TIMEOUT_MS = 5_000;

/** RequestName replies (D-Bus specification, org.freedesktop.DBus.RequestName). */
export const REQUEST_NAME_PRIMARY_OWNER = 1;
const NAME_FLAG_DO_NOT_QUEUE = 4;

export type MethodCallHandler = (call: WireMessage) => void;

/** A received signal that one of our match rules let through. */
export interface BusSignal {
  readonly sender: string;
  readonly path: string;
  readonly interface: string;
  readonly member: string;
  readonly body: readonly WireValue[];
}

/** Method calls kept before a handler is set; more are refused. */
const EARLY_CALLS_MAX = 1_000;

export class BusConnection {
  readonly #wire: WireConnection;
  #serial = 1;
  readonly #pending = new Map<number, { resolve: (m: WireMessage) => void; reject: (e: Error) => void }>();
  /** Null until a handler is set: calls are kept in #unhandled meanwhile. */
  #onCall: MethodCallHandler | null = null;
  /**
   * Method calls that came before onMethodCall (between our RequestName
   * and the service's set-up, when a caller polling for the name sends at
   * once), handed to the handler when it is set; up to EARLY_CALLS_MAX.
   */
  #unhandled: WireMessage[] = [];
  #onSignal: (signal: BusSignal) => void = () => undefined;
  #onClose: (error: Error) => void = () => undefined;
  #closed = false;
  /** What we sent before the authentication was done ("connect"), to write after it. */
  #early: Buffer[] | null = [];
  /** Our unique name on the bus (":1.42"), from Hello. */
  uniqueName = "";

  private constructor(wire: WireConnection) {
    this.#wire = wire;
    wire.on("message", (msg: WireMessage) => this.#dispatch(msg));
    wire.once("connect", () => {
      const early = this.#early ?? [];
      this.#early = null;
      if (!this.#closed) for (const bytes of early) wire.stream.write(bytes);
    });
    wire.on("error", (error: Error) => this.#close(new DbusError(DBUS_ERROR.disconnected, error.message)));
    wire.on("end", () => this.#close(new DbusError(DBUS_ERROR.disconnected, "the bus closed the connection")));
  }

  /** Connects to `address`, authenticates and says Hello. */
  static async connect(address: string, timeoutMs = BUS_CONNECT_TIMEOUT_MS): Promise<BusConnection> {
    let wire: WireConnection;
    try {
      wire = dbusNative.createConnection({ busAddress: address });
    } catch (error) {
      throw new DbusError(DBUS_ERROR.connectFailed, `cannot connect to ${address}: ${(error as Error).message}`);
    }
    const bus = new BusConnection(wire);
    const timer = setTimeout(() => bus.#close(new DbusError(DBUS_ERROR.connectFailed, `no answer from ${address} within ${timeoutMs} ms`)), timeoutMs);
    try {
      const [name] = (await bus.callBus("Hello", "", [])) as [string];
      bus.uniqueName = name;
      return bus;
    } catch (error) {
      bus.close();
      throw new DbusError(DBUS_ERROR.connectFailed, `cannot connect to ${address}: ${(error as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Called for every method call addressed to us. */
  onMethodCall(handler: MethodCallHandler): void {
    this.#onCall = handler;
    const early = this.#unhandled;
    this.#unhandled = [];
    for (const call of early) handler(call);
  }

  /** Called for every signal that a match rule (AddMatch, matchRule) lets through. */
  onSignal(handler: (signal: BusSignal) => void): void {
    this.#onSignal = handler;
  }

  /** A match rule (D-Bus specification, "Match Rules") from its keys, values quoted. */
  static matchRule(keys: Readonly<Record<string, string>>): string {
    return Object.entries(keys).map(([key, value]) => `${key}='${value.replace(/'/g, "'\\''")}'`).join(",");
  }

  /** Called once when the connection is lost (not on close()). */
  onClose(handler: (error: Error) => void): void {
    this.#onClose = handler;
  }

  /**
   * Asks for a well-known name without queueing; resolves with the
   * RequestName reply code. A bus that does not answer within `timeoutMs`
   * is given up as one that cannot be reached (the connection closes).
   */
  async requestName(name: string, timeoutMs = BUS_CONNECT_TIMEOUT_MS): Promise<number> {
    const timer = setTimeout(() => this.#close(new DbusError(DBUS_ERROR.connectFailed, `no answer to RequestName within ${timeoutMs} ms`)), timeoutMs);
    try {
      const [code] = (await this.callBus("RequestName", "su", [name, NAME_FLAG_DO_NOT_QUEUE])) as [number];
      return code;
    } finally {
      clearTimeout(timer);
    }
  }

  async releaseName(name: string): Promise<void> {
    await this.callBus("ReleaseName", "s", [name]);
  }

  /** A method call on the bus daemon itself. */
  callBus(member: string, signature = "", body: WireValue[] = [], timeoutMs?: number): Promise<WireValue[]> {
    return this.call({
      destination: "org.freedesktop.DBus",
      path: "/org/freedesktop/DBus",
      interface: "org.freedesktop.DBus",
      member,
      signature: signature || undefined,
      body: signature ? body : undefined,
    }, timeoutMs);
  }

  /**
   * Resolves with the reply's body; rejects with a DbusError (`remote` with
   * the reply's errorName). Given `timeoutMs`, a call with no answer by then
   * is given up (`timeout`); the connection stays.
   */
  call(msg: Omit<WireMessage, "type" | "serial">, timeoutMs?: number): Promise<WireValue[]> {
    if (this.#closed) return Promise.reject(new DbusError(DBUS_ERROR.disconnected, "not connected"));
    const serial = this.#serial++;
    return new Promise((resolve, reject) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
        this.#pending.delete(serial);
        reject(new DbusError(DBUS_ERROR.timeout, `no answer to ${msg.member ?? "a call"} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(serial, {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply.body ?? []);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      try {
        this.#send({ ...msg, type: MESSAGE_TYPE.methodCall, serial });
      } catch (error) {
        this.#pending.delete(serial);
        clearTimeout(timer);
        reject(error as Error);
      }
    });
  }

  reply(call: WireMessage, signature: string, body: WireValue[]): void {
    this.#answer(call, { type: MESSAGE_TYPE.methodReturn, ...(signature ? { signature, body } : {}) });
  }

  replyError(call: WireMessage, errorName: string, text: string): void {
    this.#answer(call, { type: MESSAGE_TYPE.error, errorName, signature: "s", body: [text] });
  }

  /** A method return or error to `call`, unless its caller asked for none. */
  #answer(call: WireMessage, fields: Pick<WireMessage, "type" | "errorName" | "signature" | "body">): void {
    if (((call.flags ?? 0) & NO_REPLY_EXPECTED) !== 0) return;
    this.#send({ ...fields, serial: this.#serial++, replySerial: call.serial, destination: call.sender });
  }

  signal(path: string, iface: string, member: string, signature: string, body: WireValue[]): void {
    this.#send({
      type: MESSAGE_TYPE.signal,
      serial: this.#serial++,
      path,
      interface: iface,
      member,
      ...(signature ? { signature, body } : {}),
    });
  }

  /** Bytes sent and not yet taken by the bus: what waits in our socket's queue. */
  get queuedBytes(): number {
    return this.#early ? this.#early.reduce((n, b) => n + b.length, 0) : this.#wire.stream.writableLength;
  }

  /**
   * Calls `then` once the bus has taken everything queued (at once, on a
   * later turn, when nothing is); never when the connection closes first.
   */
  whenDrained(then: () => void): void {
    if (this.#closed) return;
    if (this.#early === null && this.#wire.stream.writableLength > 0) this.#wire.stream.once("drain", () => void (this.#closed || then()));
    else setImmediate(() => void (this.#closed || then()));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#failPending(new DbusError(DBUS_ERROR.disconnected, "connection closed"));
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

  #send(msg: WireMessage): void {
    if (this.#closed) return;
    let bytes: Buffer;
    try {
      bytes = marshalMessage(msg, BUS_MAX_MESSAGE_BYTES);
    } catch (error) {
      if (error instanceof MessageTooLarge) {
        throw new DbusError(DBUS_ERROR.tooLarge, `cannot send ${msg.member ?? "reply"}: more than the bus's ${BUS_MAX_MESSAGE_BYTES} bytes a message`);
      }
      // A value the marshaller refuses is our bug; never let it take the server down.
      throw new DbusError(DBUS_ERROR.marshal, `cannot send ${msg.member ?? "reply"}: ${(error as Error).message}`);
    }
    if (this.#early) this.#early.push(bytes);
    else this.#wire.stream.write(bytes);
  }

  #dispatch(msg: WireMessage): void {
    if (msg.type === MESSAGE_TYPE.methodReturn || msg.type === MESSAGE_TYPE.error) {
      const waiter = msg.replySerial === undefined ? undefined : this.#pending.get(msg.replySerial);
      if (!waiter) return;
      this.#pending.delete(msg.replySerial!);
      if (msg.type === MESSAGE_TYPE.methodReturn) waiter.resolve(msg);
      else waiter.reject(new DbusError(DBUS_ERROR.remote, `${msg.errorName ?? "error"}: ${String(msg.body?.[0] ?? "")}`, msg.errorName ?? ""));
      return;
    }
    if (msg.type === MESSAGE_TYPE.methodCall) {
      if (this.#onCall !== null) this.#onCall(msg);
      else if (this.#unhandled.length < EARLY_CALLS_MAX) this.#unhandled.push(msg);
      else this.replyError(msg, ERROR_NAME.limitsExceeded, "the server is starting: too many calls before it answers");
    }
    else if (msg.type === MESSAGE_TYPE.signal) {
      this.#onSignal({ sender: msg.sender ?? "", path: msg.path ?? "", interface: msg.interface ?? "", member: msg.member ?? "", body: msg.body ?? [] });
    }
  }

  /** The connection was lost: pending calls fail with the reason. */
  #close(error: Error): void {
    if (this.#closed) return;
    this.#failPending(error);
    this.close();
    this.#onClose(error);
  }

  #failPending(error: Error): void {
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}
