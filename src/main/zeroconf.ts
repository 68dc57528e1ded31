// Zeroconf: announce `_mandos._tcp` on our port over mDNS/DNS-SD with
// @homebridge/ciao, so that a rebooting mandos-client (which browses through
// Avahi) finds us as it finds the reference server (mandos(8) ZEROCONF).
//
// Theory of operation:
// - ciao probes the name (RFC 6762 §8.1), announces it (§8.3), answers
//   queries, and re-announces by itself when an interface or address comes or
//   goes (it polls the interfaces every 15 s). stop() sends goodbyes (§10.1).
// - On a name collision ciao renames to "Mandos (2)"; the reference (through
//   Avahi) to "Mandos #2". We hook the one step where ciao picks the next name
//   so that the name probed and announced is Avahi's form, and log each rename
//   with the reference's messages.
// - A Zeroconf failure is logged and never stops the server: clients can still
//   be given `--connect`.

import ciao, { type CiaoService, type Responder, type ResponderOptions, type ServiceOptions } from "@homebridge/ciao";
import type { Logger } from "./log.js";
import { alternativeServiceName } from "./zeroconf/alternative-name.js";

export { alternativeServiceName } from "./zeroconf/alternative-name.js";

/** DNS-SD service type without its underscores: ciao writes `_mandos._tcp`. */
export const SERVICE_TYPE = "mandos";

/** As the reference's AvahiService.max_renames. */
export const MAX_RENAMES = 32768;

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

export async function startAnnouncement(options: AnnouncementOptions): Promise<Announcement> {
  const { logger } = options;
  const maxRenames = options.maxRenames ?? MAX_RENAMES;
  const interfaceName = options.interface ? options.interface : undefined;
  const responderOptions: ResponderOptions = {
    ...(interfaceName ? { interface: interfaceName } : {}),
    ...(options.ipv6 ? {} : { disableIpv6: true }),
  };
  const serviceOptions: ServiceOptions = {
    name: options.name,
    type: SERVICE_TYPE,
    port: options.port,
    ...(interfaceName ? { restrictedAddresses: [interfaceName] } : {}),
    ...(options.ipv6 ? {} : { disabledIpv6: true }),
  };

  let currentName = options.name;
  let responder: Responder;
  let service: CiaoService;
  try {
    responder = (options.getResponder ?? ciao.getResponder)(responderOptions);
    service = responder.createService(serviceOptions);
  } catch (error) {
    logger.error(`Zeroconf: cannot announce: ${describe(error)}`);
    return { name: currentName, established: Promise.resolve(false), stop: async () => {} };
  }

  let stopped = false;
  let renames = 0;
  let resolveGaveUp: (value: false) => void = () => {};
  const gaveUp = new Promise<false>((resolve) => { resolveGaveUp = resolve; });

  if (isRenamable(service)) {
    const renamable = service as unknown as RenamableService;
    const ciaoIncrement = renamable.incrementName.bind(service);
    // An own property shadows the prototype's method the Prober calls.
    renamable.incrementName = (nameCheckOnly?: boolean): void => {
      ciaoIncrement(nameCheckOnly); // the hostname's number, and ciao's bookkeeping
      if (nameCheckOnly) return;
      logger.info("Zeroconf service name collision.");
      if (renames >= maxRenames) {
        logger.critical(`No suitable Zeroconf service name found after ${renames} retries; not announcing.`);
        resolveGaveUp(false);
        void announcement.stop();
        return;
      }
      renames++;
      currentName = alternativeServiceName(currentName);
      logger.info(`Changing Zeroconf service name to ${pythonRepr(currentName)} ...`);
      void renamable.updateName(currentName); // synchronous while unannounced
      renamable.rebuildServiceRecords();
      options.onRename?.(currentName);
    };
  } else {
    logger.warning("Zeroconf: this ciao version does not let us choose names after a collision; it will use its own form");
  }
  service.on("name-change", (name) => {
    if (name !== currentName) {
      // Only when the hook above is unavailable.
      currentName = name;
      logger.info(`Changing Zeroconf service name to ${pythonRepr(name)} ...`);
      options.onRename?.(name);
    }
  });

  logger.debug(`Adding Zeroconf service '${currentName}' of type '_${SERVICE_TYPE}._tcp' ...`);
  const advertised = service.advertise().then(
    () => {
      if (!stopped) logger.debug("Zeroconf service established.");
      return true;
    },
    (error: unknown) => {
      if (!stopped) logger.error(`Zeroconf: announcing '${currentName}' failed: ${describe(error)}`);
      return false;
    },
  );
  const established = Promise.race([advertised, gaveUp]);

  let stopping: Promise<void> | undefined;
  const announcement: Announcement = {
    get name() { return currentName; },
    established,
    stop(): Promise<void> {
      stopping ??= (async () => {
        stopped = true;
        try {
          // destroy() sends the goodbyes (or cancels a probe); the responder
          // is shared by announcements with equal options and counts its users.
          await service.destroy();
          await responder.shutdown();
        } catch (error) {
          logger.warning(`Zeroconf: withdrawing the service failed: ${describe(error)}`);
        }
      })();
      return stopping;
    },
  };
  return announcement;
}
