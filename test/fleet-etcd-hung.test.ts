// A server stopping while etcd hangs (issue 15, docs/ETCD.md "When etcd is
// down"): an etcd that stops answering without closing its connections (a
// partition that drops packets, a frozen host) must not hold the server's
// shutdown. Here the one member of a real etcd is stopped with SIGSTOP;
// FleetState.stop() ends, and the change it could not write is still among
// the unsent ones, which the server's state file keeps.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { systemClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { FleetState } from "../src/main/fleet/fleet-state.js";
import { clientSettings } from "./helpers/clients.js";
import { etcdForFile, etcdMissing, plainEtcdSettings } from "./helpers/etcd.js";

const skip = etcdMissing();
const etcd = etcdForFile(1);

test("with etcd hung, stop() ends without it, and the change it could not write stays unsent", { skip, timeout: 30_000 }, async () => {
  const cluster = etcd();
  const registry = new ClientRegistry(["alpha", "beta"].map((n) => clientSettings(n, { timeout: 3_600_000, interval: 3_600_000 })), { logger: silentLogger });
  const fleet = new FleetState(
    plainEtcdSettings(cluster, "/hung/"),
    { registry, logger: silentLogger, clock: systemClock, serverId: "server-a" },
  );
  const member = cluster.members[0]!;
  try {
    await fleet.start();
    assert.equal(fleet.degraded, false);
    member.freeze(true);
    registry.disable("alpha");
    await fleet.stop();
    // Resolved while etcd is still frozen: nothing waited for it to come back.
    assert.deepEqual(
      fleet.unsent().filter((u) => u.key === "clients/alpha/Enabled").map((u) => u.value),
      [false],
      "the disable that etcd never took is not among the unsent changes",
    );
  } finally {
    member.freeze(false);
    registry.stop();
  }
});
