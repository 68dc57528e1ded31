// Keys under the fleet's prefix that are not the fleet's (docs/ETCD.md
// "What etcd holds, and when it is wrong"): 70 MB planted under a
// directory no release knows, or under a known directory in keys no
// release writes, must not keep a server from reading the fleet. Before,
// the whole prefix was read in pages of 10,000 keys whatever their size:
// one answer of 70 MB (more than gRPC takes, 64 MiB, and more than a
// second's deadline on a busy etcd), failed and asked again every second,
// kept every server DEGRADED and etcd busy for as long as the keys stayed.
// In process, against a real one-member etcd.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import { clientKey, encodeValue, journalDir, journalKey, JOURNAL_VERSION } from "../src/main/fleet/layout.js";
import { etcdForFile, etcdMissing } from "./helpers/etcd.js";
import { inProcessServer, plantJunk, type InProcessServer } from "./helpers/fleet-server.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const NAMES = ["c0", "c1", "c2"];
/** 700 values of 100 KB: 70 MB, more than one gRPC answer may carry. */
const JUNK_KEYS = 700;
const JUNK_BYTES = 100_000;
const etcdCluster = etcdForFile(1);

/** Puts JUNK_KEYS values of JUNK_BYTES under `dir`. */
function plant(etcd: Etcd3, dir: string): Promise<void> {
  return plantJunk(etcd, dir, JUNK_KEYS, JUNK_BYTES);
}

function server(prefix: string, id: string): InProcessServer {
  return inProcessServer(etcdCluster(), prefix, id, NAMES);
}

test("70 MB under a directory the fleet does not know: the servers read the fleet, watch it, and say what they ignore", { skip }, async (t) => {
  const prefix = "/junk-dir/";
  const etcd = new Etcd3({ hosts: etcdCluster().endpoints.split(",") });
  t.after(() => etcd.close());
  await plant(etcd, `${prefix}junk/`);
  // Another server's change, to be read past the junk.
  await etcd.put(clientKey(prefix, "c0", "Enabled")).value(encodeValue({ value: false, at: Date.now(), by: "other" }));
  const a = server(prefix, "server-a");
  t.after(() => a.stop());
  await a.fleet.start();
  assert.equal(a.fleet.degraded, false, `A is degraded:\n${a.log.join("\n")}`);
  assert.equal(a.registry.get("c0")!.enabled, false, "A did not take the fleet's state");
  assert.ok(
    a.log.includes(`WARNING: etcd holds ${JUNK_KEYS} keys under ${prefix} outside the fleet's directories (junk/: ${JUNK_KEYS}): ignored, and never read (a later release's, or not the fleet's?)`),
    `no warning about the unknown directory:\n${a.log.join("\n")}`,
  );
  // More of it while A runs: its watch is not sent it; a change of the fleet's after it arrives.
  await plant(etcd, `${prefix}junk2/`);
  await etcd.put(clientKey(prefix, "c1", "Enabled")).value(encodeValue({ value: false, at: Date.now(), by: "other" }));
  await eventually(() => a.registry.get("c1")!.enabled === false, { what: "A takes a change made after more junk" });
  // And a server that starts now reads the fleet too.
  const b = server(prefix, "server-b");
  t.after(() => b.stop());
  await b.fleet.start();
  assert.equal(b.fleet.degraded, false, `B is degraded:\n${b.log.join("\n")}`);
  assert.deepEqual([b.registry.get("c0")!.enabled, b.registry.get("c1")!.enabled], [false, false]);
  assert.ok(!a.log.some((l) => l.startsWith("CRITICAL")) && !b.log.some((l) => l.startsWith("CRITICAL")), `DEGRADED said:\n${[...a.log, ...b.log].join("\n")}`);
});

test("70 MB in keys of a known directory that no release writes: read in pages bounded by bytes, and the server is not DEGRADED", { skip }, async (t) => {
  const prefix = "/junk-known/";
  const etcd = new Etcd3({ hosts: etcdCluster().endpoints.split(",") });
  t.after(() => etcd.close());
  // Not a property (clients/NAME/PROPERTY): keys a later release might write, which this one skips.
  await plant(etcd, `${prefix}clients/c1/Later/`);
  await etcd.put(clientKey(prefix, "c2", "Enabled")).value(encodeValue({ value: false, at: Date.now(), by: "other" }));
  const a = server(prefix, "server-a");
  t.after(() => a.stop());
  await a.fleet.start();
  // A page too large for one answer is read again smaller: at once, or at the next try.
  await eventually(() => !a.fleet.degraded && a.registry.get("c2")!.enabled === false, {
    what: "A reads the fleet past 70 MB of keys it skips", timeoutMs: 10_000, context: () => a.log.join("\n"),
  });
  assert.ok(!a.log.some((l) => l.startsWith("CRITICAL")), `DEGRADED said:\n${a.log.join("\n")}`);
});

test("70 MB of journal records of a dead server: folded a page at a time, and the server is not DEGRADED", { skip, timeout: 120_000 }, async (t) => {
  const prefix = "/junk-journal/";
  const etcd = new Etcd3({ hosts: etcdCluster().endpoints.split(",") });
  t.after(() => etcd.close());
  const a = server(prefix, "server-a");
  t.after(() => a.stop());
  await a.fleet.start();
  // Newer than every change of the records: the fold writes none of them, it only deletes the records.
  for (const name of NAMES) a.registry.update(name, { host: `${name}.moved.example.org` });
  await eventually(async () => (await etcd.get(clientKey(prefix, "c2", "Host")).string())?.includes("c2.moved.example.org") === true, { what: "A's Host changes in etcd" });
  // A server that died before its fold (its servers/ key gone): 700 records of 100 KB, each a change of a client's Host, one put each.
  const host = "x".repeat(JUNK_BYTES);
  for (let i = 0; i < JUNK_KEYS; i++) {
    const changes = [[`clients/${NAMES[i % NAMES.length]!}/Host`, host, 1, "server-dead"]];
    await etcd.put(journalKey(prefix, "server-dead", i)).value(JSON.stringify({ v: JOURNAL_VERSION, at: Date.now(), by: "server-dead", changes }));
  }
  // Before, the fold read the whole journal in one answer, larger than gRPC takes: it failed, and again at every try.
  await eventually(async () => (await etcd.getAll().prefix(journalDir(prefix)).count()) === 0, {
    what: "A folds the dead server's 70 MB of records", timeoutMs: 60_000, context: () => a.log.join("\n"),
  });
  assert.ok(!a.fleet.degraded, `degraded:\n${a.log.join("\n")}`);
  assert.ok(!a.log.some((l) => l.startsWith("CRITICAL")), `DEGRADED said:\n${a.log.join("\n")}`);
  // None of the older changes was taken, nor written over the newer value.
  assert.equal(a.registry.get("c1")!.host, "c1.moved.example.org");
  assert.match((await etcd.get(clientKey(prefix, "c1", "Host")).string()) ?? "", /c1\.moved\.example\.org/);
});
