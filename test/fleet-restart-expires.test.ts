// A server's start moves no client's Expires on the others (audit of
// session 57): the checker schedule's start (the reference's init_checker:
// now + the first checker's delay + an interval) was shared, stamped now,
// so restarting any server of a fleet cut every client's extended timeout
// short on every server. While another server is live the fleet's Expires
// stays; with none (the whole fleet restarts) the start's Expires is the
// reference's grace, shared as before. In process, against a real
// one-member etcd.

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { systemClock } from "../src/main/clock.js";
import type { Logger } from "../src/main/daemon/log.js";
import { FLUSH_MS, FleetState } from "../src/main/fleet/fleet-state.js";
import { clientKey, decodeValue, encodeValue } from "../src/main/fleet/layout.js";
import { clientSettings } from "./helpers/clients.js";
import { etcdForFile, etcdMissing, plainEtcdSettings, serversRegistered, type EtcdCluster } from "./helpers/etcd.js";
import { keptLogger } from "./helpers/log-watch.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const cluster = etcdForFile();
const HOUR = 3_600_000;
/** Checkers that never finish: only the schedule's start moves Expires here. */
const hanging: CheckerSpawner = () => ({ kill() {} });

interface Server {
  readonly registry: ClientRegistry;
  readonly fleet: FleetState;
  readonly log: string[];
  /** As main.ts: the fleet's state first, then the checkers' schedules. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

function server(t: TestContext, etcd: EtcdCluster, prefix: string, id: string): Server {
  const logger: Logger & { lines: string[] } = keptLogger();
  // The first checker half an interval away: the start's Expires is now + 1.5 h.
  const registry = new ClientRegistry([clientSettings("c0", { timeout: HOUR, interval: HOUR })], { logger, spawner: hanging, random: () => 0.5 });
  const fleet = new FleetState(plainEtcdSettings(etcd, prefix), { registry, logger, clock: systemClock, serverId: id });
  let stopped = false;
  const s: Server = {
    registry, fleet, log: logger.lines,
    async start() {
      await fleet.start();
      registry.start();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await fleet.stop();
      registry.stop();
    },
  };
  t.after(() => s.stop());
  return s;
}

/** etcd's Expires of c0. */
async function fleetExpires(etcd: Etcd3, prefix: string): Promise<unknown> {
  const text = await etcd.get(clientKey(prefix, "c0", "Expires")).string();
  return text === null ? null : decodeValue(text)?.value;
}

test("a server that starts while another is live keeps the fleet's Expires, here and in etcd", { skip, timeout: 60_000 }, async (t) => {
  const prefix = "/restart-live/";
  const etcd = new Etcd3({ hosts: cluster().endpoints.split(",") });
  t.after(() => etcd.close());
  const a = server(t, cluster(), prefix, "server-a");
  await a.start();
  // The fleet's Expires: a secret sent with a 5 h extended timeout, say.
  const granted = Date.now() + 5 * HOUR;
  await etcd.put(clientKey(prefix, "c0", "Expires")).value(encodeValue({ value: granted, at: Date.now(), by: "server-x" }));
  await eventually(() => a.registry.get("c0")!.expires?.getTime() === granted, { what: "A takes the fleet's Expires" });

  const b = server(t, cluster(), prefix, "server-b");
  await b.start();
  await serversRegistered(cluster(), prefix, 2);
  await eventually(() => b.registry.get("c0")!.expires?.getTime() === granted, {
    what: "B shows the fleet's Expires after its start", context: () => String(b.registry.get("c0")!.expires?.toISOString()),
  });
  // Long enough for a write of B's to have gone out and come back to A.
  await new Promise((resolve) => setTimeout(resolve, 10 * FLUSH_MS));
  assert.equal(await fleetExpires(etcd, prefix), granted, "B's start rewrote the fleet's Expires");
  assert.equal(a.registry.get("c0")!.expires?.getTime(), granted, "A took B's start's Expires");
  assert.equal(b.registry.get("c0")!.expires?.getTime(), granted, "B went back to its start's Expires");
});

test("a server that starts alone (the whole fleet restarts) shares its start's Expires, the reference's grace", { skip, timeout: 60_000 }, async (t) => {
  const prefix = "/restart-alone/";
  const etcd = new Etcd3({ hosts: cluster().endpoints.split(",") });
  t.after(() => etcd.close());
  // What the fleet held when its last server stopped: a live value then, but nobody checks the client now.
  const old = Date.now() + 5 * HOUR;
  await etcd.put(clientKey(prefix, "c0", "Expires")).value(encodeValue({ value: old, at: Date.now() - HOUR, by: "server-x" }));
  const started = Date.now();
  const a = server(t, cluster(), prefix, "server-a");
  await a.start();
  const expires = a.registry.get("c0")!.expires!.getTime();
  assert.ok(expires >= started + 1.5 * HOUR && expires <= Date.now() + 1.5 * HOUR, `the start's Expires: ${new Date(expires).toISOString()}`);
  await eventually(async () => (await fleetExpires(etcd, prefix)) === expires, { what: "the start's Expires in etcd" });
});
