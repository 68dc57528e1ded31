// Which "source" a peer counts against for fair admission, throttling and
// log rate limits: an IPv4 address, an IPv6 /64, or an IPv6 link-local
// address on its link. A /64 because one IPv6 host can pick any address in
// its subnet's /64 at will (RFC 4941 temporary addresses, RFC 8981), so
// counting single IPv6 addresses would hand a single machine 2^64 sources;
// a site gets at least a /64 per link. Not for link-local addresses
// (fe80::/10): every machine on a link has one in the same fe80::/64, and
// temporary addresses are never link-local, so each stable one is one
// machine. A fleet that finds the server by Zeroconf on a link with no
// router connects from those (the reference announces IPv6 only), and
// counted as one /64 it would share one connection cap and one failure
// bucket: a few broken or hostile machines would shut the whole link out.
// The zone is kept: fe80::1 on eth0 and on eth1 are two machines.

import { isIPv4, isIPv6 } from "node:net";
import { splitZone } from "./peer-address.js";

/**
 * Recent answers: every connection asks at least twice (admission, then
 * the log's rate limit), a machine that retries asks again, and the parse
 * costs ~20 µs of the main thread. Emptied when full.
 */
const recent = new Map<string, string>();
const RECENT_MAX = 4096;

/** The source `address` (as Node reports a remote address) counts against. */
export function sourceOf(address: string): string {
  let source = recent.get(address);
  if (source === undefined) {
    if (recent.size >= RECENT_MAX) recent.clear();
    source = parseSource(address);
    recent.set(address, source);
  }
  return source;
}

function parseSource(address: string): string {
  // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIPv4(address)) return address;
  const [bare, zone] = splitZone(address);
  if (!isIPv6(bare)) return address;
  const groups = expandIPv6(bare);
  if ((parseInt(groups[0]!, 16) & 0xffc0) === 0xfe80) return `${compressIPv6(groups)}${zone === "" ? "" : `%${zone}`}`;
  // RFC 5952's form: the zeros that end the prefix join the /64's own in "::".
  const prefix = groups.slice(0, 4);
  while (prefix.at(-1) === "0") prefix.pop();
  return `${prefix.join(":")}::/64`;
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
