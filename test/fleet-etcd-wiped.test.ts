// The fleet's keys deleted under running servers (`etcdctl del --prefix
// /mandos/`: an operator's mistake, or a script's): docs/ETCD.md "What etcd
// holds, and when it is wrong". The servers heal it as they heal an etcd
// whose data was lost: each puts its servers/ key again at once, and
// writes back the clients' values it holds, as they were made (a disable
// stays a disable); approvals are not written back. Before, nothing was
// said nor done: the servers/ keys stayed away for as long as the leases
// lived (every server running every checker), and the clients' keys until
// a server happened to read the fleet again. In process, two servers,
// against a real one-member etcd.

import { test } from "node:test";
import assert from "node:assert/strict";
import { clientKey, decodeValue, SHARED_PROPERTIES, type Stamped } from "../src/main/fleet/layout.js";
import { etcdForFile, etcdMissing, serversRegistered } from "./helpers/etcd.js";
import { startedPair } from "./helpers/fleet-server.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const NAMES = ["c0", "c1", "c2"];
const etcdCluster = etcdForFile(1);

test("the fleet's keys deleted under running servers: each puts its servers/ key again, the clients' values come back as made, and it is said once", { skip }, async (t) => {
  const cluster = etcdCluster();
  const prefix = "/wiped/";
  const { a, b, etcd } = await startedPair(t, cluster, prefix, NAMES);
  const stored = async (name: string, property: (typeof SHARED_PROPERTIES)[number]): Promise<Stamped | null> => {
    const text = await etcd.get(clientKey(prefix, name, property)).string();
    return text === null ? null : decodeValue(text);
  };
  a.registry.disable("c0");
  b.registry.update("c1", { host: "c1.moved.example.org" });
  a.registry.approve("c2", false);
  await eventually(async () => (await stored("c0", "Enabled"))?.by === "server-a" && (await stored("c1", "Host"))?.by === "server-b" && b.registry.get("c0")!.enabled === false, {
    what: "the changes in etcd and on both servers",
  });
  const made = { c0: (await stored("c0", "Enabled"))!, c1: (await stored("c1", "Host"))! };
  assert.ok(await etcd.get(`${prefix}approvals/c2`).string(), "the denial in etcd");

  const wiped = await cluster.ctl(["del", "--prefix", prefix]);
  assert.equal(wiped.code, 0, wiped.stderr.toString());
  const deleted = Number(wiped.stdout.toString().trim());
  assert.ok(deleted >= 2 + NAMES.length * SHARED_PROPERTIES.length, `etcdctl deleted ${deleted} keys`);

  // Each server's registration, at once: not when its lease is lost (it never is).
  await serversRegistered(cluster, prefix, 2);
  // Every client's every shared value, as it was made: A's disable with A's stamp, B's Host with B's.
  await eventually(async () => {
    const [c0, c1] = [await stored("c0", "Enabled"), await stored("c1", "Host")];
    if (c0?.at !== made.c0.at || c0.value !== false || c1?.at !== made.c1.at || c1.value !== "c1.moved.example.org") return false;
    return (await etcd.getAll().prefix(`${prefix}clients/`).keys()).length === NAMES.length * SHARED_PROPERTIES.length;
  }, { what: "every client key written back as it was made", timeoutMs: 10_000 });
  // The denial is not: it was for the connections that waited then.
  assert.equal(await etcd.get(`${prefix}approvals/c2`).string(), null, "the denial was written back");
  for (const s of [a, b]) {
    assert.equal(s.registry.get("c0")!.enabled, false);
    assert.equal(s.registry.get("c1")!.host, "c1.moved.example.org");
    assert.equal(s.fleet.degraded, false);
  }
  // Said once on each server: its own key, and how many the others were, not a line a key.
  for (const [s, id] of [[a, "server-a"], [b, "server-b"]] as const) {
    await eventually(() => s.log.some((l) => l.startsWith(`WARNING: this server's key servers/${id} was deleted in etcd by someone else`)), {
      what: `${id} says its servers/ key was deleted`, context: () => s.log.join("\n"),
    });
    const said = (): string[] => s.log.filter((l) => /^WARNING: \d+ of the fleet's keys were deleted in etcd by someone else/.test(l));
    await eventually(() => said().length > 0, { what: `${id} says how many keys were deleted`, context: () => s.log.join("\n") });
    const summary = said();
    assert.equal(summary.length, 1, summary.join("\n"));
    assert.match(summary[0]!, new RegExp(`^WARNING: ${NAMES.length * SHARED_PROPERTIES.length + 1} of the fleet's keys were deleted`), summary[0]);
  }

  // The fleet goes on as one: a change through B reaches A.
  b.registry.disable("c2");
  await eventually(() => a.registry.get("c2")!.enabled === false, { what: "A sees c2 disabled through B after the wipe" });
});
