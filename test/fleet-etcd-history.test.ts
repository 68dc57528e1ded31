// What etcd holds is not always what the servers wrote (docs/ETCD.md
// "What etcd holds, and when it is wrong"): a value written by hand that a
// property cannot hold, one stamped ahead of the servers' clocks, a
// history replaced under running servers (its data lost, or a snapshot
// restored), and two servers seeding an empty prefix at once. In process,
// against a real one-member etcd; each case failed before its rule.

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { setTimeout as sleep } from "node:timers/promises";
import { systemClock, type Clock } from "../src/main/clock.js";
import type { Logger } from "../src/main/daemon/log.js";
import { FleetState, FLUSH_MS, MAX_AHEAD_MS } from "../src/main/fleet/fleet-state.js";
import { clientKey, decodeValue, encodeValue, MAX_SHARED_TIME_MS, type Stamped } from "../src/main/fleet/layout.js";
import type { ClientSettings } from "../src/main/clients/settings.js";
import { clientSettings } from "./helpers/clients.js";
import { etcdMissing, plainEtcdSettings, startEtcdCluster, type EtcdCluster } from "./helpers/etcd.js";
import { keptLogger } from "./helpers/log-watch.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const HOUR = 3_600_000;
const NAMES = ["c0", "c1", "c2"];

interface Server {
  readonly registry: ClientRegistry;
  readonly fleet: FleetState;
  readonly log: string[];
  stop(): Promise<void>;
}

function server(cluster: EtcdCluster, prefix: string, id: string, over: Partial<ClientSettings> = {}, clock: Clock = systemClock): Server {
  const logger: Logger & { lines: string[] } = keptLogger();
  const registry = new ClientRegistry(NAMES.map((n) => clientSettings(n, { timeout: HOUR, interval: HOUR, ...over })), { logger });
  const fleet = new FleetState(plainEtcdSettings(cluster, prefix), { registry, logger, clock, serverId: id });
  return {
    registry, fleet, log: logger.lines,
    async stop() {
      await fleet.stop();
      registry.stop();
    },
  };
}

/** A one-member etcd of the test's own, a client of it, and one server on `prefix`, all stopped after the test. */
async function oneServer(t: TestContext, prefix: string): Promise<{ cluster: EtcdCluster; etcd: Etcd3; a: Server }> {
  const cluster = await startEtcdCluster(1);
  const etcd = new Etcd3({ hosts: cluster.endpoints.split(",") });
  const a = server(cluster, prefix, "server-a");
  t.after(async () => {
    await a.stop();
    etcd.close();
    await cluster.stop();
  });
  await a.fleet.start();
  return { cluster, etcd, a };
}

async function stored(etcd: Etcd3, prefix: string, name: string, property: Parameters<typeof clientKey>[2]): Promise<Stamped | null> {
  const text = await etcd.get(clientKey(prefix, name, property)).string();
  return text === null ? null : decodeValue(text);
}

test("values a property cannot hold are ignored with a warning, and the server goes on", { skip }, async (t) => {
  const { cluster, etcd, a } = await oneServer(t, "/bad-values/");
  const c0 = a.registry.get("c0")!;
  const before = { timeout: c0.timeout, interval: c0.interval, host: c0.host, expires: c0.expires?.getTime(), status: c0.lastCheckerStatus };
  const at = Date.now();
  const bad: Array<[Parameters<typeof clientKey>[2], unknown]> = [
    ["Timeout", 1e300], // the D-Bus "t" and every expiry made from it: stopped each server
    ["Interval", -1],
    ["ApprovalDelay", 1.5],
    ["Expires", MAX_SHARED_TIME_MS + 1], // past what the state file can write, after a timeout is added
    ["LastCheckedOK", 8.65e15],
    ["LastCheckerStatus", 70_000], // D-Bus's int16
    ["Host", "a\u0000b"], // no D-Bus string holds a NUL
    ["Enabled", "yes"],
  ];
  for (const [property, value] of bad) await etcd.put(clientKey("/bad-values/", "c0", property)).value(JSON.stringify({ value, at, by: "by-hand" }));
  // No stamped value at all: not JSON, and JSON of another shape (said once a minute, for each kind of key).
  await etcd.put(clientKey("/bad-values/", "c0", "ExtendedTimeout")).value("not json {{{");
  await etcd.put("/bad-values/approvals/c0").value("[1,2,3]");
  // A good value after them: once it is here, the bad ones have been read.
  await etcd.put(clientKey("/bad-values/", "c0", "Checker")).value(encodeValue({ value: "true", at, by: "by-hand" }));
  await eventually(() => a.registry.get("c0")!.checker === "true", { what: "the good value after the bad ones" });

  const after = a.registry.get("c0")!;
  assert.deepEqual(
    { timeout: after.timeout, interval: after.interval, host: after.host, expires: after.expires?.getTime(), status: after.lastCheckerStatus },
    before,
    "a value out of range was taken",
  );
  assert.equal(after.enabled, true);
  assert.equal(after.approvalDelay, clientSettings("c0").approvalDelay);
  for (const [property] of bad) {
    assert.ok(a.log.some((l) => l.startsWith(`WARNING: etcd's clients/c0/${property} holds `) && l.endsWith("not a value it may hold: ignored")), `no warning for ${property}: ${a.log.join("\n")}`);
  }
  for (const key of ["clients/c0/ExtendedTimeout", "approvals/c0"]) {
    assert.ok(a.log.includes(`WARNING: etcd's ${key} holds no value this server can read (JSON with value, at and by): ignored`), `no warning for ${key}: ${a.log.join("\n")}`);
  }
  assert.equal(after.extendedTimeout, clientSettings("c0").extendedTimeout);

  // The same values at a server's start: read, ignored, and the server serves on.
  const b = server(cluster, "/bad-values/", "server-b");
  try {
    await b.fleet.start();
    assert.equal(b.fleet.degraded, false);
    assert.equal(b.registry.get("c0")!.timeout, HOUR);
    assert.equal(b.registry.get("c0")!.checker, "true");
  } finally {
    await b.stop();
  }
});

test("a value stamped ahead of this server's clock is ignored, and a change made after it wins", { skip }, async (t) => {
  const { etcd, a } = await oneServer(t, "/ahead/");
  const year = 365 * 24 * HOUR;
  await etcd.put(clientKey("/ahead/", "c0", "Enabled")).value(encodeValue({ value: false, at: Date.now() + year, by: "skewed" }));
  // Just within the margin: taken (clocks a few seconds apart still agree).
  await etcd.put(clientKey("/ahead/", "c1", "Host")).value(encodeValue({ value: "near.example.org", at: Date.now() + MAX_AHEAD_MS / 2, by: "near" }));
  await eventually(() => a.registry.get("c1")!.host === "near.example.org", { what: "the value stamped a little ahead" });
  await eventually(() => a.log.some((l) => /^WARNING: etcd's clients\/c0\/Enabled is stamped \d+ s ahead of this server's clock by skewed: ignored/.test(l)), {
    what: "the warning about the clock ahead", context: () => a.log.join("\n"),
  });
  assert.equal(a.registry.get("c0")!.enabled, true, "a value from a year ahead was taken");

  // An operator's change made now is applied and goes to etcd over it.
  a.registry.disable("c0");
  await eventually(async () => (await stored(etcd, "/ahead/", "c0", "Enabled"))?.by === "server-a", { what: "the operator's change in etcd" });
  assert.equal(a.registry.get("c0")!.enabled, false);
});

/** The system's clock, `skew.ms` ahead (negative: behind), which the test moves. */
function skewedClock(skew: { ms: number }): Clock {
  return { ...systemClock, now: () => Date.now() + skew.ms };
}

test("a change made while this server's clock was ahead is not written again over a change made since, once the clock is put right", { skip }, async (t) => {
  const prefix = "/own-ahead/";
  const { cluster, etcd, a } = await oneServer(t, prefix);
  const skew = { ms: HOUR };
  const c = server(cluster, prefix, "server-c", {}, skewedClock(skew));
  t.after(() => c.stop());
  await c.fleet.start();
  c.registry.disable("c0");
  await eventually(async () => (await stored(etcd, prefix, "c0", "Enabled"))?.by === "server-c", { what: "C's disable in etcd" });
  assert.equal(a.registry.get("c0")!.enabled, true, "A took a change stamped an hour ahead");
  skew.ms = 0;
  // The operator enables c0 again through another server, after C's clock was put right.
  await etcd.put(clientKey(prefix, "c0", "Enabled")).value(encodeValue({ value: true, at: Date.now(), by: "server-b" }));
  await eventually(() => c.registry.get("c0")!.enabled, { what: "C takes the enable made since" });
  await sleep(10 * FLUSH_MS);
  // Before: C wrote its disable, an hour ahead, over it; the others took it an hour later.
  assert.deepEqual(await stored(etcd, prefix, "c0", "Enabled").then((v) => [v?.value, v?.by]), [true, "server-b"], "C wrote its disable again");
  assert.ok(
    c.log.some((l) => /^WARNING: this server's clients\/c0\/Enabled is stamped \d+ s ahead of its clock \(was the clock ahead\?\): the value that came in since is taken over it/.test(l)),
    `no warning on C:\n${c.log.join("\n")}`,
  );
});

test("a change stamped ahead of this server's clock is stamped now for the state file, and one the state file kept so is dropped", () => {
  const logger: Logger & { lines: string[] } = keptLogger();
  const registry = new ClientRegistry(NAMES.map((n) => clientSettings(n, { timeout: HOUR, interval: HOUR })), { logger });
  // No etcd answers there: every change stays unsent.
  const settings = { endpoints: ["http://[::1]:43999"], prefix: "/unsent-ahead/", ca: null, cert: null, key: null, user: null, passwordFile: null };
  const skew = { ms: HOUR };
  const fleet = new FleetState(settings, { registry, logger, clock: skewedClock(skew), serverId: "server-c" });
  try {
    registry.disable("c0");
    skew.ms = 0;
    const [change] = fleet.unsent().filter((u) => u.key === "clients/c0/Enabled");
    // Before: kept an hour ahead, and written back after a restart over every change made since.
    assert.ok(change && change.value === false && change.at <= Date.now(), `c0's unsent disable: ${JSON.stringify(change)}`);
  } finally {
    void fleet.stop();
    registry.stop();
  }

  const restored = new FleetState(settings, {
    registry, logger, clock: systemClock, serverId: "server-c2",
    unsent: [{ key: "clients/c1/Enabled", value: false, at: Date.now() + HOUR, by: "server-c" }],
  });
  try {
    assert.deepEqual(restored.unsent(), [], "a change stamped an hour ahead, kept from the state file");
    assert.ok(logger.lines.some((l) => /^WARNING: the state file's unsent clients\/c1\/Enabled is stamped \d+ s ahead of this server's clock/.test(l)), logger.lines.join("\n"));
  } finally {
    void restored.stop();
  }
});

test("a change of another server's that comes stamped before this server's newer one is written over, with a warning", { skip }, async (t) => {
  const prefix = "/behind/";
  const { etcd, a } = await oneServer(t, prefix);
  a.registry.disable("c1");
  await eventually(async () => (await stored(etcd, prefix, "c1", "Enabled"))?.by === "server-a", { what: "A's disable in etcd" });
  // A server whose clock is an hour behind enables c1 now.
  await etcd.put(clientKey(prefix, "c1", "Enabled")).value(encodeValue({ value: true, at: Date.now() - HOUR, by: "server-b" }));
  await eventually(async () => (await stored(etcd, prefix, "c1", "Enabled"))?.by === "server-a", { what: "A's disable written back" });
  assert.equal(a.registry.get("c1")!.enabled, false);
  // Before: silently.
  assert.ok(
    a.log.some((l) => /^WARNING: etcd's clients\/c1\/Enabled from server-b is stamped 3600 s before the value this server has \(by server-a\), and came after it: written back over it/.test(l)),
    `no warning on A:\n${a.log.join("\n")}`,
  );
});

test("etcd's data lost under two running servers: each still sees the other's changes after, and what etcd lost is written back", { skip }, async (t) => {
  const cluster = await startEtcdCluster(1);
  const hosts = cluster.endpoints.split(",");
  const prefix = "/history/";
  const a = server(cluster, prefix, "server-a");
  const b = server(cluster, prefix, "server-b");
  t.after(async () => {
    await a.stop();
    await b.stop();
    await cluster.stop();
  });
  await a.fleet.start();
  await b.fleet.start();
  {
    const etcd = new Etcd3({ hosts });
    // A history longer than the new one will be for a while: a watch
    // resuming after it would miss everything the new one holds.
    for (let i = 0; i < 300; i++) await etcd.put("/elsewhere/counter").value(String(i));
    etcd.close();
  }
  a.registry.disable("c0");
  await eventually(() => b.registry.get("c0")!.enabled === false, { what: "B sees c0 disabled through A" });

  await cluster.wipe();
  // B's change after the loss reaches A.
  await eventually(() => !a.fleet.degraded && !b.fleet.degraded, { what: "both servers back", timeoutMs: 30_000 });
  b.registry.disable("c1");
  await eventually(() => a.registry.get("c1")!.enabled === false, { what: "A sees c1 disabled through B after etcd lost its data", timeoutMs: 10_000 });
  // And etcd has again the disable it lost.
  const etcd = new Etcd3({ hosts });
  try {
    // As it was made (A's, with its time): not a seed any value would override.
    await eventually(async () => {
      const v = await stored(etcd, prefix, "c0", "Enabled");
      return v?.value === false && v.by === "server-a" && v.at > 0;
    }, { what: "c0's disable written back to etcd as A made it" });
  } finally {
    etcd.close();
  }
  assert.ok(
    [...a.log, ...b.log].some((l) => /^WARNING: etcd's history went back \(revision \d+, this server had seen \d+\)/.test(l)),
    "no warning that etcd's history went back",
  );
});

test("a lone server writes back what etcd lost as it was made, not as a seed any value would override", { skip }, async (t) => {
  const cluster = await startEtcdCluster(1);
  const prefix = "/history-alone/";
  const a = server(cluster, prefix, "server-a");
  t.after(async () => {
    await a.stop();
    await cluster.stop();
  });
  await a.fleet.start();
  a.registry.disable("c0");
  const hosts = cluster.endpoints.split(",");
  let etcd = new Etcd3({ hosts });
  await eventually(async () => (await stored(etcd, prefix, "c0", "Enabled"))?.value === false, { what: "the disable in etcd" });
  const made = (await stored(etcd, prefix, "c0", "Enabled"))!;
  etcd.close();
  await cluster.wipe();
  etcd = new Etcd3({ hosts });
  try {
    await eventually(async () => (await stored(etcd, prefix, "c0", "Enabled"))?.at === made.at, {
      what: "c0's disable back in etcd with its time", timeoutMs: 30_000,
    });
  } finally {
    etcd.close();
  }
});

test("two servers seeding an empty prefix at once agree on every value, and etcd holds it", { skip }, async (t) => {
  const cluster = await startEtcdCluster(1);
  const etcd = new Etcd3({ hosts: cluster.endpoints.split(",") });
  t.after(async () => {
    etcd.close();
    await cluster.stop();
  });
  for (let trial = 0; trial < 8; trial++) {
    const prefix = `/seed-race-${trial}/`;
    const a = server(cluster, prefix, "server-a", { timeout: 5 * 60_000 });
    const b = server(cluster, prefix, "server-b", { timeout: 7 * 60_000 });
    try {
      await Promise.all([a.fleet.start(), b.fleet.start()]);
      // One seed wins, the same on both servers and in etcd: server-b's
      // when both seeded (the names break the tie), or whichever landed
      // before the other server read or seeded.
      await eventually(async () => {
        for (const name of NAMES) {
          const inEtcd = (await stored(etcd, prefix, name, "Timeout"))?.value;
          const onA = a.registry.get(name)!.timeout;
          if (onA !== b.registry.get(name)!.timeout || inEtcd !== onA) return false;
        }
        return true;
      }, {
        what: `trial ${trial}: both servers and etcd on one timeout`,
        context: () => NAMES.map((n) => `${n}: A ${a.registry.get(n)!.timeout}, B ${b.registry.get(n)!.timeout}`).join("; "),
      });
    } finally {
      await a.stop();
      await b.stop();
    }
  }
});
