// One directory of the fleet's keys deleted under running servers, the
// rest left (`etcdctl del` of one key, or of one directory: docs/ETCD.md
// "What etcd holds, and when it is wrong"). A server's own pending/ key,
// deleted while a connection still waits there, made the other servers
// stop showing the client as waiting (ApprovalPending false through them,
// no countdown in mandos-monitor) until the server next registered; now it
// is put again at once. A journal record deleted before its fold left its
// changes in no clients/ key: a server started then served clients
// disabled through another as enabled; now the changes are written back.
// In process, two servers, against a real one-member etcd.

import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { JOURNAL_MIN_CHANGES } from "../src/main/fleet/fleet-state.js";
import { clientKey, decodeValue, journalDir, pendingKey } from "../src/main/fleet/layout.js";
import { keyIdOf } from "./helpers/clients.js";
import { etcdForFile, etcdMissing } from "./helpers/etcd.js";
import { inProcessServer, startedPair } from "./helpers/fleet-server.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const etcdCluster = etcdForFile(1);

test("a server's own pending/ key deleted alone while a connection waits there: put again, and the other server shows the client waiting again", { skip }, async (t) => {
  const cluster = etcdCluster();
  const prefix = "/pending-alone/";
  // charlie waits up to 90 s for approval, denied by default.
  const { a, b, etcd } = await startedPair(t, cluster, prefix, ["charlie"], { approvalDelay: 90_000, approvedByDefault: false, approvalDuration: 1_000 });
  const waiting = new AbortController();
  t.after(() => waiting.abort());
  const decision = a.registry.requestSecret("charlie", keyIdOf("charlie"), "::1", waiting.signal);
  await eventually(() => b.registry.get("charlie")!.approvalPending, { what: "B shows charlie waiting on A" });
  const key = pendingKey(prefix, "charlie", "server-a");
  assert.ok(await etcd.get(key).string(), "A's pending/ key in etcd");

  const deleted = await cluster.ctl(["del", key]);
  assert.equal(deleted.stdout.toString().trim(), "1", deleted.stderr.toString());
  // B saw it go (the watch brings the delete), then come back.
  await eventually(async () => (await etcd.get(key).string()) !== null && b.registry.get("charlie")!.approvalPending, {
    what: "A's pending/ key put again, and B shows charlie waiting again", timeoutMs: 10_000,
  });
  // Bound to A's lease still: it goes when A does.
  const lease = (await etcd.kv.range({ key: Buffer.from(key) })).kvs[0]!.lease;
  assert.notEqual(String(lease), "0", "the key put again is bound to A's lease");
  await eventually(() => a.log.some((l) => /^WARNING: 1 of the fleet's keys were deleted in etcd by someone else .*pending\/: 1 of this server's, put again/.test(l)), {
    what: "A says its pending/ key was deleted and put again", context: () => a.log.join("\n"),
  });
  assert.equal(a.fleet.degraded, false);

  // An approval through B still reaches the connection waiting on A.
  b.registry.approve("charlie", true);
  const got = await decision;
  assert.equal(got.give, true);
  await eventually(() => !b.registry.get("charlie")!.approvalPending && !a.registry.get("charlie")!.approvalPending, { what: "charlie no longer waiting anywhere" });
  await eventually(async () => (await etcd.get(key).string()) === null, { what: "A's pending/ key deleted once nothing waits" });
});

test("a journal record deleted alone before its fold: its changes are written back into the clients/ keys, and a server started then has them", { skip }, async (t) => {
  const cluster = etcdCluster();
  const prefix = "/journal-alone/";
  const names = Array.from({ length: JOURNAL_MIN_CHANGES + 4 }, (_, i) => `c${i}`);
  const { a, b, etcd } = await startedPair(t, cluster, prefix, names);
  const records = async (): Promise<number> => (await etcd.getAll().prefix(journalDir(prefix)).keys()).length;
  const disabledInEtcd = async (): Promise<number> => {
    let n = 0;
    for (const name of names) if (decodeValue((await etcd.get(clientKey(prefix, name, "Enabled")).string()) ?? "")?.value === false) n++;
    return n;
  };
  const said = (s: typeof a): string[] => s.log.filter((l) => l.includes("journal/:"));

  // A wave folded as it should be, by its server: nothing is said.
  for (const name of names) a.registry.disable(name);
  await eventually(async () => (await records()) > 0, { what: "A's journal record" });
  await eventually(async () => (await records()) === 0 && (await disabledInEtcd()) === names.length, { what: "A folds its record", timeoutMs: 15_000 });
  await sleep(1_500);
  assert.deepEqual([...said(a), ...said(b)], []);

  // The next wave's record deleted by someone else before its fold.
  for (const name of names) a.registry.enable(name);
  await eventually(async () => (await records()) > 0, { what: "A's second journal record" });
  const deleted = await cluster.ctl(["del", "--prefix", journalDir(prefix)]);
  assert.equal(deleted.code, 0, deleted.stderr.toString());
  assert.ok(names.every((name) => a.registry.get(name)!.enabled));
  await eventually(() => names.every((name) => b.registry.get(name)!.enabled), { what: "B took the enables from the record" });
  // Before, every clients/NAME/Enabled key stayed false, for good.
  await eventually(async () => (await disabledInEtcd()) === 0, { what: "the record's enables written back into the clients/ keys", timeoutMs: 10_000 });
  await eventually(() => said(a).length + said(b).length > 0, { what: "a server says the record was deleted" });
  assert.match([...said(a), ...said(b)][0]!, /^WARNING: .*journal\/: 1 record\(s\) before their fold, their changes written back/);

  // A server started now takes the fleet's state as the running ones have it.
  const c = inProcessServer(cluster, prefix, "server-c", names);
  t.after(() => c.stop());
  await c.fleet.start();
  assert.deepEqual(names.filter((name) => !c.registry.get(name)!.enabled), []);
});
