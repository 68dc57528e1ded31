// within() (src/main/within.ts): a promise's value, or what stands for it
// once a stop has waited long enough; the timer gone as soon as either comes.

import { test } from "node:test";
import assert from "node:assert/strict";
import { within } from "../src/main/within.js";

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

test("the value when it comes in time, and no timer left behind", async () => {
  const before = timers();
  assert.equal(await within(Promise.resolve(7), 10_000, 0), 7);
  assert.equal(timers(), before, "the deadline's timer was left running");
});

test("what stands for it when the promise is late or fails", async () => {
  const never = new Promise<number>(() => undefined);
  const started = Date.now();
  assert.equal(await within(never, 50, -1), -1);
  assert.ok(Date.now() - started >= 45, "gave up before its time");
  assert.equal(await within(Promise.reject(new Error("gone")), 10_000, -2), -2);
  assert.equal(await within(never, -5, -3), -3, "a deadline already past: at once");
});
