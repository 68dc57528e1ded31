// One directory of the fleet's keys deleted under running servers, the
// rest left (`etcdctl del` of one key, or of one directory: docs/ETCD.md
// "What etcd holds, and when it is wrong"). A server's own pending/ key,
// deleted while a connection still waits there, made the other servers
// stop showing the client as waiting (ApprovalPending false through them,
// no countdown in mandos-monitor) until the server next registered; now it
// is put again at once. In process, two servers, against a real one-member
// etcd.

import { test } from "node:test";
import assert from "node:assert/strict";
import { pendingKey } from "../src/main/fleet/layout.js";
import { keyIdOf } from "./helpers/clients.js";
import { etcdForFile, etcdMissing } from "./helpers/etcd.js";
import { startedPair } from "./helpers/fleet-server.js";
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
