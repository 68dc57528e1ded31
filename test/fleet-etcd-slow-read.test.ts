// A read of the whole fleet that takes a while, while the watch, still
// open, brings later revisions (docs/ETCD.md "What etcd holds, and when it
// is wrong"). Before, the read's revision was weighed against the newest
// revision seen when the read ended, which the watch had moved past: the
// server said "etcd's history went back", made its watches anew and, as
// the new watch brought again what the old one had, wrote back values
// etcd already held. And the read, of one revision, was weighed against
// what the watch brought since as if it were newer: a key changed since
// was written again, another server's waiting connection made known
// since was no longer shown. A client added at run time (a reload) is what makes
// a running server read the whole fleet here; 30 MB of keys no release
// writes, under a directory the server reads, are what make the read slow.
// In process, against a real one-member etcd.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import { setTimeout as sleep } from "node:timers/promises";
import { FLUSH_MS } from "../src/main/fleet/fleet-state.js";
import { clientKey, decodeValue, encodePending, encodeValue, pendingKey } from "../src/main/fleet/layout.js";
import { clientSettings } from "./helpers/clients.js";
import { etcdForFile, etcdMissing } from "./helpers/etcd.js";
import { inProcessServer, plantJunk, type InProcessServer } from "./helpers/fleet-server.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const HOUR = 3_600_000;
const NAMES = ["c0", "c1", "c2"];
/** 300 values of 100 KB: 30 MB, read in a few pages. */
const JUNK_KEYS = 300;
const JUNK_BYTES = 100_000;
/** The busy writer's bounds: it stops at whichever comes first, or when told. */
const MAX_WRITES = 20_000;
const MAX_WRITING_MS = 60_000;
const etcdCluster = etcdForFile(1);

/** Puts JUNK_KEYS values of JUNK_BYTES under `dir`. */
function plant(etcd: Etcd3, dir: string): Promise<void> {
  return plantJunk(etcd, dir, JUNK_KEYS, JUNK_BYTES);
}

/**
 * What the other writer puts as its `i`th write; `sinceMark` is how many
 * it made since mark() was called, null before.
 */
type Put = (i: number, sinceMark: number | null) => { key: string; value: string };

/**
 * Another writer, putting `put`'s one after the other until stop()
 * (bounded by MAX_WRITES and MAX_WRITING_MS); stop() resolves to how many
 * it put.
 */
function busyWriter(etcd: Etcd3, put: Put): { written(): number; mark(): void; stop(): Promise<number> } {
  let stopped = false;
  let count = 0;
  let marked: number | null = null;
  const until = Date.now() + MAX_WRITING_MS;
  const done = (async () => {
    for (; count < MAX_WRITES && !stopped && Date.now() < until; count++) {
      const { key, value } = put(count, marked === null ? null : count - marked);
      await etcd.put(key).value(value);
    }
    return count;
  })();
  return {
    written: () => count,
    mark: () => void (marked = count),
    async stop() {
      stopped = true;
      return done;
    },
  };
}

/**
 * Server A on `prefix`, started over 30 MB of junk in clients/c1/Later/;
 * `put` written by another writer all along (marked when the client
 * is added); then a client added to A, which reads the whole fleet again
 * with its watch open. Resolves once A
 * has seeded the new client (the read is over), the writer stopped, with
 * how many it put.
 */
async function slowReadUnderBusyWatch(
  t: { after(fn: () => unknown): void }, prefix: string, put: Put,
): Promise<{ a: InProcessServer; etcd: Etcd3; writes: number }> {
  const etcd = new Etcd3({ hosts: etcdCluster().endpoints.split(",") });
  t.after(() => etcd.close());
  // Not a property (clients/NAME/PROPERTY): keys a later release might write, which this one reads past.
  await plant(etcd, `${prefix}clients/c1/Later/`);
  const a = inProcessServer(etcdCluster(), prefix, "server-a", NAMES);
  t.after(() => a.stop());
  await a.fleet.start();
  assert.equal(a.fleet.degraded, false, `A is degraded:\n${a.log.join("\n")}`);
  const writer = busyWriter(etcd, put);
  t.after(() => writer.stop());
  await eventually(() => writer.written() >= 20, { what: "the other writer under way" });
  writer.mark();
  a.registry.add(clientSettings("c3", { timeout: HOUR, interval: HOUR }));
  await eventually(async () => (await etcd.get(clientKey(prefix, "c3", "Timeout")).string()) !== null, {
    what: "A's read after c3 was added, and c3 seeded", timeoutMs: 30_000, context: () => a.log.join("\n"),
  });
  const writes = await writer.stop();
  assert.ok(writes < MAX_WRITES, "the other writer stopped at its bound before A's read ended");
  return { a, etcd, writes };
}

test("a slow read of the whole fleet while the watch brings later revisions is not taken for a history that went back", { skip, timeout: 120_000 }, async (t) => {
  const prefix = "/slow-read/";
  // Keys the server reads past, under a directory it watches: each a revision the watch brings.
  const { a, etcd } = await slowReadUnderBusyWatch(t, prefix, (i) => ({ key: `${prefix}clients/c0/Later/${i}`, value: String(i) }));
  // The watch still follows the fleet.
  await etcd.put(clientKey(prefix, "c2", "Host")).value(encodeValue({ value: "c2.moved.example.org", at: Date.now(), by: "server-b" }));
  await eventually(() => a.registry.get("c2")!.host === "c2.moved.example.org", { what: "A takes a change made after its read" });
  assert.ok(!a.log.some((l) => l.includes("history went back")), `A took its read for a history that went back:\n${a.log.join("\n")}`);
  assert.ok(!a.fleet.degraded && !a.log.some((l) => l.startsWith("CRITICAL")), `DEGRADED:\n${a.log.join("\n")}`);
});

test("a value the watch brought while the whole fleet was read is not written back over by the read's older one", { skip, timeout: 120_000 }, async (t) => {
  const prefix = "/slow-read-values/";
  const key = clientKey(prefix, "c0", "Host");
  let at = 0;
  // Another server changing c0's Host all along, each change stamped after the last.
  const { a, etcd, writes } = await slowReadUnderBusyWatch(t, prefix, (i) => {
    at = Math.max(Date.now(), at + 1);
    return { key, value: encodeValue({ value: `c0-${i}.example.org`, at, by: "server-b" }) };
  });
  const last = `c0-${writes - 1}.example.org`;
  await eventually(() => a.registry.get("c0")!.host === last, { what: "A takes B's last change", context: () => `A has ${a.registry.get("c0")!.host}` });
  // Time for a write-back to go out (FLUSH_MS after it is marked).
  await sleep(20 * FLUSH_MS);
  // etcd's version of the key counts its puts since it was created: A's seed, then B's changes, and nothing more.
  const [kv] = (await etcd.get(key).exec()).kvs;
  assert.equal(decodeValue(kv!.value.toString())?.value, last);
  assert.equal(Number(kv!.version), 1 + writes, `c0's Host was written ${Number(kv!.version) - 1 - writes} more time(s) than B changed it:\n${a.log.join("\n")}`);
  assert.ok(!a.log.some((l) => l.includes("history went back") || l.includes("written back over it")), `A wrote back what etcd held:\n${a.log.join("\n")}`);
});

test("a value the watch brought early in a slow read of the whole fleet is not written back when the read comes to its key", { skip, timeout: 120_000 }, async (t) => {
  const prefix = "/slow-read-early/";
  // Read after the 30 MB of clients/c1/Later/: the watch has brought its changes by then.
  const key = clientKey(prefix, "c2", "Host");
  const changes: string[] = [];
  let at = 0;
  // Another server changing c2's Host, then only keys the server reads past, from a few writes after c3 is added (once A's read has begun).
  const { a, etcd } = await slowReadUnderBusyWatch(t, prefix, (i, sinceMark) => {
    if (sinceMark !== null && sinceMark >= 5) return { key: `${prefix}clients/c0/Later/${i}`, value: String(i) };
    at = Math.max(Date.now(), at + 1);
    const host = `c2-${i}.example.org`;
    changes.push(host);
    return { key, value: encodeValue({ value: host, at, by: "server-b" }) };
  });
  await eventually(() => a.registry.get("c2")!.host === changes.at(-1), { what: "A takes B's last change", context: () => `A has ${a.registry.get("c2")!.host}` });
  await sleep(20 * FLUSH_MS);
  // Before: the read's value, older than the one the watch brought, was "written back" with the one etcd held already.
  const [kv] = (await etcd.get(key).exec()).kvs;
  assert.equal(decodeValue(kv!.value.toString())?.value, changes.at(-1));
  assert.equal(Number(kv!.version), 1 + changes.length, `c2's Host was written ${Number(kv!.version) - 1 - changes.length} more time(s) than B changed it:\n${a.log.join("\n")}`);
  assert.ok(!a.log.some((l) => l.includes("history went back") || l.includes("written back over it")), `A wrote back what etcd held:\n${a.log.join("\n")}`);
});

test("another server's waiting connection made known while the whole fleet is read is still shown after the read", { skip, timeout: 120_000 }, async (t) => {
  const prefix = "/slow-read-pending/";
  const key = pendingKey(prefix, "c0", "server-b");
  // A connection of c0 begins to wait on B a few writes after c3 is added (once A's read has begun): its pending/ key is put once.
  const { a, etcd } = await slowReadUnderBusyWatch(t, prefix, (i, sinceMark) =>
    sinceMark === 5 ? { key, value: encodePending({ timeout: HOUR, approvedByDefault: false }) } : { key: `${prefix}clients/c0/Later/${i}`, value: String(i) });
  assert.notEqual(await etcd.get(key).string(), null);
  await sleep(20 * FLUSH_MS);
  // Before: the read, of a revision before the put, did not hold the key, and A stopped showing the request the watch had brought.
  assert.equal(a.registry.get("c0")!.approvalPending, true, `A does not show c0 waiting on B:\n${a.log.join("\n")}`);
});

test("a client's key another server puts while the whole fleet is read is not written again as one etcd lacks", { skip, timeout: 120_000 }, async (t) => {
  const prefix = "/slow-read-new-key/";
  // c3, added to A to make it read, is added to B too: B puts its Host a few writes later, once A's read has begun.
  const key = clientKey(prefix, "c3", "Host");
  const value = encodeValue({ value: "c3.example.org", at: Date.now(), by: "server-b" });
  const { a, etcd } = await slowReadUnderBusyWatch(t, prefix, (i, sinceMark) =>
    sinceMark === 5 ? { key, value } : { key: `${prefix}clients/c0/Later/${i}`, value: String(i) });
  assert.equal(a.registry.get("c3")!.host, "c3.example.org");
  await sleep(20 * FLUSH_MS);
  // Before: the read, of a revision before the put, did not hold the key, and A wrote the value the watch had brought.
  const [kv] = (await etcd.get(key).exec()).kvs;
  assert.equal(kv!.value.toString(), value);
  assert.equal(Number(kv!.version), 1, `c3's Host was written ${Number(kv!.version) - 1} more time(s) than B put it:\n${a.log.join("\n")}`);
});
