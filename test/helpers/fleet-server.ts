// A fleet server in process for etcd tests: a registry of clients and its
// FleetState on a real etcd (helpers/etcd.ts), keeping what it logs.

import type { TestContext } from "node:test";
import { Etcd3 } from "etcd3";
import { ClientRegistry } from "../../src/main/clients/registry.js";
import { systemClock } from "../../src/main/clock.js";
import type { Logger } from "../../src/main/daemon/log.js";
import { FleetState } from "../../src/main/fleet/fleet-state.js";
import type { ClientSettings } from "../../src/main/clients/settings.js";
import { clientSettings } from "./clients.js";
import { plainEtcdSettings, serversRegistered, type EtcdCluster } from "./etcd.js";
import { keptLogger } from "./log-watch.js";

export interface InProcessServer {
  readonly registry: ClientRegistry;
  readonly fleet: FleetState;
  /** Every line it logged, as "LEVEL: message". */
  readonly log: string[];
  stop(): Promise<void>;
}

/** Server `id` of the fleet under `prefix`, with clients `names` (checked and timed out hourly: nothing moves by itself; `over` for more); not started. */
export function inProcessServer(cluster: EtcdCluster, prefix: string, id: string, names: readonly string[], over: Partial<ClientSettings> = {}): InProcessServer {
  const logger: Logger & { lines: string[] } = keptLogger();
  const registry = new ClientRegistry(names.map((n) => clientSettings(n, { timeout: 3_600_000, interval: 3_600_000, ...over })), { logger });
  const fleet = new FleetState(plainEtcdSettings(cluster, prefix), { registry, logger, clock: systemClock, serverId: id });
  return {
    registry, fleet, log: logger.lines,
    async stop() {
      await fleet.stop();
      registry.stop();
    },
  };
}

/**
 * Servers server-a and server-b of the fleet under `prefix` (inProcessServer's
 * clients), started and registered, with a client of etcd for the test;
 * all stopped after the test `t`.
 */
export async function startedPair(
  t: TestContext, cluster: EtcdCluster, prefix: string, names: readonly string[], over: Partial<ClientSettings> = {},
): Promise<{ readonly a: InProcessServer; readonly b: InProcessServer; readonly etcd: Etcd3 }> {
  const etcd = new Etcd3({ hosts: cluster.endpoints.split(",") });
  const a = inProcessServer(cluster, prefix, "server-a", names, over);
  const b = inProcessServer(cluster, prefix, "server-b", names, over);
  t.after(async () => {
    await a.stop();
    await b.stop();
    etcd.close();
  });
  await a.fleet.start();
  await b.fleet.start();
  await serversRegistered(cluster, prefix, 2);
  return { a, b, etcd };
}

/**
 * Puts `keys` values of `bytes` each (at most 100 KB) under `dir`, named by
 * number, ten to a transaction (1 MB: under etcd's 1.5 MiB a request):
 * keys no release writes, which make a read of their directory large.
 */
export async function plantJunk(etcd: Etcd3, dir: string, keys: number, bytes: number): Promise<void> {
  const value = "x".repeat(bytes);
  for (let i = 0; i < keys; i += 10) {
    const puts = Array.from({ length: Math.min(10, keys - i) }, (_, j) => ({ request_put: { key: Buffer.from(`${dir}${String(i + j).padStart(6, "0")}`), value: Buffer.from(value) } }));
    await etcd.kv.txn({ success: puts });
  }
}
