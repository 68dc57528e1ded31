// A step of the wall clock (NTP correcting a bad RTC after the server's
// boot, by minutes or days) while the server runs: as the reference's GLib
// timers, our waits and deadlines run on the monotonic clock. A step
// forward must not disable every client nor end their checker schedules;
// a step back must not keep a failing client enabled for the step's
// length, throttle a source, or hold back every peer's log lines.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { PEER_LINES_BURST, PeerLineBudget } from "../src/main/daemon/log-serve.js";
import { Admission } from "../src/main/serve/admission.js";
import { FAILURE_BURST } from "../src/main/serve/limits.js";
import { clientSettings } from "./helpers/clients.js";

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** A spawner whose checkers end at once with `code`; counts them. */
function checkers(code: () => number): { spawner: CheckerSpawner; started: () => number } {
  let started = 0;
  const spawner: CheckerSpawner = (_command, done) => {
    started++;
    queueMicrotask(() => done(code(), null));
    return { kill() {} };
  };
  return { spawner, started: () => started };
}

/** One client "web" with `over`'s settings, started on a manual clock, its checkers ending with `code`. */
function started(over: Parameters<typeof clientSettings>[1], code: () => number, random = 0.5): { clock: ManualClock; reg: ClientRegistry; started: () => number } {
  const clock = new ManualClock();
  const c = checkers(code);
  const reg = new ClientRegistry([clientSettings("web", over)], { logger: silentLogger, clock, spawner: c.spawner, random: () => random });
  reg.start();
  return { clock, reg, started: c.started };
}

/** Moves `clock` on by `ms` in 250 ms steps, letting the checkers' endings (microtasks) in. */
async function run(clock: ManualClock, ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 250) {
    clock.advance(250);
    await Promise.resolve();
  }
}

for (const step of [DAY_MS, 3 * 60_000]) {
  test(`a wall clock stepped ${step / 60_000} minutes forward: clients stay enabled and go on being checked`, async () => {
    // The defaults' proportions: a step of timeout - interval was enough.
    const { clock, reg, started: checked } = started({ timeout: 5_000, interval: 2_000 }, () => 0);
    await run(clock, 10_000);
    clock.stepWall(step);
    const before = checked();
    await run(clock, 30_000);
    assert.equal(reg.get("web")?.enabled, true, "disabled by the step");
    assert.ok(checked() - before >= 14, `${checked() - before} checkers in 30 s after the step`);
    // Expires is shown in the new time: the next checker's success set it.
    assert.ok(reg.get("web")!.expires!.getTime() > clock.now(), "Expires in the past");
    reg.stop();
  });
}

test("a wall clock stepped an hour back: a failing client is disabled at its timeout, not an hour later", async () => {
  let code = 0;
  const { clock, reg } = started({ timeout: 5_000, interval: 2_000 }, () => code);
  await run(clock, 10_000);
  assert.equal(reg.get("web")?.enabled, true);
  code = 1;
  clock.stepWall(-HOUR_MS);
  // The last success at most one interval ago: disabled within a timeout.
  await run(clock, 5_250);
  assert.equal(reg.get("web")?.enabled, false, "still enabled after its timeout");
  reg.stop();
});

test("a timeout changed after a step moves the expiry by the change, in the new time", async () => {
  const { clock, reg } = started({ timeout: 60_000, interval: 50_000 }, () => 1, 0);
  await run(clock, 1_000);
  clock.stepWall(DAY_MS);
  // The first expiry is an interval after the first checker (at 0): 49 s
  // were left; a timeout 30 s shorter leaves 19 s, not the day's step past.
  reg.update("web", { timeout: 30_000 });
  assert.equal(reg.get("web")?.enabled, true, "disabled by the change");
  assert.equal(reg.get("web")!.expires!.getTime(), clock.now() + 19_000);
  await run(clock, 18_750);
  assert.equal(reg.get("web")?.enabled, true);
  await run(clock, 250);
  assert.equal(reg.get("web")?.enabled, false);
  reg.stop();
});

test("a wall clock stepped back throttles no source and holds back no peer's log line", () => {
  const clock = new ManualClock();
  const admission = new Admission({ clock, maxPerSource: 0, slots: 4 });
  assert.equal(admission.enter("a"), null);
  for (let i = 0; i < FAILURE_BURST - 1; i++) admission.failed("b");
  clock.stepWall(-HOUR_MS);
  clock.advance(1_000);
  admission.leave("a");
  assert.equal(admission.enter("a"), null, "a source that had a connection open at the step");
  assert.equal(admission.enter("b"), null, "a source refilling after failures");

  const budget = new PeerLineBudget(clock, () => {});
  assert.equal(budget.allow("192.0.2.1"), true);
  clock.stepWall(-HOUR_MS);
  clock.advance(1_000);
  let allowed = 0;
  for (let i = 0; i < PEER_LINES_BURST; i++) if (budget.allow("192.0.2.2")) allowed++;
  assert.equal(allowed, PEER_LINES_BURST, "a new source's lines");
  budget.stop();
});
