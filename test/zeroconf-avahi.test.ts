// Our announcement as Avahi sees it: the announcer runs in one network
// namespace, avahi-daemon and avahi-browse in another, joined by a veth pair
// (docs/ZEROCONF.md, "Tests"). Nothing here multicasts outside those namespaces.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseBrowseLine, type BrowsedService } from "./helpers/avahi-browse.js";
import {
  announcerEnv, AVAHI_BROWSE, AVAHI_DAEMON, DBUS_DAEMON, NetnsPair, netnsUnavailable, waitForLine,
} from "./helpers/netns.js";

const ANNOUNCER = fileURLToPath(new URL("./helpers/zeroconf-announcer.js", import.meta.url));
const skip = netnsUnavailable(AVAHI_DAEMON, AVAHI_BROWSE, DBUS_DAEMON);

describe("Zeroconf announcement seen by Avahi", { skip }, () => {
  let pair: NetnsPair;
  let browser: ChildProcess;
  const seen: BrowsedService[] = [];

  const waiters = new Set<() => void>();

  /** Resolves with the first browse event (past or future) that `match` accepts. */
  const browsed = (match: (s: BrowsedService) => boolean, ms = 20_000): Promise<BrowsedService> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = seen.find(match);
        if (!found) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`avahi-browse did not report it within ${ms} ms; seen: ${JSON.stringify(seen)}`));
      }, ms);
      waiters.add(check);
      check();
    });

  /** `iface` as --interface; without it, every interface. */
  const announce = (name: string, port: number, iface?: string, ipv6 = true): ChildProcess =>
    pair.spawn(pair.server, process.execPath, [ANNOUNCER, JSON.stringify({ name, port, interface: iface, ipv6 })], {
      env: announcerEnv(),
    });

  before(async () => {
    pair = NetnsPair.create();
    const bus = await pair.startSystemBus();
    await pair.startAvahi(pair.client, bus);
    // -r resolves, -p parsable; without -t it keeps reporting, goodbyes included.
    browser = pair.spawn(pair.client, AVAHI_BROWSE, ["-rp", "_mandos._tcp"], {
      env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus },
    });
    let partial = "";
    browser.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        const service = parseBrowseLine(line);
        if (service) seen.push(service);
      }
      for (const check of [...waiters]) check();
    });
  });

  after(async () => {
    await pair?.cleanup();
  });

  let first: ChildProcess;

  test("announces _mandos._tcp under the service name, with our port and address, on every interface", async () => {
    // No --interface: the veth end is "NAME@ifN" in `ip -o link`, which ciao's own choice would skip.
    first = announce("Mandos", 4711);
    assert.equal(await waitForLine(first, (l) => /^(ESTABLISHED|FAILED)/.test(l), 20_000), "ESTABLISHED Mandos");
    const service = await browsed((s) => s.event === "=" && s.name === "Mandos" && s.protocol === "IPv4");
    assert.equal(service.type, "_mandos._tcp");
    assert.equal(service.port, 4711);
    assert.equal(service.address, pair.server.address);
    assert.equal(service.interface, pair.client.link);
    // And over IPv6, the reference's default through Avahi. (Avahi resolves
    // the host name of a service browsed over IPv6 to any address it has,
    // the IPv4 one included; the IPv6-only test below pins the fe80:: one.)
    const v6 = await browsed((s) => s.event === "=" && s.name === "Mandos" && s.protocol === "IPv6");
    assert.equal(v6.port, 4711);
    assert.match(v6.address ?? "", /^(fe80:|169\.254\.77\.1$)/i);
  });

  test("a second server with the same name is renamed 'Mandos #2', and both are browsable", async () => {
    const second = announce("Mandos", 4712, pair.server.link);
    const output: string[] = [];
    const established = await waitForLine(second, (l) => {
      output.push(l);
      return /^(ESTABLISHED|FAILED)/.test(l);
    }, 30_000);
    assert.equal(established, "ESTABLISHED Mandos #2");
    assert.ok(output.includes("INFO: Zeroconf service name collision."), output.join("\n"));
    assert.ok(output.includes("INFO: Changing Zeroconf service name to 'Mandos #2' ..."), output.join("\n"));
    const renamed = await browsed((s) => s.event === "=" && s.name === "Mandos #2");
    assert.equal(renamed.port, 4712);
    const original = await browsed((s) => s.event === "=" && s.name === "Mandos");
    assert.equal(original.port, 4711);
    assert.ok(!seen.some((s) => s.name.includes("(2)")), "ciao's own form 'Mandos (2)' was never announced");

    // stop(): goodbye packets withdraw the renamed service at once.
    second.kill("SIGTERM");
    await waitForLine(second, (l) => l === "STOPPED", 10_000);
    const removed = await browsed((s) => s.event === "-" && s.name === "Mandos #2");
    assert.equal(removed.type, "_mandos._tcp");
  });

  test("the first server's goodbye withdraws it too", async () => {
    first.kill("SIGTERM");
    await waitForLine(first, (l) => l === "STOPPED", 10_000);
    await browsed((s) => s.event === "-" && s.name === "Mandos");
  });

  test("a link that gains an address after start-up is announced on (re-announcement)", async () => {
    pair.ip(pair.server, "addr", "del", `${pair.server.address}/16`, "dev", pair.server.link);
    const late = announce("Mandos late", 4713, pair.server.link);
    try {
      await waitForLine(late, (l) => l.startsWith("DEBUG: Adding Zeroconf service"), 10_000);
      assert.ok(!seen.some((s) => s.name === "Mandos late" && s.protocol === "IPv4"));
      pair.ip(pair.server, "addr", "add", `${pair.server.address}/16`, "dev", pair.server.link);
      // ciao alone never would (it has no socket there); we notice within
      // INTERFACE_POLL_MS (15 s) and start it afresh.
      const service = await browsed((s) => s.event === "=" && s.name === "Mandos late" && s.protocol === "IPv4", 40_000);
      assert.equal(service.port, 4713);
      assert.equal(service.address, pair.server.address);
    } finally {
      late.kill("SIGTERM");
    }
  });

  test("--no-ipv6: announced over IPv4 only", async () => {
    const v4 = announce("Mandos v4", 4715, pair.server.link, false);
    try {
      assert.equal(await waitForLine(v4, (l) => /^(ESTABLISHED|FAILED)/.test(l), 20_000), "ESTABLISHED Mandos v4");
      await browsed((s) => s.event === "=" && s.name === "Mandos v4" && s.protocol === "IPv4");
      // Avahi asks over both protocols at once; give an IPv6 answer time to show.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      assert.ok(!seen.some((s) => s.name === "Mandos v4" && s.protocol === "IPv6"), JSON.stringify(seen.filter((s) => s.name === "Mandos v4")));
    } finally {
      v4.kill("SIGTERM");
    }
  });

  test("a link with IPv6 link-local only is announced on over IPv6, with its fe80:: address", async () => {
    pair.ip(pair.server, "addr", "del", `${pair.server.address}/16`, "dev", pair.server.link);
    const v6 = announce("Mandos v6", 4714, pair.server.link);
    try {
      assert.equal(await waitForLine(v6, (l) => /^(ESTABLISHED|FAILED)/.test(l), 30_000), "ESTABLISHED Mandos v6");
      const service = await browsed((s) => s.event === "=" && s.name === "Mandos v6" && s.protocol === "IPv6", 30_000);
      assert.equal(service.port, 4714);
      assert.match(service.address ?? "", /^fe80:/i);
      assert.equal(service.interface, pair.client.link);
    } finally {
      v6.kill("SIGTERM");
      pair.ip(pair.server, "addr", "add", `${pair.server.address}/16`, "dev", pair.server.link);
    }
  });
});
