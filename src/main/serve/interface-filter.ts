// `--interface` without SO_BINDTODEVICE. Node cannot set that socket option
// (it needs a raw setsockopt before bind), so we listen as usual and accept
// only connections whose *local* address belongs to the named interface,
// closing others at once, before reading a byte. Addresses are re-read at
// most once a second, so an interface that gains an address (a DHCP lease,
// IPv6 autoconfiguration) is served without a restart.
//
// An interface missing at start-up is the reference's ENODEV from
// SO_BINDTODEVICE: it logs `Interface X does not exist, cannot bind` and
// serves every interface (mandos(8): failing to bind to the interface is
// not critical). main.ts asks interfaceExists() first and filters nothing
// then, so that a mistyped name does not shut every client out.

import { existsSync } from "node:fs";
import { networkInterfaces } from "node:os";

/**
 * Longest interface name, in bytes: IFNAMSIZ (16) less the NUL (linux/if.h).
 * A longer name can never exist, whatever the interfaces.
 */
export const MAX_INTERFACE_NAME_BYTES = 15;

/** How long a read of the interface's addresses is trusted. */
const REFRESH_MS = 1_000;

export type InterfaceAddresses = () => NodeJS.Dict<import("node:os").NetworkInterfaceInfo[]>;

export class InterfaceFilter {
  readonly #name: string;
  readonly #read: InterfaceAddresses;
  readonly #now: () => number;
  #addresses = new Set<string>();
  #readAt = -Infinity;

  constructor(name: string, read: InterfaceAddresses = networkInterfaces, now: () => number = () => performance.now()) {
    this.#name = name;
    this.#read = read;
    this.#now = now;
  }

  /** Does a connection that arrived on local address `local` belong to the interface? */
  accepts(local: string | undefined): boolean {
    if (!local) return false;
    if (this.#now() - this.#readAt > REFRESH_MS) this.#refresh();
    return this.#addresses.has(normalise(local));
  }


  #refresh(): void {
    this.#readAt = this.#now();
    const infos = this.#read()[this.#name] ?? [];
    this.#addresses = new Set(infos.map((i) => normalise(i.address)));
  }
}

/**
 * Whether `name` is an interface now, as SO_BINDTODEVICE would find it (else
 * ENODEV). os.networkInterfaces() lists only interfaces with an address, so
 * one that is up without an address yet is looked for in /sys/class/net too.
 */
export function interfaceExists(name: string, read: InterfaceAddresses = networkInterfaces, sysfs = "/sys/class/net"): boolean {
  // Never a name (linux/net/core/dev.c, dev_valid_name()); and not a path under sysfs.
  if (name === "" || name === "." || name === ".." || Buffer.byteLength(name) > MAX_INTERFACE_NAME_BYTES || /[/:\s]/.test(name)) return false;
  if (read()[name] !== undefined) return true;
  return existsSync(`${sysfs}/${name}`);
}

/** Strips a zone (`fe80::1%eth0`) and the IPv4-mapped prefix, lowercases. */
function normalise(address: string): string {
  let a = address.toLowerCase();
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  if (a.startsWith("::ffff:") && a.includes(".")) a = a.slice(7);
  return a;
}
