// When a server says it is DEGRADED (docs/ETCD.md "When etcd is down"):
// once etcd has failed for DEGRADED_AFTER_MS, not at its first failure. A
// leader election makes every member refuse or time out requests for a
// second or two; a CRITICAL line for each would cry wolf. In process,
// against a real one-member etcd stopped and started again; the server's
// clock stands still unless the test moves it, so that how long the
// machine takes to restart etcd does not decide what is logged.

import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { systemClock, type Clock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { DEGRADED_AFTER_MS, FleetState, RETRY_MS } from "../src/main/fleet/fleet-state.js";
import { clientSettings } from "./helpers/clients.js";
import { etcdForFile, etcdMissing, plainEtcdSettings } from "./helpers/etcd.js";
import { keptLogger } from "./helpers/log-watch.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const etcd = etcdForFile(1);

/** The system's timers, and a time that moves only when told. */
function stillClock(): Clock & { advance(ms: number): void } {
  let now = Date.now();
  return {
    now: () => now,
    elapsed: () => now,
    setTimeout: (fn, ms) => systemClock.setTimeout(fn, ms),
    setTimeoutWith: (fn, ms, arg) => systemClock.setTimeoutWith(fn, ms, arg),
    advance(ms) {
      now += ms;
    },
  };
}

test("a failure shorter than DEGRADED_AFTER_MS is said at debug level only; a longer one is DEGRADED, once, and its end is said", { skip, timeout: 90_000 }, async () => {
  const cluster = etcd();
  const logger = keptLogger();
  const clock = stillClock();
  const registry = new ClientRegistry(["alpha", "beta"].map((n) => clientSettings(n, { timeout: 3_600_000, interval: 3_600_000 })), { logger: silentLogger });
  const fleet = new FleetState(
    plainEtcdSettings(cluster, "/degraded/"),
    { registry, logger, clock, serverId: "server-a" },
  );
  const member = cluster.members[0]!;
  const seen = (pattern: RegExp, what: string): Promise<void> =>
    eventually(() => logger.lines.some((l) => pattern.test(l)) || undefined, { what, timeoutMs: 30_000 }).then(() => undefined);
  const count = (pattern: RegExp): number => logger.lines.filter((l) => pattern.test(l)).length;
  try {
    await fleet.start();
    assert.equal(fleet.degraded, false);

    // A short outage: etcd stops and comes back while the clock stands still.
    await member.stop();
    await seen(/^DEBUG: etcd failed \(/, "the first failure");
    assert.equal(fleet.degraded, true);
    member.start();
    await cluster.healthy();
    await seen(/^DEBUG: etcd answers again after \d+ ms/, "the end of the short outage");
    assert.equal(fleet.degraded, false);
    assert.equal(count(/^CRITICAL|^WARNING: etcd is reachable again/), 0, `a short outage was announced:\n${logger.lines.join("\n")}`);

    // A long one: failures go on past DEGRADED_AFTER_MS.
    logger.lines.length = 0;
    await member.stop();
    await seen(/^DEBUG: etcd failed \(/, "the first failure of the long outage");
    clock.advance(DEGRADED_AFTER_MS);
    await seen(/^CRITICAL: etcd unreachable \(.*\): DEGRADED, serving from the local copy/, "DEGRADED after DEGRADED_AFTER_MS");
    // Retried every second, said once.
    await sleep(2 * RETRY_MS + 500);
    assert.equal(count(/^CRITICAL/), 1, `DEGRADED said more than once:\n${logger.lines.join("\n")}`);
    // A change made meanwhile: held for etcd, and counted as written when it returns (it said "0 changes pending", counted after).
    registry.disable("alpha");
    member.start();
    await cluster.healthy();
    await seen(/^WARNING: etcd is reachable again: client state shared with the fleet \(\d+ changes? held for it written\)$/, "the end of the outage");
    const [, held] = /\((\d+) changes? held/.exec(logger.lines.find((l) => /reachable again/.test(l))!)!;
    assert.ok(Number(held) >= 1, `the disable made during the outage was counted: ${held}`);
    assert.equal(fleet.degraded, false);
  } finally {
    await fleet.stop();
    registry.stop();
  }
});

test("a lease lost for less than DEGRADED_AFTER_MS is said at debug level, with its new registration; a longer loss at WARNING, in the server's words", { skip, timeout: 90_000 }, async () => {
  const cluster = etcd();
  const logger = keptLogger();
  const clock = stillClock();
  const registry = new ClientRegistry([clientSettings("alpha", { timeout: 3_600_000, interval: 3_600_000 })], { logger: silentLogger });
  const fleet = new FleetState(plainEtcdSettings(cluster, "/lease-lost/"), { registry, logger, clock, serverId: "server-a" });
  const seen = (pattern: RegExp, what: string): Promise<void> =>
    eventually(() => logger.lines.some((l) => pattern.test(l)) || undefined, { what, timeoutMs: 30_000, context: () => logger.lines.join("\n") }).then(() => undefined);
  const leaseLines = (): string[] => logger.lines.filter((l) => /lease|registered/.test(l));
  try {
    await fleet.start();
    // Revoked by hand: etcd answers the next renewal that the lease is gone, and the server registers again a second later.
    const listed = (await cluster.ctl(["lease", "list"])).stdout.toString();
    const leases = listed.split("\n").filter((l) => /^[0-9a-f]+$/.test(l));
    assert.equal(leases.length, 1, listed);
    const revoked = await cluster.ctl(["lease", "revoke", leases[0]!]);
    assert.equal(revoked.code, 0, revoked.stderr.toString());
    await seen(/^DEBUG: registered with etcd again, [\d.]+ s after the lease was lost: checkers shared with the fleet again$/, "the new registration");
    // Before: "WARNING: etcd lease lost (Lease We lost connection to etcd ... is expired or revoked)", and nothing of the new registration.
    assert.deepEqual(leaseLines(), [
      "DEBUG: etcd lease lost (expired or revoked): running every client's checker until registered again",
      leaseLines()[1],
    ], "the short loss");

    // A long one: etcd stopped past the lease's TTL, and past DEGRADED_AFTER_MS.
    logger.lines.length = 0;
    const member = cluster.members[0]!;
    await member.stop();
    await seen(/^DEBUG: etcd lease lost \(expired or revoked\)/, "the loss");
    clock.advance(DEGRADED_AFTER_MS);
    await seen(/^WARNING: etcd lease lost 5\.0 s ago, not registered again yet: running every client's checker until registered again$/, "the loss, at WARNING");
    member.start();
    await cluster.healthy();
    await seen(/^WARNING: registered with etcd again, 5\.0 s after the lease was lost: checkers shared with the fleet again$/, "the new registration, at WARNING");
  } finally {
    await fleet.stop();
    registry.stop();
  }
});
