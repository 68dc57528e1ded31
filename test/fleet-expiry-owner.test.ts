// In a fleet the timeout, like the checker, is decided by the server that
// runs the client's checker (docs/ETCD.md "Checkers"): elsewhere a passed
// expiry is looked at again every OWNER_GRACE_MS until the owner's news
// arrives (a new Expires, or the client disabled) or this server becomes
// the owner. In process, with a clock the test moves.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { OWNER_GRACE_MS, STALL_GRACE_MS, STALL_MS } from "../src/main/clients/expiry.js";
import { ManualClock, type Clock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { clientSettings } from "./helpers/clients.js";

/** Checkers that never finish: only the expiry decides here. */
const hanging: CheckerSpawner = () => ({ kill() {} });

function fleetMember(): { clock: ManualClock; registry: ClientRegistry; setOwner(owns: boolean): void } {
  const clock = new ManualClock();
  const registry = new ClientRegistry([clientSettings("web", { timeout: 5_000, interval: 2_000 })], { logger: silentLogger, clock, spawner: hanging, random: () => 0.5 });
  let owns = false;
  registry.setCheckerOwnership(() => owns);
  registry.start();
  return { clock, registry, setOwner: (o) => void (owns = o) };
}

test("a server that does not run a client's checker does not disable it when its expiry passes", () => {
  const { clock, registry } = fleetMember();
  clock.advance(5_000 + 10 * OWNER_GRACE_MS);
  assert.equal(registry.get("web")!.enabled, true);
});

test("once it runs the checker (the owner died), it disables a client whose expiry passed", () => {
  const { clock, registry, setOwner } = fleetMember();
  clock.advance(5_000 + 3 * OWNER_GRACE_MS);
  setOwner(true);
  clock.advance(OWNER_GRACE_MS);
  assert.equal(registry.get("web")!.enabled, false);
});

test("an Expires moved by the owner's checker success arrives late and still counts", () => {
  const { clock, registry, setOwner } = fleetMember();
  clock.advance(5_000 + OWNER_GRACE_MS / 2);
  registry.adopt("web", { runtime: { expires: clock.now() + 5_000 }, settings: {} });
  setOwner(true);
  clock.advance(4_000);
  assert.equal(registry.get("web")!.enabled, true, "disabled before the adopted expiry");
  clock.advance(1_000);
  assert.equal(registry.get("web")!.enabled, false, "not disabled at the adopted expiry");
});

/**
 * A clock that can stall: while the process is stopped, time goes on
 * (now() jumps) but no timer has fired; they fire after, late.
 */
function stallingClock(): Clock & { advance(ms: number): void; stall(ms: number): void } {
  const manual = new ManualClock();
  let lost = 0;
  return {
    now: () => manual.now() + lost,
    elapsed: () => manual.elapsed() + lost,
    setTimeout: (fn, ms) => manual.setTimeout(fn, ms),
    setTimeoutWith: (fn, ms, arg) => manual.setTimeoutWith(fn, ms, arg),
    advance: (ms) => manual.advance(ms),
    stall(ms) {
      lost += ms;
    },
  };
}

/**
 * A fleet member that runs the checker, stopped for 20 s just before its
 * client's expiry, and running again: its expiry timer has fired late,
 * before any of the I/O that waited (here: the Expires of the server
 * that took the checker over).
 */
function stalledPastExpiry(): { clock: ReturnType<typeof stallingClock>; registry: ClientRegistry } {
  const clock = stallingClock();
  const registry = new ClientRegistry([clientSettings("web", { timeout: 5_000, interval: 2_000 })], { logger: silentLogger, clock, spawner: hanging, random: () => 0.5 });
  registry.setCheckerOwnership(() => true);
  registry.start();
  // Its first expiry: the first checker's delay (half an interval) and an interval.
  assert.equal(registry.get("web")!.expires!.getTime(), clock.now() + 3_000);
  clock.advance(2_000);
  clock.stall(20_000);
  clock.advance(1_000 + STALL_MS);
  return { clock, registry };
}

test("after a stall, the owner looks again before it disables: the news that waited meanwhile (another server's check) counts", () => {
  const { clock, registry } = stalledPastExpiry();
  assert.equal(registry.get("web")!.enabled, true, "disabled on a timer that fired late, before the fleet's news was read");
  registry.adopt("web", { runtime: { expires: clock.now() + 5_000 }, settings: {} });
  clock.advance(STALL_GRACE_MS);
  assert.equal(registry.get("web")!.enabled, true, "disabled though the fleet moved its expiry");
});

test("after a stall with no news, the owner disables the client once the grace is over", () => {
  const { clock, registry } = stalledPastExpiry();
  assert.equal(registry.get("web")!.enabled, true);
  clock.advance(STALL_GRACE_MS);
  assert.equal(registry.get("web")!.enabled, false, "still enabled after the grace, its expiry long passed");
});
