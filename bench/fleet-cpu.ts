// The fleet's own CPU per secret, without TLS or a load generator (the
// etcd wave in bench/etcd-wave.ts measures it all together, etcd's members
// on the same cores included): 10,000 clients, each delivered its secret at
// 500 a second, with and without the link to a 3-member etcd, alternating.
// Prints the server's CPU ms a secret for each.
//
// `npx tsc -p . && node dist/bench/fleet-cpu.js`

import { ClientRegistry } from "../src/main/clients/registry.js";
import { systemClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { FleetState } from "../src/main/fleet/fleet-state.js";
import { clientSettings } from "../test/helpers/clients.js";
import { startEtcdCluster } from "../test/helpers/etcd.js";

const CLIENTS = 10_000;
/** Secrets per 50-ms step: 500 a second, as in the measured waves on the benchmark machine. */
const STEP = 25;
const DAY = 86_400_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const cluster = await startEtcdCluster();
try {
  for (const [round, withEtcd] of [false, true, false, true].entries()) {
    const names = Array.from({ length: CLIENTS }, (_, i) => `machine${i}`);
    const settings = names.map((n, i) => ({ ...clientSettings(n, { timeout: DAY, interval: DAY, extendedTimeout: DAY }), keyId: i.toString(16).toUpperCase().padStart(64, "0") }));
    const registry = new ClientRegistry(settings, { logger: silentLogger });
    const etcd = { endpoints: cluster.endpoints.split(","), prefix: `/fleet-cpu-${round}/`, ca: null, cert: null, key: null, user: null, passwordFile: null };
    const fleet = withEtcd ? new FleetState(etcd, { registry, logger: silentLogger, clock: systemClock }) : null;
    await fleet?.start();
    // The first server's seed comes back through the watch: let it pass.
    await sleep(3_000);
    const before = process.cpuUsage();
    for (let i = 0; i < CLIENTS; i += STEP) {
      for (const name of names.slice(i, i + STEP)) registry.secretDelivered(name);
      await sleep(50);
    }
    await sleep(1_000);
    const used = process.cpuUsage(before);
    process.stdout.write(`${withEtcd ? "with etcd" : "without etcd"}: ${((used.user + used.system) / 1_000 / CLIENTS).toFixed(3)} ms CPU a secret\n`);
    await fleet?.stop();
    registry.stop();
  }
} finally {
  await cluster.stop();
}
