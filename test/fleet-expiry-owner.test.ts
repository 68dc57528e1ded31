// In a fleet the timeout, like the checker, is decided by the server that
// runs the client's checker (docs/ETCD.md "Checkers"): elsewhere a passed
// expiry is looked at again every OWNER_GRACE_MS until the owner's news
// arrives (a new Expires, or the client disabled) or this server becomes
// the owner. In process, with a clock the test moves.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { OWNER_GRACE_MS } from "../src/main/clients/expiry.js";
import { ManualClock } from "../src/main/clock.js";
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
