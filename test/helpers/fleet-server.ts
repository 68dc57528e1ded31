// A fleet server in process for etcd tests: a registry of clients and its
// FleetState on a real etcd (helpers/etcd.ts), keeping what it logs.

import { ClientRegistry } from "../../src/main/clients/registry.js";
import { systemClock } from "../../src/main/clock.js";
import type { Logger } from "../../src/main/daemon/log.js";
import { FleetState } from "../../src/main/fleet/fleet-state.js";
import { clientSettings } from "./clients.js";
import { plainEtcdSettings, type EtcdCluster } from "./etcd.js";
import { keptLogger } from "./log-watch.js";

export interface InProcessServer {
  readonly registry: ClientRegistry;
  readonly fleet: FleetState;
  /** Every line it logged, as "LEVEL: message". */
  readonly log: string[];
  stop(): Promise<void>;
}

/** Server `id` of the fleet under `prefix`, with clients `names` (checked and timed out hourly: nothing moves by itself); not started. */
export function inProcessServer(cluster: EtcdCluster, prefix: string, id: string, names: readonly string[]): InProcessServer {
  const logger: Logger & { lines: string[] } = keptLogger();
  const registry = new ClientRegistry(names.map((n) => clientSettings(n, { timeout: 3_600_000, interval: 3_600_000 })), { logger });
  const fleet = new FleetState(plainEtcdSettings(cluster, prefix), { registry, logger, clock: systemClock, serverId: id });
  return {
    registry, fleet, log: logger.lines,
    async stop() {
      await fleet.stop();
      registry.stop();
    },
  };
}
