// A server's link to etcd holds one connection to each member, however often
// the member goes away and comes back (docs/ETCD.md "When etcd is down";
// src/main/fleet/member-channels.ts). etcd3 closed a member's gRPC channels
// at each failed request, and grpc-js reconnected some of them once more,
// for nobody, when etcd answered again: idle connections after each
// restart (4-8 for bin/mandos, 2 for this test's server), and 7 more at
// each cut of a member that stayed up. In process,
// against a real one-member etcd stopped and started again, counting this
// process's TCP connections to etcd's port; after each restart the fleet is
// checked to work both ways.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { systemClock } from "../src/main/clock.js";
import { FleetState } from "../src/main/fleet/fleet-state.js";
import { clientKey, decodeJournal, decodeValue, encodeValue } from "../src/main/fleet/layout.js";
import { clientSettings } from "./helpers/clients.js";
import { etcdForFile, etcdMissing, plainEtcdSettings, type EtcdCluster } from "./helpers/etcd.js";
import { keptLogger } from "./helpers/log-watch.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const etcd = etcdForFile(1);

const PREFIX = "/connections/";
const RESTARTS = 3;

/** This process's TCP connections (any state, still held by a descriptor) to `port`, from the kernel's tables. */
function connectionsTo(port: number): number {
  const mine = new Set<string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
      if (inode) mine.add(inode);
    } catch {
      // closed meanwhile
    }
  }
  let count = 0;
  for (const table of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const remotePort = Number.parseInt(fields[2]!.split(":")[1]!, 16);
      if (remotePort === port && mine.has(fields[9]!)) count++;
    }
  }
  return count;
}

/** The newest value etcd holds for `key` (its own key, or a journal record not folded yet), as etcdctl reads it. */
async function newestInEtcd(cluster: EtcdCluster, key: string): Promise<unknown> {
  const lines = (await cluster.dump(PREFIX)).split("\n");
  let newest: { value: unknown; at: number } | null = null;
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const [k, text] = [lines[i]!, lines[i + 1]!];
    const values = k === key ? [decodeValue(text)] : (decodeJournal(PREFIX, text)?.changes ?? []).filter((c) => c.key === key).map((c) => c.value);
    for (const v of values) if (v && (!newest || v.at > newest.at)) newest = { value: v.value, at: v.at };
  }
  return newest?.value;
}

test("after each restart of etcd a server holds one connection to it, not one more a restart, and shares changes both ways again", { skip, timeout: 180_000 }, async () => {
  const cluster = etcd();
  const member = cluster.members[0]!;
  const port = Number(new URL(member.clientUrl).port);
  const logger = keptLogger();
  const registry = new ClientRegistry(["alpha", "bravo"].map((n) => clientSettings(n, { timeout: 3_600_000, interval: 3_600_000 })), { logger });
  const fleet = new FleetState(plainEtcdSettings(cluster, PREFIX), { registry, logger, clock: systemClock, serverId: "server-a" });
  const counts: number[] = [];
  try {
    await fleet.start();
    await eventually(() => connectionsTo(port) === 1, { what: "one connection to etcd at start", context: () => `${connectionsTo(port)} connections` });
    for (let round = 1; round <= RESTARTS; round++) {
      await member.stop();
      await eventually(() => fleet.degraded, { what: `round ${round}: the server sees etcd gone` });
      member.start();
      await cluster.healthy();

      // Ours out: a change made on the server reaches etcd.
      const enabled = round % 2 === 0;
      if (enabled) registry.enable("alpha");
      else registry.disable("alpha");
      await eventually(async () => (await newestInEtcd(cluster, clientKey(PREFIX, "alpha", "Enabled"))) === enabled, {
        what: `round ${round}: alpha's Enabled ${enabled} in etcd`, timeoutMs: 20_000,
      });
      // Theirs in: a change put in etcd reaches the server.
      const put = await cluster.ctl(["put", clientKey(PREFIX, "bravo", "Enabled"), encodeValue({ value: enabled, at: Date.now(), by: "elsewhere/1/test" })]);
      assert.equal(put.code, 0, put.stderr.toString());
      await eventually(() => registry.get("bravo")!.enabled === enabled, { what: `round ${round}: bravo's Enabled ${enabled} from etcd`, timeoutMs: 20_000 });

      // Before: 2 here in round 1 (3 runs of 3; the ones a round left idle
      // are closed by the next restart).
      await eventually(() => connectionsTo(port) === 1, { what: `round ${round}: one connection to etcd`, context: () => `${connectionsTo(port)} connections` });
      counts.push(connectionsTo(port));
    }
    assert.deepEqual(counts, Array<number>(RESTARTS).fill(1));
    assert.deepEqual(logger.lines.filter((l) => l.startsWith("ERROR")), [], "no ERROR logged");
  } finally {
    await fleet.stop();
    registry.stop();
  }
  await eventually(() => connectionsTo(port) === 0, { what: "no connection to etcd after stop", context: () => `${connectionsTo(port)} connections` });
});
