// Zeroconf through the host's avahi-daemon, as the reference announces
// (mandos, class AvahiService): over the system bus, one entry group with
// one `_mandos._tcp` service, the records Avahi makes for it (SRV target:
// the host's own name), and Avahi's renames on a collision. announce.ts
// chooses this when avahi-daemon owns org.freedesktop.Avahi at start-up.
//
// Theory of operation (Avahi D-Bus API, org.freedesktop.Avahi.Server and
// .EntryGroup; the reference's AvahiService, whose log lines we write):
// - Events are handled one at a time, in arrival order (#queue), as the
//   reference's GLib main loop runs one signal handler at a time while its
//   D-Bus calls block.
// - Server state (Server.StateChanged, and GetState once at start):
//   RUNNING adds the service; INVALID, REGISTERING, COLLISION and FAILURE
//   free the entry group (the first silently, the others with an error).
//   A restarted avahi-daemon goes REGISTERING, then RUNNING: so we announce
//   again. An avahi-daemon that leaves the bus takes our group with it.
// - Adding: EntryGroupNew once (Reset before adding again), AddService,
//   Commit. A name already taken on this host fails AddService with
//   CollisionError: "Local Zeroconf service name collision.", rename.
// - Group state (EntryGroup.StateChanged): ESTABLISHED is logged;
//   COLLISION (a rival on the network) renames; FAILURE is logged.
// - Renaming asks Avahi (GetAlternativeServiceName: "Mandos #2"), at most
//   MAX_RENAMES times, and Resets and adds under the new name.
// - stop() frees the group (Avahi sends the goodbyes) and leaves the bus.
// - A failure is logged and the server serves on (the reference exits on a
//   D-Bus error while adding; docs/DIFFERENCES.md). A lost bus is tried
//   again, as src/main/dbus does.

import { pyRepr } from "../python/repr.js";
import type { WireValue } from "../dbus/values.js";
import { BUS_CONNECT_TIMEOUT_MS, BusConnection, type BusSignal } from "../dbus/connection.js";
import { DBUS_ERROR, DbusError } from "../dbus/errors.js";
import type { Announcement, AnnouncementOptions } from "./announcement.js";

/** avahi-common/dbus.h and defs.h. */
export const AVAHI = {
  name: "org.freedesktop.Avahi",
  serverPath: "/",
  server: "org.freedesktop.Avahi.Server",
  entryGroup: "org.freedesktop.Avahi.EntryGroup",
  collisionError: "org.freedesktop.Avahi.CollisionError",
} as const;

/** AVAHI_IF_UNSPEC: every interface. */
const IF_UNSPEC = -1;
/** AvahiProtocol: the reference asks for IPv6 only, IPv4 only with --no-ipv6. */
const PROTO_INET = 0;
const PROTO_INET6 = 1;

/** AvahiServerState. */
export const SERVER_STATE = { invalid: 0, registering: 1, running: 2, collision: 3, failure: 4 } as const;
/** AvahiEntryGroupState. */
export const GROUP_STATE = { uncommitted: 0, registering: 1, established: 2, collision: 3, failure: 4 } as const;

/** The reference's server_state_changed: states that free the group, and what is logged. */
const BAD_SERVER_STATES: ReadonlyMap<number, string | null> = new Map([
  [SERVER_STATE.invalid, "Zeroconf server invalid"],
  [SERVER_STATE.registering, null],
  [SERVER_STATE.collision, "Zeroconf server name collision"],
  [SERVER_STATE.failure, "Zeroconf server failure"],
]);

/** After a lost bus, the first try again, doubling up to the last: as src/main/dbus/service.ts. */
const RECONNECT_FIRST_MS = 1_000;
const RECONNECT_MAX_MS = 30_000;

/** Any call to the bus or to avahi-daemon may take this long before it is given up. */
const CALL_TIMEOUT_MS = BUS_CONNECT_TIMEOUT_MS;

/** Freeing the group at shutdown may take this long before we leave anyway. */
const FREE_TIMEOUT_MS = 2_000;

const SERVICE_TYPE = "_mandos._tcp";

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isCollision(error: unknown): boolean {
  return error instanceof DbusError && error.errorName === AVAHI.collisionError;
}

/** Too many renames: give up announcing, as the reference's AvahiServiceError does. */
class RenamesExhausted extends Error {}

export interface AvahiAnnouncementOptions extends AnnouncementOptions {
  /** The system bus address (DBUS_SYSTEM_BUS_ADDRESS, or the standard socket). */
  readonly busAddress: string;
  readonly maxRenames: number;
}

export class AvahiAnnouncement implements Announcement {
  readonly #options: AvahiAnnouncementOptions;
  #bus: BusConnection;
  #name: string;
  #renames = 0;
  /** Our entry group's object path, once EntryGroupNew gave it; gone with cleanup() or with avahi. */
  #group: string | undefined;
  /** AddService's interface: IF_UNSPEC, or --interface's index (asked once). */
  #interfaceIndex: number | undefined;
  #stopped = false;
  #gaveUp = false;
  #queue: Promise<void> = Promise.resolve();
  #stopping: Promise<void> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #delay = RECONNECT_FIRST_MS;
  #resolveEstablished: (ok: boolean) => void = () => {};
  readonly established: Promise<boolean>;

  private constructor(bus: BusConnection, options: AvahiAnnouncementOptions) {
    this.#bus = bus;
    this.#options = options;
    this.#name = options.name;
    this.established = new Promise((resolve) => { this.#resolveEstablished = resolve; });
  }

  /**
   * Announces through the avahi-daemon on `busAddress` if one owns its name
   * there; undefined (nothing kept open) if not, or if the bus cannot be
   * reached.
   */
  static async start(options: AvahiAnnouncementOptions): Promise<AvahiAnnouncement | undefined> {
    let bus: BusConnection;
    try {
      bus = await BusConnection.connect(options.busAddress);
    } catch (error) {
      options.logger.debug(`Zeroconf: no system bus (${describe(error)})`);
      return undefined;
    }
    try {
      const [owned] = await bus.callBus("NameHasOwner", "s", [AVAHI.name], CALL_TIMEOUT_MS);
      if (owned !== true) {
        options.logger.debug("Zeroconf: no avahi-daemon on the system bus");
        bus.close();
        return undefined;
      }
    } catch (error) {
      options.logger.debug(`Zeroconf: cannot ask the system bus for avahi-daemon: ${describe(error)}`);
      bus.close();
      return undefined;
    }
    options.logger.debug("Zeroconf: announcing through avahi-daemon");
    const announcement = new AvahiAnnouncement(bus, options);
    announcement.#enqueue(() => announcement.#activate());
    return announcement;
  }

  get name(): string {
    return this.#name;
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      clearTimeout(this.#retry);
      await this.#queue;
      await this.#cleanup(FREE_TIMEOUT_MS);
      this.#bus.close();
      this.#resolveEstablished(false);
    })();
    return this.#stopping;
  }

  /** Runs `step` after every event before it; a failure in it is logged. */
  #enqueue(step: () => Promise<void>): void {
    this.#queue = this.#queue.then(async () => {
      if (this.#stopped || this.#gaveUp) return;
      try {
        await step();
      } catch (error) {
        this.#failed(error);
      }
    });
  }

  #failed(error: unknown): void {
    const logger = this.#options.logger;
    if (error instanceof RenamesExhausted) {
      this.#gaveUp = true;
      this.#resolveEstablished(false);
      void this.#cleanup(FREE_TIMEOUT_MS);
      return;
    }
    if (error instanceof DbusError && error.code === DBUS_ERROR.disconnected) return; // #lost says so
    logger.error(`Zeroconf: D-Bus Exception: ${describe(error)}`);
    this.#resolveEstablished(false);
  }

  /** The reference's activate(): follow avahi's state, and act on the one it is in now. */
  async #activate(): Promise<void> {
    const bus = this.#bus;
    bus.onSignal((signal) => this.#signal(signal));
    bus.onClose((error) => this.#lost(error));
    const rules: Record<string, string>[] = [
      { type: "signal", sender: AVAHI.name, interface: AVAHI.server, member: "StateChanged", path: AVAHI.serverPath },
      { type: "signal", sender: AVAHI.name, interface: AVAHI.entryGroup, member: "StateChanged" },
      { type: "signal", sender: "org.freedesktop.DBus", interface: "org.freedesktop.DBus", member: "NameOwnerChanged", arg0: AVAHI.name },
    ];
    for (const rule of rules) await bus.callBus("AddMatch", "s", [BusConnection.matchRule(rule)], CALL_TIMEOUT_MS);
    let state: WireValue;
    try {
      [state] = await bus.call({ destination: AVAHI.name, path: AVAHI.serverPath, interface: AVAHI.server, member: "GetState" }, CALL_TIMEOUT_MS);
    } catch (error) {
      // After a reconnect avahi may not be back yet: its StateChanged will say when.
      if (error instanceof DbusError && error.code === DBUS_ERROR.remote) {
        this.#options.logger.debug(`Zeroconf: avahi-daemon not on the system bus (${describe(error)}); waiting for it`);
        return;
      }
      throw error;
    }
    await this.#serverStateChanged(Number(state));
  }

  #signal(signal: BusSignal): void {
    const [first, second, third] = signal.body;
    if (signal.interface === "org.freedesktop.DBus" && signal.member === "NameOwnerChanged") {
      if (first !== AVAHI.name) return;
      this.#enqueue(async () => this.#ownerChanged(String(second ?? ""), String(third ?? "")));
    } else if (signal.interface === AVAHI.server && signal.member === "StateChanged" && signal.path === AVAHI.serverPath) {
      this.#enqueue(() => this.#serverStateChanged(Number(first), String(second ?? "")));
    } else if (signal.interface === AVAHI.entryGroup && signal.member === "StateChanged") {
      // Only our group's, and only while it is ours: the order of events decides, so look when its turn comes.
      this.#enqueue(async () => {
        if (signal.path === this.#group) await this.#groupStateChanged(Number(first), String(second ?? ""));
      });
    }
  }

  /** avahi-daemon left the bus (its groups went with it) or came back (its StateChanged follows). */
  #ownerChanged(previous: string, next: string): void {
    if (previous !== "" && this.#group !== undefined) {
      this.#group = undefined;
      this.#options.logger.info("Zeroconf: avahi-daemon left the system bus; announcing again when it is back");
    }
    if (next !== "") this.#options.logger.debug("Zeroconf: avahi-daemon is on the system bus");
  }

  /** The reference's server_state_changed; `error` is absent for GetState's answer. */
  async #serverStateChanged(state: number, error?: string): Promise<void> {
    const logger = this.#options.logger;
    logger.debug(`Avahi server state change: ${state}`);
    if (BAD_SERVER_STATES.has(state)) {
      const message = BAD_SERVER_STATES.get(state);
      if (message) {
        // The reference logs the signal's argument with %r, and it is a dbus.String.
        logger.error(error === undefined ? message : `${message}: dbus.String(${pyRepr(error)})`);
      }
      await this.#cleanup();
    } else if (state === SERVER_STATE.running) {
      await this.#addRenamingOnLocalCollision();
    } else {
      // %r of D-Bus values, as the reference's: dbus.Int32(7): dbus.String('...').
      const what = `dbus.Int32(${state})`;
      logger.debug(error === undefined ? `Unknown state: ${what}` : `Unknown state: ${what}: dbus.String(${pyRepr(error)})`);
    }
  }

  /** The reference's entry_group_state_changed. */
  async #groupStateChanged(state: number, error: string): Promise<void> {
    const logger = this.#options.logger;
    logger.debug(`Avahi entry group state change: ${state}`);
    if (state === GROUP_STATE.established) {
      logger.debug("Zeroconf service established.");
      this.#resolveEstablished(true);
    } else if (state === GROUP_STATE.collision) {
      logger.info("Zeroconf service name collision.");
      await this.#rename();
    } else if (state === GROUP_STATE.failure) {
      logger.critical(`Avahi: Error in group state changed ${error}`);
      this.#resolveEstablished(false);
    }
  }

  /**
   * add(), and on a name taken on this host, the renames that follow (the
   * reference's rename(remove=False)). `renamed`: the name is new since the
   * syslog tag was last set. The tag follows once the service is added
   * under the new name, as the reference's AvahiServiceToSyslog sets it
   * after rename() returns: "Adding Zeroconf service 'Mandos #2' ..." still
   * goes out under the old tag, and a rename that fails leaves it.
   */
  async #addRenamingOnLocalCollision(renamed = false): Promise<void> {
    for (;;) {
      try {
        await this.#add();
        if (renamed) this.#options.onRename?.(this.#name);
        return;
      } catch (error) {
        if (!isCollision(error)) throw error;
        this.#options.logger.info("Local Zeroconf service name collision.");
        await this.#nextName();
        renamed = true;
      }
    }
  }

  /** The reference's rename(): a new name from Avahi, and add again. */
  async #rename(): Promise<void> {
    await this.#nextName();
    await this.#addRenamingOnLocalCollision(true);
  }

  async #nextName(): Promise<void> {
    const logger = this.#options.logger;
    if (this.#renames >= this.#options.maxRenames) {
      logger.critical(`No suitable Zeroconf service name found after ${this.#renames} retries; not announcing.`);
      throw new RenamesExhausted();
    }
    const [name] = await this.#callServer("GetAlternativeServiceName", "s", [this.#name]);
    this.#name = String(name);
    this.#renames++;
    logger.info(`Changing Zeroconf service name to ${pyRepr(this.#name)} ...`);
  }

  /** The reference's add(): a (reset) entry group with our one service, committed. */
  async #add(): Promise<void> {
    const options = this.#options;
    if (this.#group !== undefined) {
      await this.#callGroup(this.#group, "Reset");
    } else {
      const [path] = await this.#callServer("EntryGroupNew");
      this.#group = String(path);
    }
    this.#interfaceIndex ??= await this.#interfaceIndexOf(options.interface);
    options.logger.debug(`Adding Zeroconf service '${this.#name}' of type '${SERVICE_TYPE}' ...`);
    await this.#callGroup(this.#group, "AddService", "iiussssqaay", [
      this.#interfaceIndex,
      options.ipv6 ? PROTO_INET6 : PROTO_INET,
      0, // flags
      this.#name,
      SERVICE_TYPE,
      "", // domain: .local
      "", // host: this host, under avahi's name for it
      options.port,
      [], // no TXT records, as the reference
    ]);
    await this.#callGroup(this.#group, "Commit");
  }

  /** IF_UNSPEC without --interface; else its index, as the reference's if_nametoindex. */
  async #interfaceIndexOf(name: string | undefined): Promise<number> {
    if (!name) return IF_UNSPEC;
    const [index] = await this.#callServer("GetNetworkInterfaceIndexByName", "s", [name]);
    return Number(index);
  }

  /** The reference's cleanup(): free the group, ignoring failures (avahi may be gone). */
  async #cleanup(timeoutMs?: number): Promise<void> {
    const group = this.#group;
    this.#group = undefined;
    if (group === undefined || this.#bus.closed) return;
    try {
      await this.#bus.call({ destination: AVAHI.name, path: group, interface: AVAHI.entryGroup, member: "Free" }, timeoutMs);
    } catch {
      // As the reference: a group avahi no longer has is freed already.
    }
  }

  #callServer(member: string, signature = "", body: WireValue[] = []): Promise<WireValue[]> {
    return this.#bus.call({ destination: AVAHI.name, path: AVAHI.serverPath, interface: AVAHI.server, member, ...(signature ? { signature, body } : {}) }, CALL_TIMEOUT_MS);
  }

  #callGroup(path: string, member: string, signature = "", body: WireValue[] = []): Promise<WireValue[]> {
    return this.#bus.call({ destination: AVAHI.name, path, interface: AVAHI.entryGroup, member, ...(signature ? { signature, body } : {}) }, CALL_TIMEOUT_MS);
  }

  /** The bus connection was lost: avahi has freed our group; connect again, less often each time. */
  #lost(error: Error): void {
    if (this.#stopped) return;
    this.#group = undefined;
    this.#options.logger.warning(`Zeroconf: lost the system bus (${describe(error)}); trying again in ${this.#delay / 1000} s`);
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    const delay = this.#delay;
    this.#delay = Math.min(RECONNECT_MAX_MS, delay * 2);
    this.#retry = setTimeout(() => {
      if (this.#stopped) return;
      void BusConnection.connect(this.#options.busAddress).then(
        (bus) => {
          if (this.#stopped) {
            bus.close();
            return;
          }
          this.#bus = bus;
          this.#delay = RECONNECT_FIRST_MS;
          this.#options.logger.info("Zeroconf: back on the system bus");
          this.#enqueue(() => this.#activate());
        },
        () => this.#scheduleReconnect(),
      );
    }, delay);
    this.#retry.unref();
  }
}
