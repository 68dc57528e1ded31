// A SIGHUP reload that changes a client's timeout or interval starts its
// checker schedule and expiry again as a restart does (the reference's
// init_checker), not as D-Bus's Timeout and Interval setters move them:
// those assume the expiry is the last success's plus the timeout, which
// after a start, an enable or a secret sent it is not. Found by the reload
// audit: a raised interval or a lowered timeout disabled healthy clients,
// and the disabled state outlived a restart.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { applyReload } from "../src/main/clients/reload.js";
import type { ClientSettings } from "../src/main/clients/settings.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { clientSettings } from "./helpers/clients.js";

const SECOND = 1_000;
const MINUTE = 60 * SECOND;

/** Checkers that succeed when the test says; how many started. */
function succeeding(): { spawner: CheckerSpawner; finishAll(): void; started(): number } {
  const running: Array<(code: number | null, signal: number | null) => void> = [];
  let count = 0;
  return {
    spawner: (_command, done) => {
      count++;
      running.push(done);
      return { kill() {} };
    },
    finishAll: () => {
      for (const done of running.splice(0)) done(0, null);
    },
    started: () => count,
  };
}

/** Runs the clock `ms` on in steps of a second, every checker succeeding a second after it started. */
function run(clock: ManualClock, checkers: ReturnType<typeof succeeding>, ms: number): void {
  for (let t = 0; t < ms; t += SECOND) {
    checkers.finishAll();
    clock.advance(SECOND);
  }
}

function fleet(settings: Partial<ClientSettings>): ClientSettings[] {
  return ["a", "b", "c"].map((name) => clientSettings(name, { checker: `check ${name}`, ...settings }));
}

/** A started registry of three clients with `settings`, their checkers succeeding when run() says. */
function started(settings: Partial<ClientSettings>): { clock: ManualClock; checkers: ReturnType<typeof succeeding>; before: ClientSettings[]; reg: ClientRegistry } {
  const clock = new ManualClock();
  const checkers = succeeding();
  const before = fleet(settings);
  const reg = new ClientRegistry(before, { logger: silentLogger, clock, spawner: checkers.spawner, random: () => 0.5 });
  reg.start();
  return { clock, checkers, before, reg };
}

test("a reload raising the interval just after a start keeps every client enabled", () => {
  const { clock, checkers, before, reg } = started({ timeout: 5 * MINUTE, interval: 20 * SECOND });
  clock.advance(3 * SECOND);
  // The first checkers were due at 10 s and the clients expire at 30 s; the
  // setter's rule moved the next checker to 43 s and kept the expiry.
  applyReload(reg, before, fleet({ timeout: 5 * MINUTE, interval: 40 * SECOND }), silentLogger);
  run(clock, checkers, 10 * MINUTE);
  for (const name of ["a", "b", "c"]) assert.equal(reg.get(name)?.enabled, true, `${name} enabled`);
  assert.ok(checkers.started() >= 3 * 14, `${checkers.started()} checkers`);
});

test("a reload raising the interval of a client that checked OK a while ago keeps it enabled", () => {
  const { clock, checkers, before, reg } = started({ timeout: MINUTE, interval: 20 * SECOND });
  run(clock, checkers, 2 * MINUTE);
  // 15 s after a success the expiry is 45 s ahead; the setter's rule put
  // the next checker 50 s ahead.
  applyReload(reg, before, fleet({ timeout: MINUTE, interval: 50 * SECOND }), silentLogger);
  run(clock, checkers, 5 * MINUTE);
  for (const name of ["a", "b", "c"]) assert.equal(reg.get(name)?.enabled, true, `${name} enabled`);
});

test("a reload lowering the timeout just after a start keeps every client enabled", () => {
  const { clock, checkers, before, reg } = started({ timeout: 60 * MINUTE, interval: 20 * SECOND });
  clock.advance(4 * SECOND);
  // The expiry was the start's (now + delay + interval): moved by -30
  // minutes, it had passed, and every client was disabled at once.
  applyReload(reg, before, fleet({ timeout: 30 * MINUTE, interval: 20 * SECOND }), silentLogger);
  for (const name of ["a", "b", "c"]) assert.equal(reg.get(name)?.enabled, true, `${name} enabled at the reload`);
  run(clock, checkers, 40 * MINUTE);
  for (const name of ["a", "b", "c"]) assert.equal(reg.get(name)?.enabled, true, `${name} enabled`);
});

test("a reload lowering the timeout after a secret was sent keeps the client enabled", () => {
  const { clock, checkers, before, reg } = started({ timeout: 60 * MINUTE, extendedTimeout: 15 * MINUTE, interval: 20 * SECOND });
  run(clock, checkers, MINUTE);
  // As a secret sent does: the expiry an extended timeout ahead.
  reg.secretDelivered("a");
  applyReload(reg, before, fleet({ timeout: 10 * MINUTE, extendedTimeout: 15 * MINUTE, interval: 20 * SECOND }), silentLogger);
  assert.equal(reg.get("a")?.enabled, true, "enabled at the reload");
  run(clock, checkers, 30 * MINUTE);
  for (const name of ["a", "b", "c"]) assert.equal(reg.get(name)?.enabled, true, `${name} enabled`);
});

test("after a reload changing the timeout, a client whose checkers fail is still disabled, as after a restart", () => {
  const clock = new ManualClock();
  let started = 0;
  const failing: CheckerSpawner = (_command, done) => {
    started++;
    queueMicrotask(() => done(1, null));
    return { kill() {} };
  };
  const before = fleet({ timeout: 60 * MINUTE, interval: 20 * SECOND });
  const reg = new ClientRegistry(before, { logger: silentLogger, clock, spawner: failing, random: () => 0.5 });
  reg.start();
  clock.advance(4 * SECOND);
  applyReload(reg, before, fleet({ timeout: 2 * MINUTE, interval: 20 * SECOND }), silentLogger);
  clock.advance(5 * MINUTE);
  for (const name of ["a", "b", "c"]) assert.equal(reg.get(name)?.enabled, false, `${name} disabled`);
  assert.ok(started >= 3, `${started} checkers`);
});

test("the reload's line names the clients added, removed and changed, ten of each at most", () => {
  const lines: string[] = [];
  const logger = { ...silentLogger, info: (m: string): void => void lines.push(m) };
  const names = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  const before = [...names("gone", 12), "kept"].map((name) => clientSettings(name));
  const after = [...names("new", 2), "kept"].map((name) => clientSettings(name, name === "kept" ? { timeout: 7 * MINUTE } : {}));
  const reg = new ClientRegistry(before, { logger: silentLogger, clock: new ManualClock(), spawner: () => ({ kill() {} }) });
  applyReload(reg, before, after, logger);
  assert.deepEqual(lines, ["Reloaded clients.conf: 2 added (new0, new1), 12 removed (gone0, gone1, gone2, gone3, gone4, gone5, gone6, gone7, gone8, gone9 and 2 more), 1 changed (kept)"]);
});
