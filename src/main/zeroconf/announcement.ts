// What an announcement is, whoever makes it: the options startAnnouncement
// takes (announce.ts) and the running announcement it gives back, through
// the host's avahi-daemon (avahi.ts) or our own responder (announce.ts).

import type { Responder, ResponderOptions } from "@homebridge/ciao";
import type { Logger } from "../daemon/log.js";

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
  /**
   * The system bus to look for avahi-daemon on: DBUS_SYSTEM_BUS_ADDRESS, or
   * the standard socket, if absent; null: do not look, use ciao (tests).
   */
  readonly systemBus?: string | null;
  /** Tests: where the ciao responder comes from. */
  readonly getResponder?: (options: ResponderOptions) => Responder;
  readonly maxRenames?: number;
  /**
   * Tests: the links (within `interface`, if given) we can announce on now,
   * as ciao names its sockets: "eth0" for one with IPv4, "eth0/6" for one
   * with IPv6 (only asked for when `ipv6`).
   */
  readonly addressedLinks?: () => string[];
  /**
   * Tests: how often (ms) we, and ciao, look for links that gained or lost
   * an address; absent: every 15 s (INTERFACE_POLL_MS, ciao's own).
   */
  readonly interfacePollMs?: number;
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
