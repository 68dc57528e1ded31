// Zeroconf: announce `_mandos._tcp` on our port over mDNS/DNS-SD with
// @homebridge/ciao, so that a rebooting mandos-client (which browses through
// Avahi) finds us as it finds the reference server (mandos(8) ZEROCONF).
//
// Theory of operation:
// - ciao probes the name (RFC 6762 §8.1), announces it (§8.3), answers
//   queries, and re-announces by itself when an interface comes or goes or an
//   address changes (it polls the interfaces every 15 s). stop() sends
//   goodbyes (§10.1).
// - ciao announces only on interfaces with IPv4, and makes a socket only if
//   the interface has an IPv4 address when it starts or when the interface
//   appears; an interface that *gains* its first IPv4 address later is never
//   announced on (ciao 1.3.12). So we watch for that, as often as ciao polls,
//   and then start ciao afresh under the name we already have.
// - On a name collision ciao renames to "Mandos (2)"; the reference (through
//   Avahi) to "Mandos #2". We hook the one step where ciao picks the next name
//   so that the name probed and announced is Avahi's form, and log each rename
//   with the reference's messages.
// - A Zeroconf failure is logged and never stops the server: clients can still
//   be given `--connect`.

import { networkInterfaces } from "node:os";
import ciao, { type CiaoService, type Responder, type ResponderOptions } from "@homebridge/ciao";
import type { Logger } from "./log.js";
import { alternativeServiceName } from "./zeroconf/alternative-name.js";

export { alternativeServiceName } from "./zeroconf/alternative-name.js";

/** DNS-SD service type without its underscores: ciao writes `_mandos._tcp`. */
export const SERVICE_TYPE = "mandos";

/** As the reference's AvahiService.max_renames. */
export const MAX_RENAMES = 32768;

/** How often we look for an interface that gained IPv4: as often as ciao's NetworkManager polls. */
export const INTERFACE_POLL_MS = 15_000;

export interface AnnouncementOptions {
  /** `--servicename`, usually "Mandos". */
  readonly name: string;
  /** The TCP port we listen on (after binding, so never 0). */
  readonly port: number;
  /** `--interface`: announce on that interface only; empty or absent: all. */
  readonly interface?: string;
  /** `--no-ipv6` gives false: no AAAA records and no IPv6 multicast. */
  readonly ipv6: boolean;
  readonly logger: Logger;
  /**
   * Called with the new name after each collision rename, as the reference's
   * AvahiServiceToSyslog relabels syslog lines `Mandos (NAME) [PID]: ...`.
   */
  readonly onRename?: (name: string) => void;
  /** Tests: where the ciao responder comes from. */
  readonly getResponder?: (options: ResponderOptions) => Responder;
  readonly maxRenames?: number;
  /** Tests: names of the interfaces (within `interface`, if given) that have an IPv4 address now. */
  readonly ipv4Interfaces?: () => string[];
  /** Tests: calls `tick` periodically until the returned function is called. */
  readonly watch?: (tick: () => void) => () => void;
}

export interface Announcement {
  /** The name we announce (or probe) now, after any renames. */
  readonly name: string;
  /** Settles when the first announcement is done (true) or has failed (false, logged). */
  readonly established: Promise<boolean>;
  /** Withdraw the service (goodbye packets) and close the mDNS sockets. Never rejects. */
  stop(): Promise<void>;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Python's repr() of a str, as the reference's `%r` writes the new name. */
function pythonRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const escaped = text.replace(/\\/g, "\\\\").replace(new RegExp(quote, "g"), `\\${quote}`);
  return `${quote}${escaped}${quote}`;
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

function ipv4InterfacesOf(only: string | undefined): () => string[] {
  return () => Object.entries(networkInterfaces())
    .filter(([name, addresses]) => (only === undefined || name === only)
      && (addresses ?? []).some((a) => a.family === "IPv4" && !a.internal))
    .map(([name]) => name);
}

function pollEvery(ms: number): (tick: () => void) => () => void {
  return (tick) => {
    const timer = setInterval(tick, ms);
    timer.unref();
    return () => clearInterval(timer);
  };
}

/** One ciao responder and service; replaced when an interface gains IPv4. */
interface Publication {
  readonly responder: Responder;
  readonly service: CiaoService;
  readonly advertised: Promise<boolean>;
}

class MandosAnnouncement implements Announcement {
  readonly #options: AnnouncementOptions;
  readonly #logger: Logger;
  readonly #ipv4Interfaces: () => string[];
  #name: string;
  #renames = 0;
  #stopped = false;
  #publication: Publication | undefined;
  /** Interfaces that had IPv4 when ciao last started. */
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
    this.#ipv4Interfaces = options.ipv4Interfaces ?? ipv4InterfacesOf(only);
    const gaveUp = new Promise<false>((resolve) => { this.#resolveGaveUp = resolve; });
    const first = this.#publish();
    this.established = first ? Promise.race([first.advertised, gaveUp]) : Promise.resolve(false);
    if (first) this.#unwatch = (options.watch ?? pollEvery(INTERFACE_POLL_MS))(() => this.#checkInterfaces());
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
    const gained = this.#ipv4Interfaces().filter((name) => !this.#known.has(name));
    if (gained.length === 0) return;
    this.#logger.info(`Zeroconf: ${gained.join(", ")} now has IPv4; announcing again`);
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
    this.#known = new Set(this.#ipv4Interfaces());
    if (this.#known.size === 0) {
      logger.info(`Zeroconf: no IPv4 address on ${options.interface ? options.interface : "any interface"} yet; announcing once there is one`);
    }
    let responder: Responder;
    let service: CiaoService;
    try {
      // Never ciao's own choice of interfaces: on Linux it takes the names
      // from `ip -o link show`, where a veth or VLAN interface is
      // "eth0.10@eth0", matches none of them, and is silently skipped. So
      // without --interface we name every interface that has IPv4 now (ciao
      // announces on no other), and restart when that set grows.
      const names = options.interface ? [options.interface] : [...this.#known];
      const responderOptions: ResponderOptions = {
        interface: options.interface ? options.interface : names,
        ...(options.ipv6 ? {} : { disableIpv6: true }),
      };
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
    this.#chooseRenames(service);

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
    this.#logger.info(`Changing Zeroconf service name to ${pythonRepr(name)} ...`);
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
 * Starts announcing; never rejects and never throws: failures are logged, and
 * the server goes on without Zeroconf.
 */
export async function startAnnouncement(options: AnnouncementOptions): Promise<Announcement> {
  return new MandosAnnouncement(options);
}
