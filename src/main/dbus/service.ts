// The Mandos D-Bus service (DBUS-API): owns se.recompile.Mandos (and the
// old se.bsnet.fukt.Mandos) on the system bus, exports "/" and one object
// per client, answers method calls through the registry, and turns the
// registry's events into the reference's signals.
//
// Invariants:
// - The registry is the one owner of client state: every Get reads a fresh
//   ClientView, every Set or method call goes through a Registry action, and
//   signals are sent only in reaction to registry events.
// - Every signal of the client interface goes out twice, under the new and
//   the deprecated interface name, as the reference's
//   alternate_dbus_interfaces() does; PropertiesChanged once, for the new.
// - Nothing here ever sends a secret: Secret is write-only and changes to it
//   are announced as invalidated, without a value.

import { readFileSync } from "node:fs";
import type { Logger } from "../daemon/log.js";
import type { ClientView, Refusal, Registry, RegistryEvent } from "../clients/contract.js";
import { BUS_MAX_MESSAGE_BYTES, BusConnection, DEFAULT_SYSTEM_BUS, REQUEST_NAME_PRIMARY_OWNER, type WireMessage } from "./connection.js";
import { clientProperty, interfacesAndPropertiesValue, isClientInterface, MarshalledProperties, marshalledProperties } from "./client-properties.js";
import { DbusError, DBUS_ERROR, ERROR_NAME, MethodError } from "./errors.js";
import {
  BUS_NAME,
  CLIENT,
  CLIENT_INTERFACE,
  CLIENT_OBJECT_INTERFACES,
  INTROSPECTABLE,
  OBJECT_MANAGER,
  OLD_BUS_NAME,
  OLD_CLIENT,
  OLD_SERVER,
  PEER,
  PROPERTIES,
  SERVER,
  SERVER_OBJECT_INTERFACES,
  signatureOf,
  type InterfaceSpec,
} from "./interfaces.js";
import { bareNodeXml, introspectionXml } from "./introspect.js";
import { readVariant, variant, type WireValue } from "./values.js";
import { parseSignature } from "./marshal.js";
import { clientObjectPath } from "../clients/object-path.js";
import { within } from "../within.js";

/** The reason string of the Rejected signal (DBUS-API "Signals"), as this server has always sent it. */
const REJECTED_REASON: Record<Refusal, string> = {
  disabled: "Disabled",
  denied: "Denied",
  approval_timeout: "Approval timed out",
};

export interface DbusServiceOptions {
  readonly logger: Logger;
  /** Defaults to $DBUS_SYSTEM_BUS_ADDRESS, then the standard system bus socket. */
  readonly busAddress?: string;
  readonly connectTimeoutMs?: number;
}

/** How much of the start-up announcement may wait in the socket's queue before the next is made. */
export const ANNOUNCE_QUEUE_BYTES = 1024 * 1024;

/** How soon, and at most how far apart, the service tries to get back on a lost bus. */
export const RECONNECT_FIRST_MS = 1_000;
export const RECONNECT_MAX_MS = 30_000;

export interface DbusService {
  /** The unique name of our connection (":1.42"). */
  readonly uniqueName: string;
  /** Announces every client's removal, gives up the names and disconnects. */
  stop(): Promise<void>;
}

/** A method's answer; `smaller`, where there is one, is a shorter body to send when the bus would not take `body`. */
interface Answer {
  readonly signature: string;
  readonly body: WireValue[];
  readonly smaller?: { readonly body: () => WireValue[]; readonly leftOut: string };
}

type Handler = (call: WireMessage, args: WireValue[]) => Answer | void;

/**
 * Starts the service. When another process owns the name (or the policy
 * refuses it), logs an error and resolves null: the server serves on
 * without D-Bus (as the reference, which logs "ERROR: Disabling D-Bus" for
 * any failure to claim its names). A bus that cannot be reached or does not
 * answer, at start-up (a server started before the bus, a bus daemon
 * stopped) or later (the system bus restarted), is tried again, every
 * RECONNECT_FIRST_MS doubling up to RECONNECT_MAX_MS, until the service is
 * on it: the reference fails to start without a bus, and exits when it
 * loses it (libdbus's exit on disconnect) to wait for systemd to start it
 * again; we go on serving secrets meanwhile, and say so as a warning when
 * the bus was never reached (at boot, the bus may just not be up yet).
 */
export async function startDbusService(registry: Registry, options: DbusServiceOptions): Promise<DbusService | null> {
  let unreachable = false;
  const kept = new KeptDbus(registry, options);
  const first = await connectService(registry, options, (why, busUnreachable, claiming) => {
    unreachable = busUnreachable;
    const message = `Disabling D-Bus: ${why}${busUnreachable ? `; trying again in ${RECONNECT_FIRST_MS / 1000} s, then less often` : ""}`;
    // The reference's ERROR covers the names; a bus not reached it never survives.
    if (claiming) options.logger.error(message);
    else options.logger.warning(message);
  }, (error) => kept.lost(error));
  if (first === null && !unreachable) return null;
  kept.begin(first);
  return kept;
}

/**
 * One connection's service, or null after saying why not through `refuse`:
 * whether to try again, and whether it failed claiming the names (the bus
 * was reached) rather than reaching the bus. `lost` is told when the bus
 * goes away later.
 */
async function connectService(
  registry: Registry,
  options: DbusServiceOptions,
  refuse: (why: string, unreachable: boolean, claiming: boolean) => void,
  lost?: (error?: Error) => void,
): Promise<MandosDbus | null> {
  const { logger } = options;
  const address = options.busAddress ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? DEFAULT_SYSTEM_BUS;
  let bus: BusConnection;
  try {
    bus = await BusConnection.connect(address, options.connectTimeoutMs);
  } catch (error) {
    refuse((error as Error).message, true, false);
    return null;
  }
  try {
    for (const name of [BUS_NAME, OLD_BUS_NAME]) {
      const code = await bus.requestName(name, options.connectTimeoutMs);
      if (code !== REQUEST_NAME_PRIMARY_OWNER) {
        throw new DbusError(DBUS_ERROR.nameTaken, `the bus name ${name} is taken (is another Mandos server running?)`);
      }
    }
  } catch (error) {
    bus.close();
    // A bus that stopped answering is tried again; a refusal is final.
    refuse((error as Error).message, error instanceof DbusError && error.code === DBUS_ERROR.connectFailed, true);
    return null;
  }
  const service = new MandosDbus(bus, registry, logger, lost);
  // Every client announced before the service counts as up (and checkers start).
  await service.ready;
  logger.debug(`D-Bus: serving ${BUS_NAME} as ${bus.uniqueName} on ${address}`);
  return service;
}

/** The service across losses of the bus: the current connection's, and the tries to get back on it. */
class KeptDbus implements DbusService {
  readonly #registry: Registry;
  readonly #options: DbusServiceOptions;
  #current: MandosDbus | null;
  #retry: NodeJS.Timeout | null = null;
  /** Until the next try: RECONNECT_FIRST_MS after a loss, twice as long each time, at most RECONNECT_MAX_MS. */
  #delay: number;
  #stopped = false;

  constructor(registry: Registry, options: DbusServiceOptions) {
    this.#registry = registry;
    this.#options = options;
    this.#current = null;
    this.#delay = RECONNECT_FIRST_MS;
  }

  /** With the first connection's service, or without one (the bus could not be reached): then tries again. */
  begin(first: MandosDbus | null): void {
    this.#current = first;
    if (first === null) this.#schedule();
  }

  get uniqueName(): string {
    return this.#current?.uniqueName ?? "";
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = null;
    await this.#current?.stop();
    this.#current = null;
  }

  /** The bus went away (told by the current connection's service). */
  lost(error?: Error): void {
    this.#current = null;
    if (this.#stopped) return;
    this.#options.logger.error(`Lost the D-Bus system bus (${error?.message ?? "closed"}); D-Bus interface off until it is back (trying again in ${this.#delay / 1000} s, then less often)`);
    this.#schedule();
  }

  #schedule(): void {
    this.#retry = setTimeout(() => void this.#tryAgain(), this.#delay);
    this.#retry.unref();
    this.#delay = Math.min(RECONNECT_MAX_MS, this.#delay * 2);
  }

  async #tryAgain(): Promise<void> {
    this.#retry = null;
    let why = "";
    const service = await connectService(this.#registry, this.#options, (w) => void (why = w), (error) => this.lost(error));
    if (this.#stopped) {
      await service?.stop();
      return;
    }
    if (service === null) {
      this.#options.logger.debug(`D-Bus: still off: ${why}`);
      this.#schedule();
      return;
    }
    this.#current = service;
    this.#delay = RECONNECT_FIRST_MS;
    this.#options.logger.info(`Back on the D-Bus system bus as ${service.uniqueName}: D-Bus interface on`);
  }
}

class MandosDbus implements DbusService {
  readonly #bus: BusConnection;
  readonly #registry: Registry;
  readonly #logger: Logger;
  /** What #warnOnce has said this run. */
  readonly #warned = new Set<string>();
  /** Object path → client name, and back. */
  readonly #byPath = new Map<string, string>();
  readonly #pathOf = new Map<string, string>();
  readonly #unsubscribe: () => void;
  /**
   * The start-up announcement (DBUS.md, "Announcing the clients"): the
   * names registered and not yet announced, from #nextToAnnounce on; and
   * the registry events and method calls that came meanwhile, replayed in
   * order after (null once it is over).
   */
  #toAnnounce: string[] = [];
  #nextToAnnounce = 0;
  #held: Array<{ readonly event: RegistryEvent } | { readonly call: WireMessage }> | null = [];
  #stopped = false;
  /** Resolves when every client of the start is announced (or the bus is gone). */
  readonly ready: Promise<void>;
  #isReady: () => void = () => undefined;
  readonly #serverMethods: Map<string, Map<string, Handler>>;
  readonly #clientMethods: Map<string, Map<string, Handler>>;
  /** Every client's properties as the last listing marshalled them. */
  readonly #listed = new MarshalledProperties();

  /** Told once if the bus goes away (not on stop()). */
  readonly #lost: (error?: Error) => void;

  constructor(bus: BusConnection, registry: Registry, logger: Logger, lost?: (error?: Error) => void) {
    this.#bus = bus;
    this.#registry = registry;
    this.#logger = logger;
    this.#lost = lost ?? (() => undefined);
    this.#serverMethods = this.#serverHandlers();
    this.#clientMethods = this.#clientHandlers();
    this.ready = new Promise((resolve) => (this.#isReady = resolve));
    bus.onMethodCall((call) => (this.#held ? this.#held.push({ call }) : this.#onCall(call)));
    bus.onClose((error) => {
      this.#unsubscribe();
      this.#endAnnouncing(false);
      this.#lost(error);
    });
    this.#unsubscribe = registry.subscribe((event) => (this.#held ? this.#held.push({ event }) : this.#onEvent(event)));
    // As the reference at start-up: every client is announced as added.
    // Each gets its path now, in order (the "_2" suffixes depend on it);
    // the signals go as the bus takes them.
    for (const c of registry.list()) {
      this.#register(c);
      this.#toAnnounce.push(c.name);
    }
    this.#announceSome();
  }

  /**
   * Announces the next clients while the socket's queue is short, then
   * waits for the bus to take it: 10,000 clients' announcements (~21 MB)
   * written at once waited in the queue, and the allocator kept their
   * pages (BENCHMARK.md, "With D-Bus on"). Each announcement is made at its
   * turn, from the client as it is then; one removed before its turn is
   * never announced.
   */
  #announceSome(): void {
    while (this.#nextToAnnounce < this.#toAnnounce.length) {
      if (this.#bus.closed || this.#stopped) {
        this.#endAnnouncing(false);
        return;
      }
      if (this.#bus.queuedBytes > ANNOUNCE_QUEUE_BYTES) {
        this.#bus.whenDrained(() => this.#announceSome());
        return;
      }
      const name = this.#toAnnounce[this.#nextToAnnounce++]!;
      const path = this.#pathOf.get(name);
      const c = this.#registry.get(name);
      if (path === undefined) continue;
      if (c) {
        this.#announce(c, path);
      } else {
        this.#pathOf.delete(name);
        this.#byPath.delete(path);
      }
    }
    this.#endAnnouncing(true);
  }

  /** Ends the announcement: what was held is handled in order (`replay`) or dropped with the clients not announced. */
  #endAnnouncing(replay: boolean): void {
    const held = this.#held;
    if (held === null) return;
    for (const name of this.#toAnnounce.slice(this.#nextToAnnounce)) {
      const path = this.#pathOf.get(name);
      this.#pathOf.delete(name);
      if (path !== undefined) this.#byPath.delete(path);
    }
    this.#toAnnounce = [];
    this.#nextToAnnounce = 0;
    // What a replayed item causes is held behind the rest, and handled in its turn.
    if (replay) {
      for (let i = 0; i < held.length; i++) {
        const item = held[i]!;
        if ("call" in item) this.#onCall(item.call);
        else this.#onEvent(item.event);
      }
    }
    this.#held = null;
    this.#isReady();
  }

  get uniqueName(): string {
    return this.#bus.uniqueName;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe();
    this.#endAnnouncing(false);
    this.#listed.clear();
    if (this.#bus.closed) return;
    // As the reference's cleanup(): each client's removal is signalled, the
    // last added first (it empties its dictionary of clients with popitem()).
    for (const name of [...this.#pathOf.keys()].reverse()) {
      const c = this.#registry.get(name);
      if (c) this.#removeClient(c);
    }
    // A bus gone away leaves nothing to give up.
    await within(Promise.all([this.#bus.releaseName(BUS_NAME), this.#bus.releaseName(OLD_BUS_NAME)]).then(() => undefined), 1_000, undefined);
    this.#bus.close();
  }

  // ------------------------------------------------------------ events

  #onEvent(event: RegistryEvent): void {
    if (this.#bus.closed) return;
    try {
      this.#signalFor(event);
    } catch (error) {
      this.#logger.error(`D-Bus: could not signal ${event.type}: ${(error as Error).message}`);
    }
  }

  #signalFor(event: RegistryEvent): void {
    switch (event.type) {
      case "client-added":
        this.#addClient(event.client);
        return;
      case "client-removed":
        this.#removeClient(event.client);
        return;
      case "client-not-found":
        this.#serverSignal("ClientNotFound", "ss", [event.keyId, event.address]);
        return;
      case "property-changed":
        this.#propertyChanged(event.client, event.property);
        return;
      case "checker-started":
        this.#clientSignal(event.client, "CheckerStarted", "s", [event.command]);
        return;
      case "checker-completed":
        this.#clientSignal(event.client, "CheckerCompleted", "nxs", [event.exitCode, event.waitStatus, event.command]);
        return;
      case "got-secret":
        this.#clientSignal(event.client, "GotSecret", "", []);
        return;
      case "rejected":
        this.#clientSignal(event.client, "Rejected", "s", [REJECTED_REASON[event.reason]]);
        return;
      case "need-approval":
        this.#clientSignal(event.client, "NeedApproval", "tb", [event.timeout, event.approvedByDefault]);
        return;
    }
  }

  #addClient(c: ClientView): void {
    this.#announce(c, this.#register(c));
  }

  /** Gives `c` its object path; returns it. */
  #register(c: ClientView): string {
    let path = clientObjectPath(c.name);
    // Names that differ only in characters an object path cannot hold.
    for (let n = 2; this.#byPath.has(path) && this.#byPath.get(path) !== c.name; n++) path = `${clientObjectPath(c.name)}_${n}`;
    this.#byPath.set(path, c.name);
    this.#pathOf.set(c.name, path);
    return path;
  }

  #announce(c: ClientView, path: string): void {
    // A value D-Bus cannot carry (a NUL in a string, which the configuration
    // now refuses) once threw from here and stopped the server: said instead.
    let properties: ReturnType<typeof marshalledProperties>;
    try {
      properties = marshalledProperties(c, path);
    } catch (error) {
      this.#logger.error(`D-Bus: could not announce client ${c.name}: ${(error as Error).message}`);
      return;
    }
    this.#bus.signal("/", OBJECT_MANAGER, "InterfacesAdded", "oa{sa{sv}}", [path, interfacesAndPropertiesValue(properties)]);
    this.#serverSignal("ClientAdded", "o", [path]);
  }

  #removeClient(c: ClientView): void {
    const path = this.#pathOf.get(c.name);
    if (path === undefined) return;
    this.#pathOf.delete(c.name);
    this.#byPath.delete(path);
    this.#bus.signal("/", OBJECT_MANAGER, "InterfacesRemoved", "oas", [path, CLIENT_OBJECT_INTERFACES.map((i) => i.name)]);
    this.#serverSignal("ClientRemoved", "os", [path, c.name]);
  }

  #propertyChanged(c: ClientView, name: string): void {
    const path = this.#pathOf.get(c.name);
    const property = clientProperty(name);
    // A client being removed has left the registry: as the reference's
    // RemoveClient (which takes the object off the bus before disabling
    // it), its disabling is not announced, only its removal.
    if (path === undefined || !property || !this.#registry.has(c.name)) return;
    if (!property.get) {
      // EmitsChangedSignal "invalidates" (Secret): the name, never the value.
      this.#bus.signal(path, PROPERTIES, "PropertiesChanged", "sa{sv}as", [CLIENT_INTERFACE, [], [name]]);
      return;
    }
    const value = variant(property.type, property.get(c, path));
    for (const iface of [CLIENT, OLD_CLIENT]) this.#bus.signal(path, iface.name, "PropertyChanged", "sv", [name, value]);
    this.#bus.signal(path, PROPERTIES, "PropertiesChanged", "sa{sv}as", [CLIENT_INTERFACE, [[name, value]], []]);
  }

  #serverSignal(member: string, signature: string, body: WireValue[]): void {
    for (const iface of [SERVER, OLD_SERVER]) this.#bus.signal("/", iface.name, member, signature, body);
  }

  #clientSignal(c: ClientView, member: string, signature: string, body: WireValue[]): void {
    const path = this.#pathOf.get(c.name);
    if (path === undefined) return;
    for (const iface of [CLIENT, OLD_CLIENT]) this.#bus.signal(path, iface.name, member, signature, body);
  }

  // ------------------------------------------------------- method calls

  #onCall(call: WireMessage): void {
    try {
      this.#answer(call, this.#route(call) ?? { signature: "", body: [] });
    } catch (error) {
      if (error instanceof MethodError) {
        this.#bus.replyError(call, error.errorName, error.message);
      } else {
        const code = (error as { code?: string }).code;
        if (code === "MANDOS_NO_SUCH_CLIENT") {
          this.#bus.replyError(call, ERROR_NAME.unknownObject, `no client at ${call.path ?? "?"}`);
        } else if (code === "MANDOS_CHECKER_INVALID") {
          this.#bus.replyError(call, ERROR_NAME.failed, (error as Error).message);
        } else {
          this.#logger.error(`D-Bus: ${call.interface ?? ""}.${call.member ?? ""} on ${call.path ?? ""} failed: ${(error as Error).message}`);
          this.#bus.replyError(call, ERROR_NAME.failed, (error as Error).message);
        }
      }
    }
  }

  /**
   * Replies with `answer`. One the bus would not take (BUS_MAX_MESSAGE_BYTES:
   * it would drop our connection) goes as its smaller form, or is refused
   * with LimitsExceeded; each is logged once a run, not at every call.
   */
  #answer(call: WireMessage, answer: Answer): void {
    const tooLarge = (error: unknown): boolean => error instanceof DbusError && error.code === DBUS_ERROR.tooLarge;
    const what = `the reply to ${call.member ?? "a call"} for ${this.#byPath.size} clients`;
    try {
      this.#bus.reply(call, answer.signature, answer.body);
      return;
    } catch (error) {
      if (!tooLarge(error)) throw error;
    }
    if (answer.smaller) {
      try {
        this.#bus.reply(call, answer.signature, answer.smaller.body());
        this.#warnOnce(`smaller ${call.member ?? ""}`, `D-Bus: ${what} is more than the system bus takes (${BUS_MAX_MESSAGE_BYTES} bytes a message); ${answer.smaller.leftOut}`);
        return;
      } catch (error) {
        if (!tooLarge(error)) throw error;
      }
    }
    const text = `${what} is more than the system bus takes (${BUS_MAX_MESSAGE_BYTES} bytes a message)${answer.smaller ? ", even without what can be left out" : ""}`;
    this.#warnOnce(`refused ${call.member ?? ""}`, `D-Bus: ${text}; not sent`);
    throw new MethodError(ERROR_NAME.limitsExceeded, `${text}; each client's object still answers on its own (Properties.GetAll on /clients/NAME)`);
  }

  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#logger.warning(message);
  }

  #route(call: WireMessage): Answer | void {
    const path = call.path ?? "";
    const member = call.member ?? "";
    if (call.interface === PEER) return this.#peer(member);
    let interfaces: readonly InterfaceSpec[];
    let handlers: Map<string, Map<string, Handler>>;
    if (path === "/") {
      interfaces = SERVER_OBJECT_INTERFACES;
      handlers = this.#serverMethods;
    } else if (this.#byPath.has(path)) {
      interfaces = CLIENT_OBJECT_INTERFACES;
      handlers = this.#clientMethods;
    } else {
      return this.#noObject(call, path, member);
    }
    // A call without an interface goes to the first interface with that member (D-Bus specification).
    const iface = call.interface ?? interfaces.find((i) => i.methods.some((m) => m.name === member))?.name;
    const spec = interfaces.find((i) => i.name === iface);
    // UnknownMethod, not UnknownInterface, as the reference (dbus-python
    // answers every call it cannot route with UnknownMethod).
    if (!spec) throw new MethodError(ERROR_NAME.unknownMethod, `no method ${member} in interface ${iface ?? "(none)"} at ${path}`);
    const method = spec.methods.find((m) => m.name === member);
    const handler = handlers.get(spec.name)?.get(member);
    if (!method || !handler) throw new MethodError(ERROR_NAME.unknownMethod, `no method ${member} in ${spec.name}`);
    const want = signatureOf(method.in);
    if ((call.signature ?? "") !== want && !unwrappedSet(spec.name, member, call.signature)) {
      throw new MethodError(ERROR_NAME.invalidArgs, `${member} takes "${want}", not "${call.signature ?? ""}"`);
    }
    const result = handler(call, call.body ?? []);
    return result ?? { signature: "", body: [] };
  }

  #peer(member: string): { signature: string; body: WireValue[] } {
    if (member === "Ping") return { signature: "", body: [] };
    if (member === "GetMachineId") {
      let id: string;
      try {
        id = readFileSync("/etc/machine-id", "utf8").trim();
      } catch {
        throw new MethodError(ERROR_NAME.failed, "no machine ID");
      }
      return { signature: "s", body: [id] };
    }
    throw new MethodError(ERROR_NAME.unknownMethod, `no method ${member} in ${PEER}`);
  }

  #introspect(path: string, children: string[]): { signature: string; body: WireValue[] } {
    const interfaces = path === "/" ? SERVER_OBJECT_INTERFACES : CLIENT_OBJECT_INTERFACES;
    return { signature: "s", body: [introspectionXml(path, interfaces, children)] };
  }

  /**
   * A call to a path with no object ("/clients", "/nothing"), answered as
   * libdbus answers it for the reference (dbus-python exports only "/" and
   * the clients): Introspect with a bare node that lists the objects
   * below, every other method refused, with UnknownMethod where objects lie
   * below and UnknownObject elsewhere.
   */
  #noObject(call: WireMessage, path: string, member: string): { signature: string; body: WireValue[] } {
    const children = this.#childrenOf(path);
    if (member === "Introspect" && (call.interface ?? INTROSPECTABLE) === INTROSPECTABLE) {
      return { signature: "s", body: [bareNodeXml(children)] };
    }
    if (children.length > 0) throw new MethodError(ERROR_NAME.unknownMethod, `no method ${member} at ${path}`);
    throw new MethodError(ERROR_NAME.unknownObject, `no object at ${path}`);
  }

  /** The names of the nodes right below `path` that lead to an object, in libdbus's (byte) order. */
  #childrenOf(path: string): string[] {
    const prefix = `${path}/`;
    const names = new Set<string>();
    for (const p of this.#byPath.keys()) if (p.startsWith(prefix)) names.add(p.slice(prefix.length).split("/")[0]!);
    return [...names].sort();
  }

  #serverHandlers(): Map<string, Map<string, Handler>> {
    const server = new Map<string, Handler>([
      ["GetAllClients", () => ({ signature: "ao", body: [[...this.#byPath.keys()]] })],
      [
        "GetAllClientsWithProperties",
        () => ({ signature: "a{oa{sv}}", body: [this.#listed.list(this.#liveClients())] }),
      ],
      [
        "RemoveClient",
        (_call, [objectPath]) => {
          const name = this.#byPath.get(String(objectPath));
          if (name === undefined) throw new MethodError(ERROR_NAME.unknownObject, `no client at ${String(objectPath)}`);
          this.#registry.remove(name);
        },
      ],
    ]);
    return new Map([
      [INTROSPECTABLE, new Map<string, Handler>([["Introspect", () => this.#introspect("/", this.#byPath.size > 0 ? ["clients"] : [])]])],
      [
        OBJECT_MANAGER,
        new Map([
          [
            "GetManagedObjects",
            () => {
              const listed = this.#listed.list(this.#liveClients());
              const body = (withMirror: boolean): WireValue[] => [listed.map(([path, props]) => [path, interfacesAndPropertiesValue(props, withMirror)])];
              return {
                signature: "a{oa{sa{sv}}}",
                body: body(true),
                smaller: {
                  body: () => body(false),
                  leftOut: `the deprecated ${OLD_CLIENT.name}'s properties are left out of it (mandos-ctl and mandos-monitor read ${CLIENT.name}'s)`,
                },
              };
            },
          ],
        ]),
      ],
      [SERVER.name, server],
      [OLD_SERVER.name, server],
    ]);
  }

  #clientHandlers(): Map<string, Map<string, Handler>> {
    const client = new Map<string, Handler>([
      ["Approve", (call, [value]) => this.#registry.approve(this.#nameOf(call), value === true)],
      ["CheckedOK", (call) => this.#registry.checkedOk(this.#nameOf(call))],
      ["Enable", (call) => this.#registry.enable(this.#nameOf(call))],
      ["Disable", (call) => this.#registry.disable(this.#nameOf(call))],
      ["StartChecker", (call) => this.#registry.startChecker(this.#nameOf(call))],
      ["StopChecker", (call) => this.#registry.stopChecker(this.#nameOf(call))],
    ]);
    const properties = new Map<string, Handler>([
      ["Get", (call, [iface, name]) => this.#get(call, String(iface), String(name))],
      ["Set", (call, [iface, name, value]) => this.#set(call, String(iface), String(name), value!)],
      ["GetAll", (call, [iface]) => this.#getAll(call, String(iface))],
    ]);
    return new Map([
      [INTROSPECTABLE, new Map<string, Handler>([["Introspect", (call) => this.#introspect(call.path ?? "", [])]])],
      [PROPERTIES, properties],
      [CLIENT.name, client],
      [OLD_CLIENT.name, client],
    ]);
  }

  #nameOf(call: WireMessage): string {
    const name = this.#byPath.get(call.path ?? "");
    if (name === undefined) throw new MethodError(ERROR_NAME.unknownObject, `no client at ${call.path ?? ""}`);
    return name;
  }

  #viewOf(call: WireMessage): ClientView {
    const view = this.#registry.get(this.#nameOf(call));
    if (!view) throw new MethodError(ERROR_NAME.unknownObject, `no client at ${call.path ?? ""}`);
    return view;
  }

  #liveClients(): Array<[string, ClientView]> {
    const out: Array<[string, ClientView]> = [];
    for (const [path, name] of this.#byPath) {
      const c = this.#registry.get(name);
      if (c) out.push([path, c]);
    }
    return out;
  }

  #get(call: WireMessage, iface: string, name: string): { signature: string; body: WireValue[] } {
    const property = isClientInterface(iface) ? clientProperty(name) : undefined;
    if (!property) throw new MethodError(ERROR_NAME.unknownProperty, `no property ${iface}.${name}`);
    if (!property.get) throw new MethodError(ERROR_NAME.accessDenied, `property ${name} is write-only`);
    return { signature: "v", body: [variant(property.type, property.get(this.#viewOf(call), call.path ?? ""))] };
  }

  #set(call: WireMessage, iface: string, name: string, raw: WireValue): void {
    const property = isClientInterface(iface) ? clientProperty(name) : undefined;
    if (!property) throw new MethodError(ERROR_NAME.unknownProperty, `no property ${iface}.${name}`);
    if (!property.set) throw new MethodError(ERROR_NAME.propertyReadOnly, `property ${name} is read-only`);
    const value = call.signature === "ssv" ? readVariant(raw) : { signature: (call.signature ?? "").slice(2), value: raw };
    if (!value) throw new MethodError(ERROR_NAME.invalidArgs, "not a variant");
    const view = this.#viewOf(call);
    const warning = property.set({ registry: this.#registry, name: view.name, view, objectPath: call.path ?? "" }, value);
    // Set all the same, as the reference sets it; the admin is told.
    if (warning !== null) this.#logger.warning(`Client ${view.name}'s ${warning}`);
  }

  #getAll(call: WireMessage, iface: string): { signature: string; body: WireValue[] } {
    // The reference: an empty interface name means every interface; others have none.
    if (iface !== "" && !isClientInterface(iface)) return { signature: "a{sv}", body: [[]] };
    return { signature: "a{sv}", body: [marshalledProperties(this.#viewOf(call), call.path ?? "")] };
  }
}

/**
 * A Properties.Set whose value is not wrapped in a variant ("ssb", "sst"):
 * what `dbus-send ... Set string:IFACE string:NAME boolean:false` and a
 * dbus-python proxy made without introspection send, and the reference's
 * dbus-python takes; the value is then read as a variant of its type.
 */
function unwrappedSet(iface: string, member: string, signature: string | undefined): boolean {
  if (iface !== PROPERTIES || member !== "Set" || signature === undefined || !signature.startsWith("ss")) return false;
  try {
    return parseSignature(signature).length === 3;
  } catch {
    return false;
  }
}
