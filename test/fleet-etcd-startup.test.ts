// Start-up of a fleet server against an edited clients.conf (issue 15,
// docs/ETCD.md "Start-up"): the state file's rule, applied across the
// fleet. A clients.conf value edited since this server's last save wins,
// on every server; an unedited one yields to the fleet's run-time value;
// two servers whose clients.conf differ, neither edited since its last
// save, both show the fleet's value. Two of our servers, each with its own
// clients.conf, state directory and private D-Bus bus, on a real 3-member
// etcd; the real mandos-ctl reads and changes them. And a client added by
// SIGHUP takes the fleet's state, not a fresh one: the real mandos-client
// is refused a client disabled through the other server.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DBUS_DAEMON, DBUS_SEND, makeFleetRoot, mandosCtl, openToServerUser, startPrivateBus, waitForBusName, propertiesSeen, type Fleet, type PrivateBus } from "./helpers/dbus.js";
import { etcdMissing, startEtcdCluster, type EtcdCluster } from "./helpers/etcd.js";
import { MANDOS_CLIENT, MANDOS_CTL, missing } from "./helpers/peers.js";
import { runMandosClient, startServer, type RunningServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const PREFIX = "/mandos-startup-test/";

interface Member {
  readonly conf: string;
  readonly state: string;
  readonly bus: PrivateBus;
  server: RunningServer;
}

/** Our server on `m`'s bus, restoring its state file (no --no-restore), sharing through etcd. */
async function startOn(m: Omit<Member, "server">, endpoints: string): Promise<RunningServer> {
  const server = await startServer(
    ["--configdir", m.conf, "--statedir", m.state, "--port", "0", "--address", "::1", "--etcd", endpoints, "--etcd_prefix", PREFIX],
    { DBUS_SYSTEM_BUS_ADDRESS: m.bus.address },
    { dbus: true },
  );
  await waitForBusName(m.bus.address);
  return server;
}

/** Waits until `client`'s properties on `m` satisfy `pred`; fails with the last ones seen. */
function seen(m: Member, client: string, pred: (p: Record<string, unknown>) => boolean, what: string): Promise<void> {
  return propertiesSeen(m.bus.address, client, pred, what);
}

/** Sets `option` of section `client` in `conf`'s clients.conf (the fleet's sections have no such line yet, or one to replace). */
function editClientsConf(conf: string, client: string, option: string, value: string): void {
  const path = join(conf, "clients.conf");
  const text = readFileSync(path, "utf8");
  const start = text.indexOf(`[${client}]`);
  assert.ok(start >= 0, `no section ${client}`);
  const next = text.indexOf("\n[", start + 1);
  const end = next < 0 ? text.length : next;
  const section = text.slice(start, end).replace(new RegExp(`^${option}\\s*=.*\\n`, "m"), "");
  writeFileSync(path, text.slice(0, start) + section.replace(/\n*$/, `\n${option} = ${value}\n`) + text.slice(end));
}

/** `text` (a clients.conf) without section `client`. */
function withoutSection(text: string, client: string): string {
  const start = text.indexOf(`[${client}]`);
  assert.ok(start >= 0, `no section ${client}`);
  const next = text.indexOf("\n[", start + 1);
  return text.slice(0, start) + (next < 0 ? "" : text.slice(next + 1));
}

const skip = etcdMissing() || missing(DBUS_DAEMON, DBUS_SEND, MANDOS_CTL, MANDOS_CLIENT);

describe("a fleet server starting with an edited clients.conf", { skip }, () => {
  let cluster: EtcdCluster;
  let root = "";
  let fleet: Fleet;
  const members: Member[] = [];

  before(async () => {
    cluster = await startEtcdCluster();
    const made = makeFleetRoot("mandos-ts-fleet-startup-");
    root = made.root;
    fleet = made.fleet;
    for (const name of ["a", "b"]) {
      const conf = join(root, `conf-${name}`);
      const state = join(root, `state-${name}`);
      cpSync(made.fleet.conf, conf, { recursive: true });
      mkdirSync(state);
      openToServerUser(conf, state);
      const bus = await startPrivateBus();
      const m = { conf, state, bus };
      members.push({ ...m, server: await startOn(m, cluster.endpoints) });
    }
  });

  after(async () => {
    for (const m of members) {
      await m.server.stop();
      await m.bus.stop();
    }
    await cluster?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("an edited value wins on every server; an unedited one yields to the fleet's; differing unedited files show the fleet's", async () => {
    const [a, b] = members as [Member, Member];
    // A run-time change through B, seen by A.
    const r = await mandosCtl(b.bus.address, "--host", "runtime.example.org", "delta");
    assert.equal(r.code, 0, r.stderr);
    await seen(a, "delta", (p) => p.Host === "runtime.example.org", "B's run-time Host on A");

    // A stops (saving its state), its clients.conf is edited, and it starts again.
    assert.equal(await a.server.stop(), 0);
    editClientsConf(a.conf, "delta", "timeout", "PT7M");
    a.server = await startOn(a, cluster.endpoints);
    await a.server.waitForLog(/delta: Timeout edited in clients\.conf since the last save/);
    for (const [name, m] of [["A", a], ["B", b]] as const) {
      await seen(m, "delta", (p) => p.Timeout === 7 * 60_000, `the edited Timeout on ${name}`);
      // Host was not edited in A's clients.conf: the fleet's run-time value stays, not the file's.
      await seen(m, "delta", (p) => p.Host === "runtime.example.org", `the fleet's Host on ${name}`);
    }

    // B's clients.conf still says PT5M, as at its last save: not an edit, so B keeps the fleet's.
    assert.equal(await b.server.stop(), 0);
    b.server = await startOn(b, cluster.endpoints);
    await seen(b, "delta", (p) => p.Timeout === 7 * 60_000 && p.Host === "runtime.example.org", "the fleet's values on B after its restart");
    assert.doesNotMatch(b.server.log(), /edited in clients\.conf/, "B took its unedited clients.conf for an edit");

    // An edit on B now wins over A's earlier one, on both.
    assert.equal(await b.server.stop(), 0);
    editClientsConf(b.conf, "delta", "timeout", "PT9M");
    b.server = await startOn(b, cluster.endpoints);
    for (const [name, m] of [["A", a], ["B", b]] as const) {
      await seen(m, "delta", (p) => p.Timeout === 9 * 60_000, `B's newer edit on ${name}`);
    }
  });
  test("a client added by SIGHUP takes the fleet's state: disabled through A, it stays refused by B", async () => {
    const [a, b] = members as [Member, Member];
    const alpha = fleet.clients.find((c) => c.name === "alpha")!;
    const path = join(b.conf, "clients.conf");
    const full = readFileSync(path, "utf8");
    writeFileSync(path, withoutSection(full, "alpha"));
    b.server.process.kill("SIGHUP");
    await b.server.waitForLog(/Reloaded clients\.conf: 0 added, 1 removed/);

    const r = await mandosCtl(a.bus.address, "--disable", "alpha");
    assert.equal(r.code, 0, r.stderr);
    await eventually(async () => /clients\/alpha\/Enabled\n\{"value":false/.test(await cluster.dump(PREFIX)), { what: "alpha disabled in etcd" });

    writeFileSync(path, full);
    b.server.process.kill("SIGHUP");
    await b.server.waitForLog(/Reloaded clients\.conf: 1 added \(\S+\), 0 removed/);
    await seen(b, "alpha", (p) => p.Enabled === false, "the fleet's Enabled on B for the client it added");
    const refused = await runMandosClient(alpha.dir, "::1", b.server.port, 3_000);
    assert.equal(refused.stdout.length, 0, "B gave a secret to a client it re-added from clients.conf while the fleet has it disabled");

    const enabled = await mandosCtl(a.bus.address, "--enable", "alpha");
    assert.equal(enabled.code, 0, enabled.stderr);
    await seen(b, "alpha", (p) => p.Enabled === true, "alpha enabled again on B");
  });

  test("a change made while etcd is down survives kill -9 and a restart before etcd returns, and reaches the fleet when it does", async () => {
    const [a, b] = members as [Member, Member];
    const statePath = join(a.state, "clients.json");
    for (const m of cluster.members) await m.stop();
    const r = await mandosCtl(a.bus.address, "--host", "changed-in-outage.example.org", "delta");
    assert.equal(r.code, 0, r.stderr);
    // Saved with the client state: the value, and that etcd has not got it yet.
    await eventually(() => {
      const saved = JSON.parse(readFileSync(statePath, "utf8")) as { fleetUnsent?: Array<{ key: string; value: unknown }> };
      return saved.fleetUnsent?.some((u) => u.key === "clients/delta/Host" && u.value === "changed-in-outage.example.org") === true;
    }, { what: "the unsent change in A's state file" });
    assert.doesNotMatch(readFileSync(statePath, "utf8"), /fleetUnsent[^\n]*secret/i, "a secret among the unsent changes");

    a.server.process.kill("SIGKILL");
    await new Promise((resolve) => a.server.process.once("exit", resolve));
    a.server = await startOn(a, cluster.endpoints);
    await a.server.waitForLog(/DEGRADED/);
    await a.server.waitForLog(/1 change\(s\) made before the restart are not yet in etcd/);
    await seen(a, "delta", (p) => p.Host === "changed-in-outage.example.org", "A's change on A after its restart, etcd still down");

    for (const m of cluster.members) m.start();
    await cluster.healthy();
    for (const [name, m] of [["B", b], ["A", a]] as const) {
      await seen(m, "delta", (p) => p.Host === "changed-in-outage.example.org", `A's change made before its restart, on ${name} once etcd is back`);
    }
    await eventually(async () => /clients\/delta\/Host\n\{"value":"changed-in-outage\.example\.org"/.test(await cluster.dump(PREFIX)), { what: "A's change in etcd" });
  });

  test("with etcd hung, SIGTERM still ends the server at once, its last change saved as unsent", async () => {
    const [a] = members as [Member, Member];
    const statePath = join(a.state, "clients.json");
    // Frozen, not stopped: connections stay open and nothing answers, as in a partition that drops packets.
    for (const m of cluster.members) m.freeze(true);
    try {
      const r = await mandosCtl(a.bus.address, "--host", "changed-while-hung.example.org", "delta");
      assert.equal(r.code, 0, r.stderr);
      // At once: within the saver's one second, so only the shutdown's own save can hold it.
      const code = await a.server.stop();
      assert.equal(code, 0, `the server did not exit by itself within the helper's 10 s grace:\n${a.server.log()}`);
      const saved = JSON.parse(readFileSync(statePath, "utf8")) as { fleetUnsent?: Array<{ key: string; value: unknown }> };
      assert.ok(
        saved.fleetUnsent?.some((u) => u.key === "clients/delta/Host" && u.value === "changed-while-hung.example.org"),
        "the change etcd did not take is not in the state file",
      );
    } finally {
      for (const m of cluster.members) m.freeze(false);
    }
  });
});
