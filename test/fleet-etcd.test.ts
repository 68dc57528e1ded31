// Several servers, one registry (issue 15): two of our servers, each on its
// own private D-Bus bus, share client state through a real 3-member etcd
// cluster. The real mandos-ctl changes a client through one server and the
// real mandos-client asks the other; the real mandos-monitor watches one
// server while a client waits on the other.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  DBUS_DAEMON, DBUS_SEND, MANDOS_MONITOR, TMUX, dumpJson, freePort, makeFleetRoot, mandosCtl, startPrivateBus, waitForBusName, type Fleet, type PrivateBus,
} from "./helpers/dbus.js";
import { etcdMissing, serversRegistered, startEtcdCluster, type EtcdCluster } from "./helpers/etcd.js";
import { MANDOS_CLIENT, MANDOS_CTL, missing } from "./helpers/peers.js";
import { BIN_MANDOS, run, runMandosClient, startServer, type RunningServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const PREFIX = "/mandos-test/";
/** The promise: a change made on one server takes effect on every server within a second. */
const PROPAGATION_MS = 1_000;

interface Member {
  readonly bus: PrivateBus;
  readonly server: RunningServer;
}

async function startMember(conf: string, state: string, endpoints: string): Promise<Member> {
  const bus = await startPrivateBus();
  mkdirSync(state, { recursive: true });
  const server = await startServer(
    ["--configdir", conf, "--statedir", state, "--no-restore", "--port", "0", "--address", "::1", "--etcd", endpoints, "--etcd_prefix", PREFIX],
    { DBUS_SYSTEM_BUS_ADDRESS: bus.address },
    { dbus: true },
  );
  await waitForBusName(bus.address);
  return { bus, server };
}

/** Polls `mandos-ctl --dump-json` on `m` until `pred` holds for `client`; resolves to the milliseconds it took. */
async function seen(m: Member, client: string, pred: (p: Record<string, unknown>) => boolean, ms = 10_000): Promise<number> {
  const start = Date.now();
  let last: Record<string, unknown> = {};
  while (Date.now() - start < ms) {
    last = (await dumpJson(m.bus.address, client))[client] ?? {};
    if (pred(last)) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`${client} did not reach the expected state within ${ms} ms: ${JSON.stringify(last)}`);
}

/** Polls `pred` every 200 ms until it holds or `ms` pass (the caller asserts). */
async function until(pred: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
}

/** The real mandos-monitor on `bus`, in a tmux session of its own (socket under `dir`); `pane` reads its screen. */
async function startMonitor(bus: string, dir: string): Promise<{ pane(): Promise<string>; stop(): Promise<void> }> {
  const socket = join(dir, "tmux.sock");
  const kill = (): void => {
    try {
      execFileSync(TMUX, ["-S", socket, "kill-server"], { stdio: "ignore" });
    } catch {
      // already gone
    }
  };
  process.once("exit", kill);
  const started = await run(TMUX, ["-S", socket, "-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "50", "-e", `DBUS_SYSTEM_BUS_ADDRESS=${bus}`, MANDOS_MONITOR], 10_000);
  assert.equal(started.code, 0, started.stderr.toString());
  return {
    pane: async () => (await run(TMUX, ["-S", socket, "capture-pane", "-p", "-S", "-200"], 5_000)).stdout.toString("utf8"),
    stop: async () => {
      process.off("exit", kill);
      await run(TMUX, ["-S", socket, "kill-server"], 5_000);
    },
  };
}

/** Polls `read` until it matches `pattern`; fails naming what it waited for. */
function untilText(read: () => Promise<string>, pattern: RegExp, what: string, ms = 20_000): Promise<string> {
  let text = "";
  return eventually(async () => {
    text = await read();
    return pattern.test(text) && text;
  }, { what: `${what}: ${pattern}`, timeoutMs: ms, context: () => text });
}

const skip = etcdMissing() || missing(DBUS_DAEMON, DBUS_SEND, MANDOS_CTL, MANDOS_CLIENT, MANDOS_MONITOR, TMUX);

describe("two servers sharing one registry through etcd", { skip }, () => {
  let cluster: EtcdCluster;
  let root = "";
  let fleet: Fleet;
  let a: Member;
  let b: Member;
  const client = (name: string) => fleet.clients.find((c) => c.name === name)!;
  const ctl = async (m: Member, ...args: string[]): Promise<void> => {
    const r = await mandosCtl(m.bus.address, ...args);
    assert.equal(r.code, 0, `mandos-ctl ${args.join(" ")}: ${r.stderr}`);
  };

  before(async () => {
    cluster = await startEtcdCluster(3, {}, { partitionable: true });
    ({ root, fleet } = makeFleetRoot("mandos-ts-fleet-"));
    a = await startMember(fleet.conf, join(root, "state-a"), cluster.endpoints);
    b = await startMember(fleet.conf, join(root, "state-b"), cluster.endpoints);
  });

  after(async () => {
    for (const m of [a, b]) {
      await m?.server.stop();
      await m?.bus.stop();
    }
    await cluster?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("a client disabled through server A is refused by server B, and enabled through B is served by A", async () => {
    const before = await runMandosClient(client("alpha").dir, "::1", b.server.port, 30_000);
    assert.equal(before.stdout.toString(), client("alpha").password, "B did not serve alpha to begin with");

    await ctl(a, "--disable", "alpha");
    const took = await seen(b, "alpha", (p) => p.Enabled === false);
    assert.ok(took <= PROPAGATION_MS + 500, `B saw the disable after ${took} ms`);
    const refused = await runMandosClient(client("alpha").dir, "::1", b.server.port, 3_000);
    assert.equal(refused.stdout.length, 0, "B gave a secret to a client disabled through A");

    await ctl(b, "--enable", "alpha");
    await seen(a, "alpha", (p) => p.Enabled === true);
    const served = await runMandosClient(client("alpha").dir, "::1", a.server.port, 30_000);
    assert.equal(served.stdout.toString(), client("alpha").password);
  });

  test("a setting changed at run time through B shows on A", async () => {
    await ctl(b, "--host", "moved.example.org", "delta");
    await seen(a, "delta", (p) => p.Host === "moved.example.org");
  });

  test("a client waiting for approval on server B shows on A (mandos-monitor, ApprovalPending), and an approval given through A releases it", async () => {
    const charlie = client("charlie");
    const monitor = await startMonitor(a.bus.address, root);
    try {
      await untilText(monitor.pane, /^charlie: /m, "mandos-monitor on A lists the clients");
      // charlie waits up to 30 s and is denied by default (writeFleet).
      const waiting = runMandosClient(charlie.dir, "::1", b.server.port, 40_000);
      await seen(a, "charlie", (p) => p.ApprovalPending === true, 20_000);
      // NeedApproval on A's bus, as mandos-monitor prints it; and its countdown, from the shared LastApprovalRequest.
      await untilText(monitor.pane, /Client charlie needs approval within 30\.0+ seconds/, "mandos-monitor on A");
      await untilText(monitor.pane, /^charlie: Denial in 0:00:\d\d\. \(a\)pprove\?$/m, "mandos-monitor on A");
      assert.doesNotMatch(a.server.log(), /Sending secret to charlie|Client charlie needs approval/, "charlie talked to A, not only to B");
      await ctl(a, "--approve", "charlie");
      const got = await waiting;
      assert.equal(got.stdout.toString(), charlie.password, "the client waiting on B was not released by A's approval");
      // Nothing waits any more, anywhere.
      await seen(a, "charlie", (p) => p.ApprovalPending === false);
      await seen(b, "charlie", (p) => p.ApprovalPending === false);
    } finally {
      await monitor.stop();
    }
  });

  test("--check reports whether etcd is reachable", async () => {
    const check = async (endpoints: string): Promise<string> =>
      (await run(process.execPath, [BIN_MANDOS, "--check", "--configdir", fleet.conf, "--etcd", endpoints], 30_000)).stdout.toString("utf8");
    assert.match(await check(cluster.endpoints), /^ok: etcd reachable at /m);
    const dead = `http://[::1]:${await freePort()}`;
    assert.match(await check(dead), /^WARNING: etcd unreachable at /m);
  });

  test("no secret is stored in etcd", async () => {
    const dump = await cluster.dump(PREFIX);
    assert.match(dump, /clients\/alpha\/Enabled/, "the shared state is not under the prefix");
    assert.doesNotMatch(dump, /Secret/);
    for (const c of fleet.clients) {
      assert.ok(!dump.includes(c.password), `${c.name}'s password is in etcd`);
      const secret = /^secret\s*=\s*(.+)$/m.exec(c.section)?.[1]?.trim();
      if (secret) assert.ok(!dump.includes(secret.slice(0, 40)), `${c.name}'s sealed secret is in etcd`);
    }
  });

  test("losing one etcd member of three changes nothing visible", async () => {
    const gone = cluster.members[0]!;
    const from = { a: a.server.log().length, b: b.server.log().length };
    await gone.stop();
    try {
      await ctl(a, "--disable", "alpha");
      await seen(b, "alpha", (p) => p.Enabled === false);
      const refused = await runMandosClient(client("alpha").dir, "::1", b.server.port, 3_000);
      assert.equal(refused.stdout.length, 0, "B gave a secret to a client disabled through A with one etcd member down");
      const served = await runMandosClient(client("delta").dir, "::1", b.server.port, 30_000);
      assert.equal(served.stdout.toString(), client("delta").password, "B did not serve a known client with one etcd member down");
      await ctl(b, "--enable", "alpha");
      await seen(a, "alpha", (p) => p.Enabled === true);
      for (const [name, m, at] of [["A", a, from.a], ["B", b, from.b]] as const) {
        assert.doesNotMatch(m.server.log().slice(at), /DEGRADED|lease lost/, `server ${name} noticed one etcd member of three going`);
      }
    } finally {
      gone.start();
      await cluster.healthy();
    }
  });

  /** For `ms`, alpha disabled through A and seen on B, enabled through B and seen on A, again and again. */
  async function changesGoBothWays(ms: number): Promise<void> {
    const since = Date.now();
    while (Date.now() - since < ms) {
      await ctl(a, "--disable", "alpha");
      await seen(b, "alpha", (p) => p.Enabled === false);
      await ctl(b, "--enable", "alpha");
      await seen(a, "alpha", (p) => p.Enabled === true);
    }
  }

  test("one etcd member of three hanging (a frozen host, a partition that drops every packet): changes still go both ways, clients are served, both servers stay registered", async () => {
    // Each member hangs in turn, so that the one carrying a server's watch
    // and lease streams is among them, and so is the leader; each for
    // longer than a lease lives unrenewed (LEASE_TTL_S, twice). A server
    // may still say DEGRADED when an election takes more than 5 s (a
    // starved machine), or lose its lease and register again (docs/ETCD.md
    // "When etcd is down"); the changes must arrive all the same.
    for (const hung of cluster.members) {
      const others = cluster.members.filter((m) => m !== hung);
      hung.freeze(true);
      try {
        await changesGoBothWays(12_000);
        const served = await runMandosClient(client("delta").dir, "::1", b.server.port, 30_000);
        assert.equal(served.stdout.toString(), client("delta").password, `B did not serve a known client with ${hung.name} hung`);
        await serversRegistered(cluster, PREFIX, 2, others);
        await cluster.healthy(others);
      } finally {
        hung.freeze(false);
        await cluster.healthy();
      }
    }
  });

  test("one etcd member of three cut off from the others (alive, answering, leaderless): changes still go both ways, both servers stay registered", async () => {
    // Each member in turn, so that the one carrying a server's watch is
    // among them: a watch on a member with no leader brings no change
    // unless it asks for a leader (hasleader).
    for (const cut of cluster.members) {
      const others = cluster.members.filter((m) => m !== cut);
      await cut.partition(true);
      try {
        await changesGoBothWays(12_000);
        await serversRegistered(cluster, PREFIX, 2, others);
        await cluster.healthy(others);
      } finally {
        await cut.partition(false);
        await cluster.healthy();
      }
    }
  });

  test("a checker failure found by the server running the checker disables the client everywhere", async () => {
    const failing = /Starting checker 'false' for alpha/;
    const from = { a: a.server.log().length, b: b.server.log().length };
    // Checked every second and OK, then a short timeout (moved from the last success), then a checker that fails.
    await ctl(a, "--interval", "PT1S", "alpha");
    await seen(b, "alpha", (p) => p.Interval === 1_000 && typeof p.LastCheckedOK === "string" && Date.now() - Date.parse(`${p.LastCheckedOK}Z`) < 3_000);
    await ctl(a, "--timeout", "PT6S", "alpha");
    await ctl(a, "--checker", "false", "alpha");
    await seen(b, "alpha", (p) => p.Checker === "false" && p.Timeout === 6_000);
    await until(() => failing.test(a.server.log().slice(from.a)) || failing.test(b.server.log().slice(from.b)), 20_000);
    const aRan = failing.test(a.server.log().slice(from.a));
    const [owner, other, otherFrom] = aRan ? [a, b, from.b] : [b, a, from.a];
    assert.ok(aRan || failing.test(b.server.log().slice(from.b)), "no server ran alpha's failing checker");

    await seen(owner, "alpha", (p) => p.Enabled === false, 20_000);
    await seen(other, "alpha", (p) => p.Enabled === false && p.LastCheckerStatus === 1);
    assert.doesNotMatch(other.server.log().slice(otherFrom), failing, "both servers ran alpha's checker");
    const refused = await runMandosClient(client("alpha").dir, "::1", other.server.port, 3_000);
    assert.equal(refused.stdout.length, 0, "the server that did not run the checker gave alpha its secret");

    await ctl(a, "--checker", "true", "alpha");
    await ctl(a, "--timeout", "PT5M", "alpha");
    await ctl(a, "--interval", "PT2M", "alpha");
    await ctl(a, "--enable", "alpha");
    await seen(b, "alpha", (p) => p.Enabled === true && p.Checker === "true");
  });

  test("with etcd down the servers serve what they know, refuse what they know disabled, and converge when it returns", async () => {
    await ctl(a, "--disable", "alpha");
    await seen(b, "alpha", (p) => p.Enabled === false);
    for (const m of cluster.members) await m.stop();
    // A change on each side during the outage; B's is the newer one of the same setting.
    await ctl(a, "--host", "during-outage-a.example.org", "delta");
    await ctl(b, "--host", "during-outage-b.example.org", "delta");
    await a.server.waitForLog(/DEGRADED/, 20_000);
    await b.server.waitForLog(/DEGRADED/, 20_000);
    const refused = await runMandosClient(client("alpha").dir, "::1", b.server.port, 3_000);
    assert.equal(refused.stdout.length, 0, "B gave a secret to a client known disabled while etcd was down");
    const served = await runMandosClient(client("delta").dir, "::1", a.server.port, 30_000);
    assert.equal(served.stdout.toString(), client("delta").password, "A did not serve a known client while etcd was down");
    await ctl(a, "--enable", "alpha");

    for (const m of cluster.members) m.start();
    await cluster.healthy();
    await seen(b, "alpha", (p) => p.Enabled === true, 30_000);
    await seen(a, "delta", (p) => p.Host === "during-outage-b.example.org", 30_000);
    await seen(b, "delta", (p) => p.Host === "during-outage-b.example.org", 30_000);
    // The watch is back too, not only the reads: a change after the outage
    // reaches the other server as promptly as before it.
    await ctl(a, "--host", "after-outage.example.org", "delta");
    const took = await seen(b, "delta", (p) => p.Host === "after-outage.example.org", 5_000);
    assert.ok(took <= PROPAGATION_MS + 2_000, `B saw a change made after the outage only after ${took} ms`);
  });

  test("one server runs each client's checker, and another takes it over when that server is killed; its pending requests go with it", async () => {
    const started = /Starting checker 'true' for alpha/g;
    const count = (m: Member, from: number): number => m.server.log().slice(from).match(started)?.length ?? 0;
    await ctl(a, "--interval", "PT1S", "alpha");
    await seen(b, "alpha", (p) => p.Interval === 1_000);
    const from = { a: a.server.log().length, b: b.server.log().length };
    await until(() => count(a, from.a) + count(b, from.b) >= 4, 20_000);
    const counts = { a: count(a, from.a), b: count(b, from.b) };
    assert.ok(counts.a + counts.b >= 4, `alpha's checker did not run every second: ${JSON.stringify(counts)}`);
    assert.ok(counts.a === 0 || counts.b === 0, `both servers ran alpha's checker: ${JSON.stringify(counts)}`);

    const [owner, survivor] = counts.a > 0 ? [a, b] : [b, a];
    // A client waiting for approval on the server about to die shows as waiting on the other...
    const waiting = runMandosClient(client("charlie").dir, "::1", owner.server.port, 20_000);
    await seen(survivor, "charlie", (p) => p.ApprovalPending === true, 20_000);
    const survivorFrom = survivor.server.log().length;
    owner.server.process.kill("SIGKILL");
    await until(() => count(survivor, survivorFrom) > 0, 20_000);
    assert.ok(count(survivor, survivorFrom) > 0, "no surviving server took over alpha's checker");
    // ...and no longer once its server's lease has run out.
    await seen(survivor, "charlie", (p) => p.ApprovalPending === false, 20_000);
    await waiting;
  });
});
