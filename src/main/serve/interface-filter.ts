// `--interface` without SO_BINDTODEVICE. Node cannot set that socket option
// (it needs a raw setsockopt before bind), so we listen as usual and accept
// only connections whose *local* address belongs to the named interface,
// closing others at once, before reading a byte. Addresses are re-read at
// most once a second, so an interface that gains an address (a DHCP lease,
// IPv6 autoconfiguration) is served without a restart.

import { networkInterfaces } from "node:os";

/** How long a read of the interface's addresses is trusted. */
const REFRESH_MS = 1_000;

export type InterfaceAddresses = () => NodeJS.Dict<import("node:os").NetworkInterfaceInfo[]>;

export class InterfaceFilter {
  readonly #name: string;
  readonly #read: InterfaceAddresses;
  readonly #now: () => number;
  #addresses = new Set<string>();
  #readAt = -Infinity;

  constructor(name: string, read: InterfaceAddresses = networkInterfaces, now: () => number = Date.now) {
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

  /** Whether the interface exists now (for a start-up warning). */
  exists(): boolean {
    return this.#read()[this.#name] !== undefined;
  }

  #refresh(): void {
    this.#readAt = this.#now();
    const infos = this.#read()[this.#name] ?? [];
    this.#addresses = new Set(infos.map((i) => normalise(i.address)));
  }
}

/** Strips a zone (`fe80::1%eth0`) and the IPv4-mapped prefix, lowercases. */
function normalise(address: string): string {
  let a = address.toLowerCase();
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  if (a.startsWith("::ffff:") && a.includes(".")) a = a.slice(7);
  return a;
}
