// Announcing through avahi-daemon, driven by a stand-in (fake-avahi.ts) on
// a private bus: the calls the reference's AvahiService makes, and the
// paths a real avahi-daemon seldom takes (a refused service, a failed or
// colliding group, a server collision, renames running out, a lost bus).
// Nothing here touches a network.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { startPrivateBus, type PrivateBus } from "./helpers/private-bus.js";
import { FakeAvahi, GROUP_PATH } from "./helpers/fake-avahi.js";
import { startAnnouncement, type Announcement, type AnnouncementOptions } from "../src/main/zeroconf/announce.js";
import type { Logger } from "../src/main/daemon/log.js";
import { DBUS_DAEMON } from "./helpers/dbus.js";
import { MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { BIN_MANDOS, REPO } from "./helpers/server.js";
import { zeroconfLines } from "./helpers/avahi-host.js";
import { spawn } from "node:child_process";
import { chmodSync, cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const skip = missing(DBUS_DAEMON);
/** Within this test file's range (21600-21699). */
const PORTS = [21601, 21602] as const;

const buses: PrivateBus[] = [];
const fakes: FakeAvahi[] = [];
const announcements: Announcement[] = [];
after(async () => {
  for (const a of announcements) await a.stop();
  for (const f of fakes) f.close();
  for (const b of buses) await b.stop();
});

interface Setup {
  bus: PrivateBus;
  avahi: FakeAvahi;
  announcement: Announcement;
  logs: string[];
  renames: string[];
}

async function setup(script: Parameters<typeof FakeAvahi.start>[1] = {}, over: Partial<AnnouncementOptions> = {}): Promise<Setup> {
  const bus = await startPrivateBus();
  buses.push(bus);
  const avahi = await FakeAvahi.start(bus.address, script);
  fakes.push(avahi);
  const logs: string[] = [];
  const renames: string[] = [];
  const at = (level: string) => (message: string): void => { logs.push(`${level}: ${message}`); };
  const logger: Logger = { debug: at("DEBUG"), info: at("INFO"), warning: at("WARNING"), error: at("ERROR"), critical: at("CRITICAL") };
  const announcement = await startAnnouncement({
    name: "Mandos", port: 4711, ipv6: true, logger, systemBus: bus.address, onRename: (name) => { renames.push(name); logs.push(`RENAMED: ${name}`); }, ...over,
  });
  announcements.push(announcement);
  return { bus, avahi, announcement, logs, renames };
}

test("the reference's calls: EntryGroupNew, AddService over IPv6 on every interface, Commit; Free at stop", { skip }, async () => {
  const { avahi, announcement, logs } = await setup();
  assert.equal(await announcement.established, true);
  assert.deepEqual(avahi.calls.map((c) => c.member), ["GetState", "EntryGroupNew", "AddService", "Commit"]);
  // interface IF_UNSPEC, protocol INET6, flags, name, type, domain, host, port, TXT.
  assert.deepEqual(avahi.calls[2]!.body, [-1, 1, 0, "Mandos", "_mandos._tcp", "", "", 4711, []]);
  assert.equal(avahi.calls[2]!.path, GROUP_PATH);
  assert.ok(logs.includes("DEBUG: Zeroconf: announcing through avahi-daemon"), logs.join("\n"));
  await announcement.stop();
  assert.deepEqual(avahi.calls.at(-1), { member: "Free", path: GROUP_PATH, body: [] });
});

test("--interface by its index, --no-ipv6 as PROTO_INET", { skip }, async () => {
  const { avahi, announcement } = await setup({}, { interface: "eth9", ipv6: false });
  assert.equal(await announcement.established, true);
  assert.deepEqual(avahi.calls.find((c) => c.member === "GetNetworkInterfaceIndexByName")?.body, ["eth9"]);
  assert.deepEqual(avahi.calls.find((c) => c.member === "AddService")?.body.slice(0, 4), [7, 0, 0, "Mandos"]);
});

test("a refused service is logged, and nothing else stops", { skip }, async () => {
  const { announcement, logs } = await setup({ addServiceError: () => "org.freedesktop.Avahi.InvalidPortError" });
  assert.equal(await announcement.established, false);
  assert.ok(logs.includes("ERROR: Zeroconf: D-Bus Exception: org.freedesktop.Avahi.InvalidPortError: Refused by the script"), logs.join("\n"));
  await announcement.stop();
});

test("a failed group is logged as the reference does", { skip }, async () => {
  const { avahi, announcement, logs } = await setup({ establish: false });
  await avahi.waitForCall("Commit");
  avahi.groupState(4, "Not permitted");
  assert.equal(await announcement.established, false);
  assert.ok(logs.includes("CRITICAL: Avahi: Error in group state changed Not permitted"), logs.join("\n"));
});

test("a server collision frees the group with the reference's error; running again adds it anew", { skip }, async () => {
  const { avahi, announcement, logs } = await setup();
  assert.equal(await announcement.established, true);
  avahi.serverState(3, "Local name collision");
  await avahi.waitForCall("Free");
  avahi.serverState(2);
  await avahi.waitForCall("EntryGroupNew", 2);
  await avahi.waitForCall("Commit", 2);
  assert.ok(logs.includes("ERROR: Zeroconf server name collision: dbus.String('Local name collision')"), logs.join("\n"));
  assert.deepEqual(avahi.calls.map((c) => c.member), ["GetState", "EntryGroupNew", "AddService", "Commit", "Free", "EntryGroupNew", "AddService", "Commit"]);
});

test("a collision on the network renames through Avahi, resets and adds again; the syslog tag follows", { skip }, async () => {
  const { avahi, announcement, logs, renames } = await setup({ establish: false });
  await avahi.waitForCall("Commit");
  avahi.groupState(3);
  await avahi.waitForCall("Commit", 2);
  // Handled after the rename, once that is done.
  avahi.groupState(2);
  assert.equal(await announcement.established, true);
  assert.deepEqual(avahi.calls.map((c) => c.member), ["GetState", "EntryGroupNew", "AddService", "Commit", "GetAlternativeServiceName", "Reset", "AddService", "Commit"]);
  assert.equal(avahi.calls[6]!.body[3], "Mandos #2");
  assert.equal(announcement.name, "Mandos #2");
  assert.deepEqual(renames, ["Mandos #2"]);
  // The syslog tag changes once the new name is added, as the reference's
  // AvahiServiceToSyslog.rename sets it after rename() returns.
  assert.deepEqual(logs.filter((l) => !l.startsWith("DEBUG: Avahi") && l !== "DEBUG: Zeroconf service established."), [
    "DEBUG: Zeroconf: announcing through avahi-daemon",
    "DEBUG: Adding Zeroconf service 'Mandos' of type '_mandos._tcp' ...",
    "INFO: Zeroconf service name collision.",
    "INFO: Changing Zeroconf service name to 'Mandos #2' ...",
    "DEBUG: Adding Zeroconf service 'Mandos #2' of type '_mandos._tcp' ...",
    "RENAMED: Mandos #2",
  ]);
});

test("renames run out: logged, and the announcement gives up", { skip }, async () => {
  const { announcement, logs } = await setup({ addServiceError: () => "org.freedesktop.Avahi.CollisionError" }, { maxRenames: 2 });
  assert.equal(await announcement.established, false);
  assert.deepEqual(logs.filter((l) => !l.startsWith("DEBUG")), [
    "INFO: Local Zeroconf service name collision.",
    "INFO: Changing Zeroconf service name to 'Mandos #2' ...",
    "INFO: Local Zeroconf service name collision.",
    "INFO: Changing Zeroconf service name to 'Mandos #3' ...",
    "INFO: Local Zeroconf service name collision.",
    "CRITICAL: No suitable Zeroconf service name found after 2 retries; not announcing.",
  ]);
});

test("a lost system bus is connected to again, and the service added again", { skip }, async () => {
  const { bus, announcement, logs } = await setup();
  assert.equal(await announcement.established, true);
  await bus.restart(); // as `systemctl restart dbus`: avahi-daemon starts again too
  const again = await FakeAvahi.start(bus.address, { starting: true });
  fakes.push(again);
  await again.waitForCall("Commit");
  assert.ok(logs.some((l) => l.startsWith("WARNING: Zeroconf: lost the system bus")), logs.join("\n"));
  assert.ok(logs.includes("INFO: Zeroconf: back on the system bus"), logs.join("\n"));
});

test("no avahi-daemon on the bus: our own responder", { skip }, async () => {
  const bus = await startPrivateBus();
  buses.push(bus);
  const logs: string[] = [];
  const at = (level: string) => (message: string): void => { logs.push(`${level}: ${message}`); };
  const logger: Logger = { debug: at("DEBUG"), info: at("INFO"), warning: at("WARNING"), error: at("ERROR"), critical: at("CRITICAL") };
  // A responder that never announces: we only look at which was chosen.
  const announcement = await startAnnouncement({
    name: "Mandos", port: 4711, ipv6: false, logger, systemBus: bus.address, addressedLinks: () => [], watch: () => () => {},
    getResponder: () => { throw new Error("ciao asked for"); },
  });
  announcements.push(announcement);
  assert.ok(logs.includes("DEBUG: Zeroconf: no avahi-daemon on the system bus"), logs.join("\n"));
  assert.ok(logs.includes("ERROR: Zeroconf: cannot announce: ciao asked for"), logs.join("\n"));
});

/** Runs `command` as a Mandos server on `bus` until `drive` is done; its log. */
async function serverLog(command: string, argv: readonly string[], bus: string, drive: () => Promise<void>): Promise<string> {
  const child = spawn(command, argv, { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let text = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => { text += chunk; });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => { text += chunk; });
  // "close": after the last of its output.
  const exited = new Promise((resolve) => child.once("close", resolve));
  try {
    await drive();
  } finally {
    child.kill("SIGTERM");
    await exited;
    try { process.kill(-child.pid!, "SIGKILL"); } catch { /* the group is gone */ }
  }
  return text;
}

test("every server and group state, and the renames, logged as the reference logs them", { skip: skip || missing(MANDOS_REFERENCE) }, async () => {
  const logs: string[] = [];
  for (const [index, reference] of [true, false].entries()) {
    const bus = await startPrivateBus();
    buses.push(bus);
    const avahi = await FakeAvahi.start(bus.address, { establish: false });
    fakes.push(avahi);
    const conf = mkdtempSync(join(tmpdir(), "mandos-ts-avahi-"));
    chmodSync(conf, 0o755);
    cpSync(join(REPO, "example"), conf, { recursive: true });
    const args = [
      "--foreground", "--debug", "--no-dbus", "--no-restore", "--address", "::1", "--port", String(PORTS[index]),
      "--configdir", conf, "--statedir", conf,
    ];
    const [command, argv] = reference ? [MANDOS_REFERENCE, args] : [process.execPath, [BIN_MANDOS, ...args]];
    try {
      logs.push(await serverLog(command, argv, bus.address, async () => {
        await avahi.waitForCall("Commit");
        avahi.groupState(4, "Not permitted");
        avahi.serverState(3, "Local name collision");
        await avahi.waitForCall("Free");
        avahi.serverState(2);
        await avahi.waitForCall("Commit", 2);
        avahi.groupState(3);
        await avahi.waitForCall("Commit", 3);
        avahi.serverState(0);
        avahi.serverState(4, "boom");
        avahi.serverState(7, "odd");
        // Running again: once the group is new, every state before was handled.
        avahi.serverState(2);
        await avahi.waitForCall("EntryGroupNew", 3);
      }));
    } finally {
      rmSync(conf, { recursive: true, force: true });
    }
  }
  const [theirs, ours] = logs.map((log) => zeroconfLines(log));
  assert.ok(theirs!.includes("DEBUG: Unknown state: dbus.Int32(7): dbus.String('odd')"), logs[0]);
  assert.deepEqual(ours, theirs);
});
