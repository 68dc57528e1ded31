// Which "source" a peer counts against for fair admission, throttling and
// log rate limits: an IPv4 address, an IPv6 /64, or an IPv6 address on one
// of the server's own links, one by one.
//
// A /64 because one IPv6 host can pick any address in its subnet's /64 at
// will (RFC 4941 temporary addresses, RFC 8981), so counting single IPv6
// addresses would hand a single machine 2^64 sources; a site gets at
// least a /64 per link. Not on the server's own links: there the /64 is
// the link, and every machine on it has an address in it. A fleet that
// finds the server by Zeroconf is on its link (mDNS does not cross a
// router), and connects from its link-local addresses (fe80::/10) or from
// the link's global /64; counted as one source it would share one
// connection cap and one failure bucket, and a few broken or hostile
// machines would shut the whole link out, or a rack rebooting at once
// would be served 128 at a time with the rest retrying 10 s later. A
// machine on the link can claim more addresses than its own there, as one
// on an IPv4 LAN can claim more IPv4 addresses; the global caps bound what
// it can hold. The server's links are its on-link routes of /64 or longer
// (/proc/net/ipv6_route: no gateway; not loopback, local or multicast),
// read again every ON_LINK_READ_MS; link-local addresses are always on a
// link. The zone is kept: fe80::1 on eth0 and on eth1 are two machines.

import { readFileSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import { splitZone } from "./peer-address.js";

/**
 * How often the server's on-link prefixes are read again: an address
 * added or a link renumbered counts by its address within this long.
 */
export const ON_LINK_READ_MS = 10_000;

/**
 * Recent answers: every connection asks at least twice (admission, then
 * the log's rate limit), a machine that retries asks again, and the parse
 * costs ~20 µs of the main thread. Emptied when full, and when the
 * on-link prefixes change.
 */
const RECENT_MAX = 4096;

/** An on-link prefix: the first `length` bits of `bits`. */
interface Prefix {
  readonly bits: bigint;
  readonly length: number;
}

// Route flags (linux/ipv6_route.h, linux/route.h).
const RTF_UP = 0x0001;
const RTF_GATEWAY = 0x0002;
const RTF_REJECT = 0x0200;
const RTF_LOCAL = 0x80000000;

/**
 * The on-link prefixes of /64 or longer in /proc/net/ipv6_route's text:
 * routes that are up, with no gateway and no next hop, not rejecting, not
 * one of our own addresses, not on loopback and not multicast.
 */
export function parseOnLinkPrefixes(text: string): Prefix[] {
  const prefixes: Prefix[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [dest, plen, , , nextHop, , , , flagText, device] = f as [string, string, string, string, string, string, string, string, string, string];
    const length = parseInt(plen, 16);
    const flags = parseInt(flagText, 16);
    if (!/^[0-9a-f]{32}$/i.test(dest) || !(length >= 64 && length <= 128)) continue;
    if ((flags & RTF_UP) === 0 || (flags & (RTF_GATEWAY | RTF_REJECT | RTF_LOCAL)) !== 0) continue;
    if (!/^0{32}$/.test(nextHop) || device === "lo" || dest.toLowerCase().startsWith("ff")) continue;
    prefixes.push({ bits: BigInt(`0x${dest}`), length });
  }
  return prefixes;
}

/** Reads the text of /proc/net/ipv6_route; "" where there is none (no IPv6, not Linux). */
function readRoutes(): string {
  try {
    return readFileSync("/proc/net/ipv6_route", "utf8");
  } catch {
    return "";
  }
}

/** Sources, with the server's on-link prefixes as `routes()` gives them, read again every ON_LINK_READ_MS of `now()`. */
export class Sources {
  readonly #routes: () => string;
  readonly #now: () => number;
  readonly #recent = new Map<string, string>();
  #text: string | null = null;
  #onLink: Prefix[] = [];
  #readAt = 0;

  constructor(routes: () => string = readRoutes, now: () => number = () => performance.now()) {
    this.#routes = routes;
    this.#now = now;
  }

  /** The source `address` (as Node reports a remote address) counts against. */
  of(address: string): string {
    const now = this.#now();
    if (this.#text === null || now - this.#readAt >= ON_LINK_READ_MS) this.#read(now);
    let source = this.#recent.get(address);
    if (source === undefined) {
      if (this.#recent.size >= RECENT_MAX) this.#recent.clear();
      source = this.#parse(address);
      this.#recent.set(address, source);
    }
    return source;
  }

  #read(now: number): void {
    this.#readAt = now;
    const text = this.#routes();
    if (text === this.#text) return;
    this.#text = text;
    this.#onLink = parseOnLinkPrefixes(text);
    this.#recent.clear();
  }

  #parse(address: string): string {
    // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return mapped[1]!;
    if (isIPv4(address)) return address;
    const [bare, zone] = splitZone(address);
    if (!isIPv6(bare)) return address;
    const groups = expandIPv6(bare);
    const linkLocal = (parseInt(groups[0]!, 16) & 0xffc0) === 0xfe80;
    if (linkLocal || this.#isOnLink(groups)) return `${compressIPv6(groups)}${zone === "" ? "" : `%${zone}`}`;
    // RFC 5952's form: the zeros that end the prefix join the /64's own in "::".
    const prefix = groups.slice(0, 4);
    while (prefix.at(-1) === "0") prefix.pop();
    return `${prefix.join(":")}::/64`;
  }

  #isOnLink(groups: readonly string[]): boolean {
    if (this.#onLink.length === 0) return false;
    const bits = groups.reduce((n, g) => (n << 16n) | BigInt(`0x${g}`), 0n);
    return this.#onLink.some((p) => bits >> BigInt(128 - p.length) === p.bits >> BigInt(128 - p.length));
  }
}

const system = new Sources();

/** The source `address` (as Node reports a remote address) counts against, with this host's links. */
export function sourceOf(address: string): string {
  return system.of(address);
}

/** The eight 16-bit groups of an IPv6 address, in lower-case hex without leading zeros. */
function expandIPv6(address: string): string[] {
  let text = address.toLowerCase();
  // A trailing dotted quad (::a.b.c.d forms) is two groups.
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = tail === undefined ? [] : Array.from({ length: 8 - left.length - right.length }, () => "0");
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16).toString(16));
}

/** RFC 5952's text of eight groups: the longest run of two or more zero groups (the first of equals) as "::". */
function compressIPv6(groups: readonly string[]): string {
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < groups.length; ) {
    let j = i;
    while (j < groups.length && groups[j] === "0") j++;
    if (j - i > bestLength) [best, bestLength] = [i, j - i];
    i = j > i ? j : i + 1;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLength).join(":")}`;
}
