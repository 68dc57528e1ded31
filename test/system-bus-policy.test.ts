// The D-Bus service against a bus that behaves like Debian's system bus:
// with our policy file (contrib/dbus/mandos-ts.conf) the server, dropped to
// _mandos, owns its names and root's mandos-ctl controls it, while any
// other user is refused; without the policy file, with the name owned by
// another server, without a bus at all, or with --no-dbus, the server logs
// why (at the reference's level) and serves the real mandos-client all the
// same.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPrivateBus, SYSTEM_DEFAULT_POLICY, type PrivateBus } from "./helpers/private-bus.js";
import { makeClients, makeKeySet, type TestClient } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_CTL, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { REPO, run, runMandosClient, startServer, type RunningServer } from "./helpers/server.js";

const POLICY_FILE = join(REPO, "contrib/dbus/mandos-ts.conf");
const isRoot = process.getuid?.() === 0;
const skip = missing(MANDOS_CLIENT, MANDOS_KEYGEN, MANDOS_CTL, "/usr/bin/dbus-daemon", "/usr/bin/dbus-send", "/usr/bin/setpriv") ||
  (isRoot ? false : "needs root: the server drops to _mandos and the test acts as another user");

let root = "";
let conf = "";
let clients: TestClient[] = [];

function serverArgs(state: string): string[] {
  mkdirSync(join(root, state), { recursive: true });
  return ["--configdir", conf, "--statedir", join(root, state), "--no-restore", "--port", "0", "--address", "::1"];
}

async function dbusSend(address: string, asNobody: boolean, ...args: string[]) {
  const command = asNobody ? "/usr/bin/setpriv" : "/usr/bin/dbus-send";
  const prefix = asNobody ? ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/dbus-send"] : [];
  return run(command, [...prefix, "--system", "--print-reply", ...args], 10_000, { DBUS_SYSTEM_BUS_ADDRESS: address });
}

describe("the system bus policy and a missing bus", { skip }, () => {
  before(() => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-buspolicy-"));
    makeKeySet(join(root, "pgp"));
    clients = makeClients(root, join(root, "pgp"), 1);
    conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n\n${clients[0]!.section}\n`, { mode: 0o600 });
  });

  after(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  describe("with contrib/dbus/mandos-ts.conf on a default-deny bus", () => {
    let bus: PrivateBus;
    let server: RunningServer;

    before(async () => {
      bus = await startPrivateBus({ policy: SYSTEM_DEFAULT_POLICY, include: [POLICY_FILE] });
      server = await startServer(serverArgs("state-policy"), { DBUS_SYSTEM_BUS_ADDRESS: bus.address }, { dbus: true });
      await server.waitForLog(/D-Bus: serving se\.recompile\.Mandos/);
    });

    after(async () => {
      await server?.stop();
      await bus?.stop();
    });

    test("the server, running as _mandos, owns both names", async () => {
      for (const name of ["se.recompile.Mandos", "se.bsnet.fukt.Mandos"]) {
        const r = await dbusSend(bus.address, false, "--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.NameHasOwner", `string:${name}`);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout.toString(), /boolean true/, name);
      }
    });

    test("root's mandos-ctl lists and changes the client", async () => {
      const env = { DBUS_SYSTEM_BUS_ADDRESS: bus.address };
      const name = clients[0]!.name;
      assert.equal((await run(MANDOS_CTL, ["--disable", name], 30_000, env)).code, 0);
      const dump = await run(MANDOS_CTL, ["--dump-json"], 30_000, env);
      assert.equal(dump.code, 0, dump.stderr);
      const parsed = JSON.parse(dump.stdout.toString()) as Record<string, { Enabled: boolean }>;
      assert.equal(parsed[name]?.Enabled, false);
    });

    test("another user may not call its methods", async () => {
      const r = await dbusSend(bus.address, true, "--dest=se.recompile.Mandos", "/", "org.freedesktop.DBus.ObjectManager.GetManagedObjects");
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /AccessDenied/);
      const set = await dbusSend(
        bus.address, true, "--dest=se.recompile.Mandos", `/clients/${clients[0]!.name}`,
        "org.freedesktop.DBus.Properties.Set", "string:se.recompile.Mandos.Client", "string:Enabled", "variant:boolean:true",
      );
      assert.match(set.stderr, /AccessDenied/);
    });
  });

  /** The server logged `line` and still gives the real client its password. */
  const logsAndServesOn = async (server: RunningServer, line: RegExp): Promise<void> => {
    await server.waitForLog(line);
    const c = clients[0]!;
    const result = await runMandosClient(c.dir, "::1", server.port);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString("utf8"), c.password);
  };

  // The reference logs these at ERROR (syslog err), which operators alert on.
  test("without the policy file the name is refused: an error, and the server serves on", async () => {
    const bus = await startPrivateBus({ policy: SYSTEM_DEFAULT_POLICY });
    const server = await startServer(serverArgs("state-nopolicy"), { DBUS_SYSTEM_BUS_ADDRESS: bus.address }, { dbus: true });
    try {
      await logsAndServesOn(server, /ERROR: Disabling D-Bus: .*AccessDenied/);
    } finally {
      await server.stop();
      await bus.stop();
    }
  });

  test("with the name owned by another server: an error, and the second server serves on", async () => {
    const bus = await startPrivateBus();
    const env = { DBUS_SYSTEM_BUS_ADDRESS: bus.address };
    const first = await startServer(serverArgs("state-owner"), env, { dbus: true });
    try {
      await first.waitForLog(/D-Bus: serving se\.recompile\.Mandos/);
      const second = await startServer(serverArgs("state-second"), env, { dbus: true });
      try {
        await logsAndServesOn(second, /ERROR: Disabling D-Bus: the bus name se\.recompile\.Mandos is taken/);
      } finally {
        await second.stop();
      }
    } finally {
      await first.stop();
      await bus.stop();
    }
  });

  test("without a reachable system bus: a warning, and the server serves on", async () => {
    const address = `unix:path=${join(root, "no-such-bus")}`;
    const server = await startServer(serverArgs("state-nobus"), { DBUS_SYSTEM_BUS_ADDRESS: address }, { dbus: true });
    try {
      await logsAndServesOn(server, /WARNING: Disabling D-Bus: cannot connect/);
    } finally {
      await server.stop();
    }
  });

  // The reference fails to start without a bus; ours serves, and gets on
  // the bus once it answers (a server started before dbus, a bus frozen).
  test("a system bus that does not answer at start-up: the server serves on, and gets on the bus once it answers", async () => {
    const bus = await startPrivateBus();
    bus.pause();
    const server = await startServer(serverArgs("state-frozen"), { DBUS_SYSTEM_BUS_ADDRESS: bus.address }, { dbus: true });
    try {
      await logsAndServesOn(server, /WARNING: Disabling D-Bus: .*no answer .*within \d+ ms; trying again in 1 s, then less often$/m);
      assert.doesNotMatch(server.log(), /D-Bus: serving/);
      bus.resume();
      await server.waitForLog(/INFO: Back on the D-Bus system bus as :1\.\d+: D-Bus interface on/, 40_000);
      const dump = await run(MANDOS_CTL, ["--dump-json"], 30_000, { DBUS_SYSTEM_BUS_ADDRESS: bus.address });
      assert.equal(dump.code, 0, dump.stderr);
      assert.deepEqual(Object.keys(JSON.parse(dump.stdout.toString()) as object), clients.map((c) => c.name));
    } finally {
      await server.stop();
      bus.resume();
      await bus.stop();
    }
  });

  test("without a reachable system bus, and with --no-dbus, checkers start (they wait for D-Bus only while it is tried)", async () => {
    // A configuration of its own, with a one-second interval.
    const fast = join(root, "conf-fast");
    mkdirSync(fast, { recursive: true });
    writeFileSync(join(fast, "mandos.conf"), "[DEFAULT]\n");
    writeFileSync(join(fast, "clients.conf"), `[DEFAULT]\nchecker = true\ninterval = PT1S\n\n${clients[0]!.section}\n`, { mode: 0o600 });
    const args = (state: string): string[] => serverArgs(state).map((a) => (a === conf ? fast : a));
    const noBus = { DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${join(root, "no-such-bus")}` };
    for (const server of [await startServer(args("state-nobus-checker"), noBus, { dbus: true }), await startServer(args("state-nodbus-checker"), noBus)]) {
      try {
        await server.waitForLog(/Checker for \S+ succeeded/, 10_000);
      } finally {
        await server.stop();
      }
    }
  });

  test("--no-dbus never touches the bus", async () => {
    const bus = await startPrivateBus();
    const server = await startServer(serverArgs("state-nodbus"), { DBUS_SYSTEM_BUS_ADDRESS: bus.address });
    try {
      const c = clients[0]!;
      const result = await runMandosClient(c.dir, "::1", server.port);
      assert.equal(result.code, 0, result.stderr);
      const r = await dbusSend(bus.address, false, "--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.NameHasOwner", "string:se.recompile.Mandos");
      assert.match(r.stdout.toString(), /boolean false/);
      assert.doesNotMatch(server.log(), /D-Bus/);
    } finally {
      await server.stop();
      await bus.stop();
    }
  });
});
