// A peer's address as the reference sees it. Node reports an IPv6
// link-local peer as `fe80::1%eth0` (the zone as libuv's if_indextoname
// gives it); Python's socket module gives the host without its zone and the
// interface's index as the tuple's scope_id: `('fe80::1', 41234, 0, 3)`.
// The host alone is what the reference's D-Bus signals carry
// (`ClientNotFound`), and the tuple is what its log lines show; our own
// records (the audit log, events) keep the zone, which names the link.

import { networkInterfaces } from "node:os";

/** `fe80::1%eth0` → [`fe80::1`, `eth0`]; an address without a zone → [address, ""]. */
export function splitZone(address: string): [host: string, zone: string] {
  const i = address.indexOf("%");
  return i < 0 ? [address, ""] : [address.slice(0, i), address.slice(i + 1)];
}

/** Indexes read recently, by interface name: a fleet on one link asks for the same one each time. */
const indexes = new Map<string, { index: number; readAt: number }>();
/** An interface removed and made again under its name gets a new index. */
const INDEX_TRUSTED_MS = 10_000;

/** The interface index of a zone (a name, or already a number); 0 for none or an unknown one. */
export function scopeId(zone: string, now = performance.now()): number {
  if (zone === "") return 0;
  if (/^\d+$/.test(zone)) return Number(zone);
  const known = indexes.get(zone);
  if (known !== undefined && now - known.readAt < INDEX_TRUSTED_MS) return known.index;
  const index = networkInterfaces()[zone]?.find((i) => i.family === "IPv6" && i.scopeid !== 0)?.scopeid ?? 0;
  if (indexes.size >= 256) indexes.clear();
  indexes.set(zone, { index, readAt: now });
  return index;
}
