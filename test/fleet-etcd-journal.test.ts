// The fleet's journal (issue 15, docs/ETCD.md "What a wave costs etcd"):
// a flush of many client changes goes to etcd as one journal record, which
// the other servers read as puts of its keys at once, and which is folded
// into the clients/ keys once the wave is over; a dead server's records are
// read by the servers that start after it and folded by them, never over a
// newer value. And a fleet upgraded server by server (docs/ETCD.md): a
// record of a later format is read and left for a later server to fold;
// a later release's keys and fields beside ours are read for what reads,
// and none is written over or deleted through a wave and its fold. In
// process, against a real one-member etcd, on manual clocks: the flushes
// and folds happen when the test moves the clock.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { FleetState, FLUSH_MS, FOLD_QUIET_MS, JOURNAL_MIN_CHANGES, ORPHAN_MS } from "../src/main/fleet/fleet-state.js";
import { approvalKey, clientKey, decodeValue, encodeJournal, encodeValue, journalDir, journalKey, JOURNAL_VERSION, pendingKey } from "../src/main/fleet/layout.js";
import type { EtcdSettings } from "../src/main/fleet/settings.js";
import { clientSettings } from "./helpers/clients.js";
import { etcdMissing, startEtcdCluster, type EtcdCluster } from "./helpers/etcd.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const NAMES = Array.from({ length: JOURNAL_MIN_CHANGES * 2 }, (_, i) => `c${i}`);
const HOUR = 3_600_000;
let cluster: EtcdCluster;
let etcd: Etcd3;

before(async () => {
  if (skip) return;
  cluster = await startEtcdCluster(1);
  etcd = new Etcd3({ hosts: cluster.endpoints });
});
after(async () => {
  etcd?.close();
  await cluster?.stop();
});

function settings(prefix: string): EtcdSettings {
  return { endpoints: cluster.endpoints.split(","), prefix, ca: null, cert: null, key: null, user: null, passwordFile: null };
}

function server(prefix: string, clock: ManualClock, id: string): { registry: ClientRegistry; fleet: FleetState } {
  const registry = new ClientRegistry(NAMES.map((n) => clientSettings(n, { timeout: HOUR, interval: HOUR, extendedTimeout: 2 * HOUR })), { logger: silentLogger, clock });
  const fleet = new FleetState(settings(prefix), { registry, logger: silentLogger, clock, serverId: id });
  return { registry, fleet };
}

async function keys(prefix: string): Promise<string[]> {
  return etcd.getAll().prefix(prefix).keys();
}

async function stored(prefix: string, name: string): Promise<number | null> {
  const text = await etcd.get(clientKey(prefix, name, "Expires")).string();
  const value = text === null ? null : decodeValue(text);
  return value && typeof value.value === "number" ? value.value : null;
}

/**
 * Moves `clock` on by FOLD_QUIET_MS until `done`. A server arms its fold
 * when it has etcd's answer to its journal write, which may come after the
 * test already sees the record in etcd: advanced once, the manual clock
 * could pass before the timer is armed and never reach it (seen once in a
 * full run, the machine busy).
 */
async function quietUntil(clock: ManualClock, done: () => Promise<boolean>, what: string): Promise<void> {
  await eventually(async () => {
    clock.advance(FOLD_QUIET_MS);
    return done();
  }, { what });
}

test("a wave's changes go to etcd as one journal record, reach the other server at once, and are folded into the clients' keys after the wave", { skip }, async () => {
  const prefix = "/journal-wave/";
  const clockA = new ManualClock();
  const a = server(prefix, clockA, "server-a");
  const clockB = new ManualClock();
  const b = server(prefix, clockB, "server-b");
  try {
    await a.fleet.start();
    await b.fleet.start();
    // In step: a value stamped ahead of B's clock would be refused there (MAX_AHEAD_MS).
    clockA.advance(60_000);
    clockB.advance(60_000);
    for (const name of NAMES) a.registry.secretDelivered(name);
    const expires = clockA.now() + 2 * HOUR;
    assert.equal(a.registry.get("c0")!.expires?.getTime(), expires);
    clockA.advance(FLUSH_MS);

    const records = await eventually(async () => {
      const found = await keys(journalDir(prefix));
      return found.length > 0 && found;
    }, { what: "a journal record in etcd" });
    assert.deepEqual(records, [journalKey(prefix, "server-a", 0)], "one flush, one record");
    await eventually(() => NAMES.every((n) => b.registry.get(n)!.expires?.getTime() === expires), { what: "every new Expires on server B" });
    // Not folded yet: the clients' own keys still hold the seeds.
    for (const name of NAMES) assert.notEqual(await stored(prefix, name), expires, `${name} folded before the wave was over`);

    await quietUntil(clockA, async () => (await keys(journalDir(prefix))).length === 0, "the journal folded and deleted");
    for (const name of NAMES) assert.equal(await stored(prefix, name), expires, `${name}'s key after the fold`);
    // Server B saw the record go and keeps what it had.
    assert.ok(NAMES.every((n) => b.registry.get(n)!.expires?.getTime() === expires));
  } finally {
    await a.fleet.stop();
    await b.fleet.stop();
    a.registry.stop();
    b.registry.stop();
  }
});

test("a few changes go to their keys directly, with no journal", { skip }, async () => {
  const prefix = "/journal-few/";
  const clock = new ManualClock();
  const a = server(prefix, clock, "server-a");
  try {
    await a.fleet.start();
    clock.advance(60_000);
    for (const name of NAMES.slice(0, JOURNAL_MIN_CHANGES - 1)) a.registry.secretDelivered(name);
    const expires = clock.now() + 2 * HOUR;
    clock.advance(FLUSH_MS);
    await eventually(async () => (await stored(prefix, "c0")) === expires, { what: "c0's Expires in its key" });
    assert.deepEqual(await keys(journalDir(prefix)), []);
  } finally {
    await a.fleet.stop();
    a.registry.stop();
  }
});

test("a dead server's record is read by a server that starts after it, and folded by it without overwriting a newer value; a broken record is deleted", { skip }, async () => {
  const prefix = "/journal-dead/";
  const at = Date.UTC(2026, 0, 1);
  // What a server killed with -9 between its journal write and its fold leaves: a record, and no key under servers/.
  const changes = NAMES.map((name) => ({ key: clientKey(prefix, name, "Expires"), value: { value: at + HOUR, at, by: "dead-server" } }));
  await etcd.put(journalKey(prefix, "dead-server", 7)).value(encodeJournal(prefix, { at, by: "dead-server", changes }));
  // And a key under journal/ that is no record: nothing to take, deleted by the fold.
  await etcd.put(journalKey(prefix, "someone", 1)).value("not a record");
  // c1 changed after the dead server's record: its key is newer and must stay.
  await etcd.put(clientKey(prefix, "c1", "Expires")).value(encodeValue({ value: at + 5 * HOUR, at: at + 1_000, by: "other" }));

  const clock = new ManualClock(at + 2_000);
  const c = server(prefix, clock, "server-c");
  try {
    await c.fleet.start();
    assert.equal(c.registry.get("c0")!.expires?.getTime(), at + HOUR, "c0 takes the record's value at start");
    assert.equal(c.registry.get("c1")!.expires?.getTime(), at + 5 * HOUR, "c1 keeps the newer key's value");
    clock.advance(FOLD_QUIET_MS);
    await eventually(async () => (await keys(journalDir(prefix))).length === 0, { what: "the dead server's record and the broken one folded" });
    assert.equal(await stored(prefix, "c0"), at + HOUR);
    assert.equal(await stored(prefix, "c1"), at + 5 * HOUR, "the fold wrote an older value over a newer one");
  } finally {
    await c.fleet.stop();
    c.registry.stop();
  }
});

test("a record of a later journal format (a fleet upgraded server by server) is read, and left for a later server to fold", { skip }, async () => {
  const prefix = "/journal-later/";
  const at = Date.UTC(2026, 0, 1);
  // A later server, killed before its fold: its record says a later format, and carries a change we read.
  const record = JSON.parse(encodeJournal(prefix, {
    at, by: "later-server", changes: [{ key: clientKey(prefix, "c0", "Expires"), value: { value: at + HOUR, at, by: "later-server" } }],
  })) as Record<string, unknown>;
  const laterText = JSON.stringify({ ...record, v: JOURNAL_VERSION + 1, more: ["what a later server also writes"] });
  await etcd.put(journalKey(prefix, "later-server", 1)).value(laterText);
  // Beside it, a record of ours by the same dead server: folded, as the test above.
  const ours = encodeJournal(prefix, { at, by: "later-server", changes: [{ key: clientKey(prefix, "c1", "Expires"), value: { value: at + 2 * HOUR, at, by: "later-server" } }] });
  await etcd.put(journalKey(prefix, "later-server", 2)).value(ours);

  const clock = new ManualClock(at + 2_000);
  const c = server(prefix, clock, "server-c");
  try {
    await c.fleet.start();
    assert.equal(c.registry.get("c0")!.expires?.getTime(), at + HOUR, "the later record's change that reads is taken");
    clock.advance(FOLD_QUIET_MS);
    await eventually(async () => (await stored(prefix, "c1")) === at + 2 * HOUR, { what: "our format's record folded" });
    // Past every fold rule (a dead writer, older than ORPHAN_MS): still there, as it was.
    clock.advance(ORPHAN_MS + FOLD_QUIET_MS);
    clock.advance(FOLD_QUIET_MS);
    await eventually(async () => (await keys(journalDir(prefix))).length === 1, { what: "only the later record left" });
    assert.equal(await etcd.get(journalKey(prefix, "later-server", 1)).string(), laterText);
    assert.equal(await stored(prefix, "c0"), null, "nothing folded from it");
  } finally {
    await c.fleet.stop();
    c.registry.stop();
  }
});

test("a later release's keys and fields: what reads is taken, the rest ignored, and none written over or deleted", { skip }, async () => {
  const prefix = "/later-layout/";
  const at = Date.UTC(2026, 0, 1);
  const later = "later-server";
  const laterKeys: Record<string, string> = {
    // A known value with a field this release does not know: read.
    [clientKey(prefix, "c0", "Enabled")]: JSON.stringify({ value: false, at, by: later, why: "a field of a later release" }),
    // A known property whose value is of another type: ignored (a later release may not do this: docs/ETCD.md).
    [clientKey(prefix, "c1", "Timeout")]: JSON.stringify({ value: { ms: 5_000 }, at, by: later }),
    [`${prefix}clients/c2/PropertyOfALaterRelease`]: JSON.stringify({ value: 1, at, by: later }),
    [`${prefix}clients/c2`]: "a key where this release has a directory",
    [approvalKey(prefix, "c3")]: JSON.stringify({ value: true, at, by: later, reason: "a field of a later release" }),
    // Another server's waiting connection, with a field this release does not know: shown.
    [pendingKey(prefix, "c4", later)]: JSON.stringify({ timeout: 60_000, approvedByDefault: false, since: at }),
    [`${prefix}directory-of-a-later-release/x`]: "anything",
  };
  for (const [key, text] of Object.entries(laterKeys)) await etcd.put(key).value(text);

  const clock = new ManualClock(at + 2_000);
  const { registry, fleet } = server(prefix, clock, "server-c");
  try {
    await fleet.start();
    assert.equal(registry.get("c0")!.enabled, false, "a value with a field this release does not know is read");
    assert.equal(registry.get("c1")!.timeout, HOUR, "a value of another type is ignored");
    assert.equal(registry.get("c4")!.approvalPending, true, "a pending request with a field this release does not know is read");

    // A reboot wave through this server: its journal record, then the fold into the clients/ keys.
    clock.advance(60_000);
    const served = NAMES.filter((n) => n !== "c0");
    for (const name of served) registry.secretDelivered(name);
    const expires = clock.now() + 2 * HOUR;
    clock.advance(FLUSH_MS);
    await eventually(async () => (await keys(journalDir(prefix))).length > 0, { what: "the wave's journal record" });
    await quietUntil(clock, async () => (await keys(journalDir(prefix))).length === 0, "the record folded");
    for (const name of served) assert.equal(await stored(prefix, name), expires, `${name}'s Expires folded`);
  } finally {
    await fleet.stop();
    registry.stop();
  }
  for (const [key, text] of Object.entries(laterKeys)) {
    assert.equal(await etcd.get(key).string(), text, `${key} is as the later release wrote it`);
  }
});
