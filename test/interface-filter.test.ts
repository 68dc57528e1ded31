// --interface (src/main/serve/interface-filter.ts): which local addresses a connection
// may reach, and when the interface's addresses are read again.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { NetworkInterfaceInfo } from "node:os";
import { InterfaceFilter } from "../src/main/serve/interface-filter.js";

function info(address: string, family: "IPv4" | "IPv6"): NetworkInterfaceInfo {
  const base = { address, netmask: "", mac: "00:00:00:00:00:00", internal: false, cidr: null };
  return family === "IPv4" ? { ...base, family } : { ...base, family, scopeid: 2 };
}

test("accepts only local addresses of the named interface, IPv4-mapped and zoned forms included", () => {
  const filter = new InterfaceFilter("veth0", () => ({
    veth0: [info("169.254.1.2", "IPv4"), info("fe80::1", "IPv6")],
    eth0: [info("192.0.2.2", "IPv4")],
  }));
  assert.equal(filter.accepts("::ffff:169.254.1.2"), true);
  assert.equal(filter.accepts("169.254.1.2"), true);
  assert.equal(filter.accepts("fe80::1%veth0"), true);
  assert.equal(filter.accepts("FE80::1"), true);
  assert.equal(filter.accepts("::ffff:192.0.2.2"), false);
  assert.equal(filter.accepts(undefined), false);
});

test("re-reads the interface's addresses after a second, not before", () => {
  let now = 0;
  let addresses = [info("10.0.0.1", "IPv4")];
  const filter = new InterfaceFilter("x", () => ({ x: addresses }), () => now);
  assert.equal(filter.accepts("10.0.0.1"), true);
  addresses = [info("10.0.0.2", "IPv4")];
  now = 500;
  assert.equal(filter.accepts("10.0.0.2"), false);
  now = 1_501;
  assert.equal(filter.accepts("10.0.0.2"), true);
  assert.equal(filter.accepts("10.0.0.1"), false);
});
