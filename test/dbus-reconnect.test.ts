// The system bus restarted under a running server (`systemctl restart
// dbus`, a bus daemon that died): the Python reference exits there (libdbus
// exits on disconnect) and waits for systemd; ours serves on and gets back
// on the bus by itself, so that mandos-ctl works again with nothing
// restarted (src/main/dbus/service.ts, KeptDbus).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { DBUS_DAEMON, DBUS_SEND, dumpJson, makeFleetRoot, mandosCtl, startOurServer, startPrivateBus, type Fleet, type PrivateBus } from "./helpers/dbus.js";
import { MANDOS_CLIENT, MANDOS_CTL, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { runMandosClient, type RunningServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const skip = missing(DBUS_DAEMON, DBUS_SEND, MANDOS_CTL, MANDOS_CLIENT, MANDOS_KEYGEN);

let root = "";
let fleet: Fleet;
let bus: PrivateBus;
let server: RunningServer;

before(async () => {
  if (skip) return;
  ({ root, fleet } = makeFleetRoot("mandos-ts-dbus-again-"));
  bus = await startPrivateBus();
  server = await startOurServer(fleet.conf, join(root, "state"), bus.address);
});

after(async () => {
  await server?.stop();
  await bus?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

test("after the system bus restarts, the server is back on it by itself and mandos-ctl works again", { skip, timeout: 60_000 }, async () => {
  const names = fleet.clients.map((c) => c.name).sort();
  assert.deepEqual(Object.keys(await dumpJson(bus.address)).sort(), names);

  await bus.restart();
  await server.waitForLog(/ERROR: Lost the D-Bus system bus \(.*\); D-Bus interface off until it is back/, 10_000);
  await server.waitForLog(/INFO: Back on the D-Bus system bus as :1\.\d+: D-Bus interface on/, 20_000);
  // Every client exported again, and a change made through it reaches the registry.
  const listed = await eventually(async () => {
    const dump = await dumpJson(bus.address).catch(() => null);
    return dump !== null && Object.keys(dump).length === names.length && dump;
  }, { what: "every client listed by mandos-ctl again", timeoutMs: 10_000 });
  assert.deepEqual(Object.keys(listed).sort(), names);
  const alpha = fleet.clients.find((c) => c.name === "alpha")!;
  const disabled = await mandosCtl(bus.address, "--disable", "alpha");
  assert.equal(disabled.code, 0, disabled.stderr);
  assert.equal((await dumpJson(bus.address, "alpha")).alpha?.Enabled, false);
  const refused = await runMandosClient(alpha.dir, "::1", server.port, 8_000);
  assert.notEqual(refused.stdout.toString("utf8"), alpha.password, "a client disabled through the bus got its secret");
  const enabled = await mandosCtl(bus.address, "--enable", "alpha");
  assert.equal(enabled.code, 0, enabled.stderr);
  const served = await runMandosClient(alpha.dir, "::1", server.port);
  assert.equal(served.code, 0, served.stderr);
  assert.equal(served.stdout.toString("utf8"), alpha.password);
});
