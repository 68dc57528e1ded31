// Zeroconf: announce `_mandos._tcp` on our port over mDNS/DNS-SD, so that a
// rebooting mandos-client (which browses through Avahi) finds us as it finds
// the reference server (mandos(8) ZEROCONF). Through the host's avahi-daemon
// when one is on the system bus at start-up, as the reference (avahi.ts);
// else with @homebridge/ciao, a responder of our own (below).
//
// Theory of operation with ciao:
// - ciao probes the name (RFC 6762 §8.1), announces it (§8.3), answers
//   queries, and re-announces by itself when an interface comes or goes or an
//   address changes (it polls the interfaces every 15 s). stop() sends
//   goodbyes (§10.1).
// - ciao makes a socket per link and address family only if the link has an
//   address of that family when ciao starts or when the link appears; a link
//   that *gains* its first IPv4 (or IPv6) address later is never announced
//   on (ciao 1.3.12); and a link that *loses* one keeps a socket ciao can no
//   longer handle packets on (survivePacketFailures). So we watch for both,
//   as often as ciao polls, and then start ciao afresh under the name we
//   already have; and no packet ciao fails on may stop the server.
// - A service name ciao cannot send as one DNS label (a ".", over 63 bytes)
//   is an error logged at start, and not announced (unannounceableName).
// - IPv6 (unless --no-ipv6, as the reference through Avahi): ciao 1.3.12
//   needs two repairs to announce over IPv6 on links we name (see
//   answerOverIpv6 and recogniseOwnIpv6Packets), and one more to hear IPv6
//   queries on more than one link (joinIpv6OnEachLink).
// - On a name collision ciao renames to "Mandos (2)"; the reference (through
//   Avahi) to "Mandos #2". We hook the one step where ciao picks the next name
//   so that the name probed and announced is Avahi's form, and log each rename
//   with the reference's messages.
// - A Zeroconf failure is logged and never stops the server: clients can still
//   be given `--connect`.

import { Socket } from "node:dgram";
import { networkInterfaces } from "node:os";
import ciao, { type CiaoService, type Responder, type ResponderOptions } from "@homebridge/ciao";
import { NetworkManager } from "@homebridge/ciao/lib/NetworkManager.js";
import type { Logger } from "../daemon/log.js";
import { pyRepr } from "../python/repr.js";
import { DEFAULT_SYSTEM_BUS } from "../dbus/connection.js";
import { alternativeServiceName } from "./alternative-name.js";
import { AvahiAnnouncement } from "./avahi.js";
import type { Announcement, AnnouncementOptions } from "./announcement.js";

export { alternativeServiceName } from "./alternative-name.js";
export type { Announcement, AnnouncementOptions } from "./announcement.js";

/** DNS-SD service type without its underscores: ciao writes `_mandos._tcp`. */
export const SERVICE_TYPE = "mandos";

/** As the reference's AvahiService.max_renames. */
export const MAX_RENAMES = 32768;

/** How often we look for a link that gained or lost an address: as often as ciao's NetworkManager polls. */
export const INTERFACE_POLL_MS = 15_000;

/**
 * At most one log line this often about mDNS packets ciao failed on: a
 * packet stream from the network must not become a log stream.
 */
export const PACKET_FAILURE_LOG_MS = 60_000;

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** RFC 1035 §2.3.4: a DNS label is at most 63 bytes. */
const MAX_LABEL_BYTES = 63;

/**
 * Why ciao cannot announce `name` as the one DNS label a service instance
 * name is (RFC 6763 §4.3), or undefined if it can. Avahi escapes a "."
 * (`Lab\.Mandos`, RFC 6763 §4.3); ciao (1.3.12) writes the name into the
 * domain name as it is, so it would go out as two labels, under which
 * mandos-client never finds it. A name over 63 bytes ciao refuses at each
 * probe and retries, silently, for ever. Exported for the tests.
 */
export function unannounceableName(name: string): string | undefined {
  if (name.includes(".")) return "ciao would announce it as two DNS labels, split at the \".\"";
  const bytes = Buffer.byteLength(name);
  if (bytes > MAX_LABEL_BYTES) return `it is ${bytes} bytes long, and a DNS label at most ${MAX_LABEL_BYTES}`;
  return undefined;
}

/**
 * The parts of CiaoService that ciao marks private but that renaming needs:
 * the Prober calls incrementName() on a collision (while the service is
 * unannounced); updateName() sets the name and FQDN in that state;
 * rebuildServiceRecords() makes the records that carry the name.
 */
interface RenamableService {
  incrementName(nameCheckOnly?: boolean): void;
  updateName(name: string): Promise<void>;
  rebuildServiceRecords(): void;
  getFQDN(): string;
}

function isRenamable(service: CiaoService): boolean {
  const candidate = service as unknown as Partial<Record<keyof RenamableService, unknown>>;
  return typeof candidate.incrementName === "function"
    && typeof candidate.updateName === "function"
    && typeof candidate.rebuildServiceRecords === "function";
}

/** ciao's name for a link's IPv6 socket ("eth0/6"), and back to the link. */
const IPV6_SUFFIX = "/6";
function linkOf(socketName: string): string {
  return socketName.endsWith(IPV6_SUFFIX) ? socketName.slice(0, -IPV6_SUFFIX.length) : socketName;
}

/** The service's address records, filed under the link ("eth0"). */
const ADDRESS_RECORD_LOOKUPS = ["aRecord", "aaaaRecord", "aaaaRoutableRecord", "aaaaUniqueLocalRecord"] as const;

/**
 * ciao 1.3.12 names its IPv6 socket on eth0 "eth0/6" and asks the service
 * whether it advertises on "eth0/6"; a service with restrictedAddresses
 * (which we need: see #publish) knows only "eth0", so says no, and nothing is
 * ever sent over IPv6. Ask about the link itself instead. Its announcements
 * look the address records up under "eth0/6" too, and so went out over IPv6
 * without any (its answers to queries strip the "/6" themselves): look them
 * up under the link. Returns false when ciao no longer has
 * advertisesOnInterface (then IPv6 stays silent, as before).
 */
function answerOverIpv6(service: CiaoService): boolean {
  const candidate = service as unknown as Record<string, unknown>;
  if (typeof candidate.advertisesOnInterface !== "function") return false;
  const original = candidate.advertisesOnInterface as (name: string, skipAddressCheck?: boolean) => boolean;
  candidate.advertisesOnInterface = function (this: CiaoService, name: string, skipAddressCheck?: boolean): boolean {
    return original.call(this, linkOf(name), skipAddressCheck);
  };
  for (const lookup of ADDRESS_RECORD_LOOKUPS) {
    const records = candidate[lookup];
    if (typeof records !== "function") continue;
    candidate[lookup] = function (this: CiaoService, name: string): unknown {
      return (records as (name: string) => unknown).call(this, linkOf(name));
    };
  }
  return true;
}

/**
 * ciao 1.3.12 joins ff02::fb on each link's IPv6 socket with the link's bare
 * fe80:: address, without its scope: the kernel then joins the group on the
 * link its route for ff02::fb picks, the same one for every socket, and the
 * other links never hear a query over IPv6 (a host with two links answered
 * on one). Give each join and leave on a link's socket that link's scope.
 * And Linux hands a multicast packet to every socket that joined the group,
 * on whichever link: a packet that came over another link (its source's
 * scope says which) is not for this socket, whose name ciao answers on.
 * False when ciao no longer makes its sockets so (then nothing is changed).
 */
function joinIpv6OnEachLink(responder: Responder): boolean {
  const server = (responder as unknown as { server?: { createDgramSocket?: unknown; handleMessage?: unknown } }).server;
  if (!server || typeof server.createDgramSocket !== "function" || typeof server.handleMessage !== "function") return false;
  const create = server.createDgramSocket as (name: string, ...rest: unknown[]) => unknown;
  server.createDgramSocket = function (this: unknown, name: string, ...rest: unknown[]): unknown {
    const socket = create.call(this, name, ...rest);
    if (rest[1] !== "udp6" || !(socket instanceof Socket)) return socket;
    const scoped = (address?: string): string | undefined =>
      address === undefined || address.includes("%") ? address : `${address}%${name}`;
    const join = socket.addMembership.bind(socket);
    const leave = socket.dropMembership.bind(socket);
    socket.addMembership = (group: string, address?: string): void => join(group, scoped(address));
    socket.dropMembership = (group: string, address?: string): void => leave(group, scoped(address));
    return socket;
  };
  const handle = server.handleMessage as (name: string, data: unknown, rinfo: unknown, ...rest: unknown[]) => unknown;
  server.handleMessage = function (this: unknown, name: string, data: unknown, rinfo: unknown, ...rest: unknown[]): unknown {
    const from = (rinfo as { address?: unknown } | undefined)?.address;
    const scope = typeof from === "string" ? from.split("%")[1] : undefined;
    if (scope !== undefined && scope !== name) return undefined;
    return handle.call(this, name, data, rinfo, ...rest);
  };
  return true;
}

/**
 * ciao hears its own multicast (loopback stays on, so that queriers on this
 * host hear it) and drops a packet it sent itself by looking the packet up
 * among those sent on the receiving interface. It files a packet sent over
 * IPv6 under the socket's name, "eth0/6", but looks a received one up under
 * the link's, "eth0" (ciao 1.3.12, MDNSServer), so over IPv6 it takes its
 * own probes for a rival's and renames itself for ever. Look under both. A
 * packet byte for byte like one we just sent is ours: a rival's answer
 * carries its own address.
 */
function recogniseOwnIpv6Packets(responder: Responder): boolean {
  const server = (responder as unknown as { server?: { checkIfPacketWasPreviouslySentFromUs?: unknown } }).server;
  if (!server || typeof server.checkIfPacketWasPreviouslySentFromUs !== "function") return false;
  const original = server.checkIfPacketWasPreviouslySentFromUs as (name: string, packet: Buffer) => boolean;
  server.checkIfPacketWasPreviouslySentFromUs = function (this: unknown, name: string, packet: Buffer): boolean {
    return original.call(this, name, packet) || original.call(this, `${name}${IPV6_SUFFIX}`, packet);
  };
  return true;
}

/**
 * ciao handles each packet it hears in a socket's "message" listener, where
 * anything it throws is an uncaught exception: the whole server would exit.
 * It does throw: after a link loses its IPv4 address, ciao (1.3.12) keeps
 * the link's IPv4 socket with no netmask, and the next IPv4 packet there
 * fails an assertion (`getNetAddress`: "IP address version must match").
 * Drop such a packet instead, and say so (at most once per
 * PACKET_FAILURE_LOG_MS). False when ciao no longer has the method (then
 * nothing is changed).
 */
function survivePacketFailures(responder: Responder, logger: Logger): boolean {
  const server = (responder as unknown as { server?: { handleMessage?: unknown } }).server;
  if (!server || typeof server.handleMessage !== "function") return false;
  const original = server.handleMessage as (name: string, ...rest: unknown[]) => unknown;
  let loggedAt: number | undefined;
  let unlogged = 0;
  const failed = (name: string, error: unknown): void => {
    const now = performance.now();
    if (loggedAt !== undefined && now - loggedAt < PACKET_FAILURE_LOG_MS) {
      unlogged++;
      return;
    }
    const more = unlogged > 0 ? ` (and ${unlogged} more since the last such line)` : "";
    logger.warning(`Zeroconf: dropped an mDNS packet heard on ${name} that ciao failed on: ${describe(error)}${more}`);
    loggedAt = now;
    unlogged = 0;
  };
  server.handleMessage = function (this: unknown, name: string, ...rest: unknown[]): unknown {
    try {
      const result = original.call(this, name, ...rest);
      // Synchronous in 1.3.12; a later version's promise must not reject unhandled either.
      if (result instanceof Promise) return result.catch((error: unknown) => failed(name, error));
      return result;
    } catch (error) {
      failed(name, error);
      return undefined;
    }
  };
  return true;
}

/**
 * Tests: make ciao's NetworkManager look at the interfaces every `ms`
 * instead of every 15 s (a static of ciao's, read each time it schedules a
 * look, so set before the responder starts). False when ciao no longer has
 * it.
 */
function ciaoPollsEvery(ms: number): boolean {
  const manager = NetworkManager as unknown as { POLLING_TIME?: unknown };
  if (typeof manager.POLLING_TIME !== "number") return false;
  manager.POLLING_TIME = ms;
  return true;
}

/**
 * A service without TXT entries (the reference's has none either): ciao
 * 1.3.12 sends its TXT as one empty string (a single zero byte, RFC 6763
 * §6.1), but compares a TXT it hears with its own list, which is empty. Its
 * own announcement, heard back on another link (multicast loopback), then
 * differs in length, is taken for a rival's, and the service probes and
 * announces again, for ever: on a host with two links, three probes and an
 * announcement every ~0.85 s, no IPv6 resolution, no goodbye at exit. Give
 * it the one empty string it sends. False when ciao keeps its TXT otherwise
 * now (then nothing is changed). Exported for the tests.
 */
export function txtAsSent(service: object): boolean {
  const candidate = service as { txt?: unknown };
  if (!Array.isArray(candidate.txt)) return false;
  if (candidate.txt.length === 0) candidate.txt = [Buffer.alloc(0)];
  return true;
}

/**
 * The links we can announce on, as ciao names its sockets: "eth0" when it has
 * IPv4, "eth0/6" when it has IPv6 (link-local included) and `ipv6` is on.
 */
function addressedLinksOf(only: string | undefined, ipv6: boolean): () => string[] {
  return () => Object.entries(networkInterfaces())
    .filter(([name]) => only === undefined || name === only)
    .flatMap(([name, addresses]) => {
      const external = (addresses ?? []).filter((a) => !a.internal);
      return [
        ...(external.some((a) => a.family === "IPv4") ? [name] : []),
        ...(ipv6 && external.some((a) => a.family === "IPv6") ? [`${name}${IPV6_SUFFIX}`] : []),
      ];
    });
}

function pollEvery(ms: number): (tick: () => void) => () => void {
  return (tick) => {
    const timer = setInterval(tick, ms);
    timer.unref();
    return () => clearInterval(timer);
  };
}

/** One ciao responder and service; replaced when a link gains an address. */
interface Publication {
  readonly responder: Responder;
  readonly service: CiaoService;
  readonly advertised: Promise<boolean>;
}

class MandosAnnouncement implements Announcement {
  readonly #options: AnnouncementOptions;
  readonly #logger: Logger;
  readonly #addressedLinks: () => string[];
  #name: string;
  #renames = 0;
  #stopped = false;
  #publication: Publication | undefined;
  /** addressedLinks() when ciao last started. */
  #known = new Set<string>();
  /** Restarts and stop() run one after another. */
  #queue: Promise<void> = Promise.resolve();
  #stopping: Promise<void> | undefined;
  #unwatch: () => void = () => {};
  #resolveGaveUp: (value: false) => void = () => {};
  readonly established: Promise<boolean>;

  constructor(options: AnnouncementOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#name = options.name;
    const only = options.interface ? options.interface : undefined;
    this.#addressedLinks = options.addressedLinks ?? addressedLinksOf(only, options.ipv6);
    const gaveUp = new Promise<false>((resolve) => { this.#resolveGaveUp = resolve; });
    const unfit = unannounceableName(options.name);
    if (unfit) {
      this.#logger.error(`Zeroconf: cannot announce service name ${pyRepr(options.name)} with our own responder (ciao): ${unfit}; not announcing`);
    }
    const first = unfit ? undefined : this.#publish();
    this.established = first ? Promise.race([first.advertised, gaveUp]) : Promise.resolve(false);
    if (first) this.#unwatch = (options.watch ?? pollEvery(options.interfacePollMs ?? INTERFACE_POLL_MS))(() => this.#checkInterfaces());
  }

  get name(): string {
    return this.#name;
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      this.#unwatch();
      await this.#queue;
      await this.#withdraw();
    })();
    return this.#stopping;
  }

  #checkInterfaces(): void {
    if (this.#stopped) return;
    // Gained: ciao would never announce there. Lost: ciao keeps the socket,
    // half-forgotten (see survivePacketFailures), and announces on.
    const now = this.#addressedLinks();
    const gained = now.filter((key) => !this.#known.has(key));
    const lost = [...this.#known].filter((key) => !now.includes(key));
    if (gained.length === 0 && lost.length === 0) return;
    const family = (key: string): string => key === linkOf(key) ? "IPv4" : "IPv6";
    const what = [
      ...gained.map((key) => `${linkOf(key)} now has ${family(key)}`),
      ...lost.map((key) => `${linkOf(key)} no longer has ${family(key)}`),
    ];
    this.#logger.info(`Zeroconf: ${what.join(", ")}; announcing again`);
    this.#queue = this.#queue.then(async () => {
      if (this.#stopped) return;
      await this.#withdraw();
      if (!this.#stopped) this.#publish();
    });
  }

  /** Starts ciao under the current name; undefined (logged) if ciao refuses at once. */
  #publish(): Publication | undefined {
    const options = this.#options;
    const logger = this.#logger;
    this.#known = new Set(this.#addressedLinks());
    if (this.#known.size === 0) {
      const family = options.ipv6 ? "IPv4 or IPv6" : "IPv4";
      logger.info(`Zeroconf: no ${family} address on ${options.interface ? options.interface : "any interface"} yet; announcing once there is one`);
    }
    let responder: Responder;
    let service: CiaoService;
    try {
      // Never ciao's own choice of interfaces: on Linux it takes the names
      // from `ip -o link show`, where a veth or VLAN interface is
      // "eth0.10@eth0", matches none of them, and is silently skipped. So
      // without --interface we name every link that has an address now (ciao
      // announces on no other), and restart when that set grows.
      const names = options.interface ? [options.interface]
        : [...new Set([...this.#known].map(linkOf))];
      const responderOptions: ResponderOptions = {
        interface: options.interface ? options.interface : names,
        // ciao answers over IPv6 multicast (ff02::fb) only when asked to.
        ...(options.ipv6 ? { advertiseIpv6: true } : { disableIpv6: true }),
      };
      if (options.interfacePollMs !== undefined && !ciaoPollsEvery(options.interfacePollMs)) {
        logger.debug("Zeroconf: this ciao's interface poll cannot be set; it keeps its own");
      }
      responder = (options.getResponder ?? ciao.getResponder)(responderOptions);
      service = responder.createService({
        name: this.#name,
        type: SERVICE_TYPE,
        port: options.port,
        // The responder always listens on loopback too; a service announced
        // there hears its own announcements from the other interfaces (multicast
        // loopback) and takes them for a conflict.
        ...(names.length > 0 ? { restrictedAddresses: names } : {}),
        ...(options.ipv6 ? {} : { disabledIpv6: true }),
      });
    } catch (error) {
      logger.error(`Zeroconf: cannot announce: ${describe(error)}`);
      return undefined;
    }
    if (!survivePacketFailures(responder, logger)) logger.debug("Zeroconf: this ciao handles packets otherwise; not guarded");
    if (!txtAsSent(service)) logger.debug("Zeroconf: this ciao keeps its TXT otherwise; not adjusted");
    this.#chooseRenames(service);
    if (options.ipv6 && !(recogniseOwnIpv6Packets(responder) && answerOverIpv6(service))) {
      logger.warning("Zeroconf: this ciao cannot announce over IPv6 on chosen interfaces; IPv4 only");
    } else if (options.ipv6 && !joinIpv6OnEachLink(responder)) {
      logger.warning("Zeroconf: this ciao may hear IPv6 queries on one link only");
    }

    logger.debug(`Adding Zeroconf service '${this.#name}' of type '_${SERVICE_TYPE}._tcp' ...`);
    const advertised = service.advertise().then(
      () => {
        if (!this.#stopped) logger.debug("Zeroconf service established.");
        return true;
      },
      (error: unknown) => {
        if (!this.#stopped) logger.error(`Zeroconf: announcing '${this.#name}' failed: ${describe(error)}`);
        return false;
      },
    );
    this.#publication = { responder, service, advertised };
    return this.#publication;
  }

  /** Make ciao probe Avahi's next name on a collision, not its own. */
  #chooseRenames(service: CiaoService): void {
    const logger = this.#logger;
    if (!isRenamable(service)) {
      logger.warning("Zeroconf: this ciao version does not let us choose names after a collision; it will use its own form");
    } else {
      const renamable = service as unknown as RenamableService;
      const ciaoIncrement = renamable.incrementName.bind(service);
      // An own property shadows the prototype's method the Prober calls.
      renamable.incrementName = (nameCheckOnly?: boolean): void => {
        ciaoIncrement(nameCheckOnly); // the hostname's number, and ciao's bookkeeping
        if (nameCheckOnly) return;
        logger.info("Zeroconf service name collision.");
        if (this.#renames >= (this.#options.maxRenames ?? MAX_RENAMES)) {
          logger.critical(`No suitable Zeroconf service name found after ${this.#renames} retries; not announcing.`);
          this.#resolveGaveUp(false);
          void this.stop();
          return;
        }
        this.#renames++;
        this.#renamed(alternativeServiceName(this.#name));
        void renamable.updateName(this.#name); // synchronous while unannounced
        renamable.rebuildServiceRecords();
      };
    }
    service.on("name-change", (name) => {
      // Differs only when the hook above is unavailable.
      if (name !== this.#name) this.#renamed(name);
    });
  }

  #renamed(name: string): void {
    this.#name = name;
    this.#logger.info(`Changing Zeroconf service name to ${pyRepr(name)} ...`);
    this.#options.onRename?.(name);
  }

  async #withdraw(): Promise<void> {
    const publication = this.#publication;
    this.#publication = undefined;
    if (!publication) return;
    try {
      // destroy() sends the goodbyes (or cancels a probe); the responder is
      // shared by announcements with equal options and counts its users.
      await publication.service.destroy();
      await publication.responder.shutdown();
    } catch (error) {
      this.#logger.warning(`Zeroconf: withdrawing the service failed: ${describe(error)}`);
    }
  }
}

/**
 * Starts announcing, through avahi-daemon if it owns its name on the system
 * bus now, else with ciao; never rejects and never throws: failures are
 * logged, and the server goes on without Zeroconf.
 */
export async function startAnnouncement(options: AnnouncementOptions): Promise<Announcement> {
  if (options.systemBus !== null) {
    const busAddress = options.systemBus ?? (process.env.DBUS_SYSTEM_BUS_ADDRESS || DEFAULT_SYSTEM_BUS);
    const avahi = await AvahiAnnouncement.start({ ...options, busAddress, maxRenames: options.maxRenames ?? MAX_RENAMES });
    if (avahi) return avahi;
    options.logger.debug("Zeroconf: announcing with our own responder (ciao)");
  }
  return new MandosAnnouncement(options);
}
