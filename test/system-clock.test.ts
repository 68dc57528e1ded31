// The real clock's timers: they fire, a cancelled one does not, and one
// longer than Node's own limit (2^31-1 ms, which Node turns into 1 ms) waits
// instead of firing at once.

import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { systemClock } from "../src/main/clock.js";

test("a timer fires once, after its delay", async () => {
  let fired = 0;
  const started = Date.now();
  let at = 0;
  systemClock.setTimeout(() => {
    fired++;
    at = Date.now();
  }, 20);
  await sleep(200);
  assert.equal(fired, 1);
  assert.ok(at - started >= 19, `fired after ${at - started} ms`);
});

test("a cancelled timer never fires", async () => {
  let fired = false;
  systemClock.setTimeout(() => (fired = true), 10).cancel();
  await sleep(100);
  assert.equal(fired, false);
});

test("a timer beyond 2^31-1 ms is chained, not fired at once", async () => {
  let fired = false;
  const timer = systemClock.setTimeout(() => (fired = true), 2 ** 31 + 1_000);
  await sleep(100);
  assert.equal(fired, false);
  timer.cancel();
});
