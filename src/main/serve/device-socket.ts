// `--interface` as the reference does it: a listening socket bound to the
// interface with SO_BINDTODEVICE, so that the kernel hands us only what
// arrives on that interface, whatever address it is for (127.0.0.2 on lo,
// or a link's address reached over another link, which the reference's
// kernel refuses). Node cannot set that option before bind(2); our addon
// makes and binds the socket (src/native/datagram.c, bindOnDevice) and
// Node listens on its descriptor, as on a --socket. Without the addon (not
// built, or a build older than the call) the caller falls back to
// interface-filter.ts, by the local address.

import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { getSystemErrorMap } from "node:util";
import { datagramAddon, type DatagramAddon, type AddonUnavailable } from "../daemon/unix-datagram.js";

export type DeviceSocket =
  /** Bound on the interface, not yet listening. */
  | { readonly kind: "bound"; readonly fd: number }
  /** No addon with the call: filter by local address instead. */
  | { readonly kind: "unavailable" }
  /** SO_BINDTODEVICE refused: EPERM (no CAP_NET_RAW on a kernel before 5.7), ENODEV, ENOPROTOOPT; the reference logs it and serves every interface. */
  | { readonly kind: "refused"; readonly code: "EPERM" | "ENODEV" | "ENOPROTOOPT" };

/**
 * Makes the socket for `device` on `address` (as --address: "" for any of
 * the family `ipv6` says, a host name looked up as Node's listen does) and
 * `port`. A failing bind(2) (EADDRINUSE...) is thrown as Node's listen would.
 */
export async function bindOnDevice(
  device: string, address: string, port: number, ipv6: boolean,
  addon: DatagramAddon | AddonUnavailable = datagramAddon(),
): Promise<DeviceSocket> {
  if ("unavailable" in addon || addon.bindOnDevice === undefined) return { kind: "unavailable" };
  let host = address !== "" ? address : ipv6 ? "::" : "0.0.0.0";
  // A zone names the interface, which SO_BINDTODEVICE names already (the C side takes its index).
  host = host.replace(/%.*$/, "");
  if (isIP(host) === 0) host = (await lookup(host)).address;
  const result = addon.bindOnDevice(host, port, device);
  if (result >= 0) return { kind: "bound", fd: result };
  const [code, words] = getSystemErrorMap().get(result) ?? [`errno ${-result}`, "unknown error"];
  if (code === "EPERM" || code === "ENODEV" || code === "ENOPROTOOPT") return { kind: "refused", code };
  throw Object.assign(new Error(`listen ${code}: ${words} ${host}:${port}`), { code });
}
