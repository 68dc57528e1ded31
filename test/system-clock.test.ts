// The real clock's timers (one heap behind one Node timer, clock.ts): they
// fire, in the order they are due and in the order set when due together;
// a cancelled one does not, wherever it sits in the heap; one set by a
// callback waits for the next pass; a callback that throws leaves the
// others scheduled; and one longer than Node's own limit (2^31-1 ms, which
// Node turns into 1 ms) waits instead of firing at once.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { systemClock, type TimerHandle } from "../src/main/clock.js";

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

test("setTimeoutWith calls one shared function with each timer's own argument, in order with plain timers, and not once cancelled", async () => {
  const fired: string[] = [];
  const shared = (name: string): void => void fired.push(name);
  systemClock.setTimeoutWith(shared, 30, "b");
  systemClock.setTimeout(() => fired.push("plain"), 20);
  systemClock.setTimeoutWith(shared, 10, "a");
  systemClock.setTimeoutWith(shared, 15, "cancelled").cancel();
  systemClock.setTimeoutWith(shared, 30, "c");
  await sleep(200);
  assert.deepEqual(fired, ["a", "plain", "b", "c"]);
});

test("a fired or cancelled timer lets go of its argument", async () => {
  // Fired: the timer's handle (what a client record keeps until it sets the next) must not keep the argument alive.
  const handles: TimerHandle[] = [];
  const seen: object[] = [];
  handles.push(systemClock.setTimeoutWith((o: object) => void seen.push(o), 5, { big: "x".repeat(16) }));
  handles.push(systemClock.setTimeoutWith(() => undefined, 60_000, { big: "y" }));
  handles[1]!.cancel();
  await sleep(100);
  assert.equal(seen.length, 1);
  for (const h of handles) assert.equal((h as unknown as { arg: unknown }).arg, undefined);
});

test("timers fire in the order they are due, those due together in the order set", async () => {
  const fired: number[] = [];
  // Delays 0-90 ms in steps of 10, shuffled, three timers per delay.
  const delays = Array.from({ length: 30 }, (_, i) => (i % 10) * 10);
  for (let i = delays.length - 1; i > 0; i--) {
    const j = (i * 7919) % (i + 1);
    [delays[i], delays[j]] = [delays[j]!, delays[i]!];
  }
  delays.forEach((ms, i) => systemClock.setTimeout(() => fired.push(i), ms));
  await sleep(300);
  const expected = delays.map((ms, i) => ({ ms, i })).sort((a, b) => a.ms - b.ms || a.i - b.i).map((t) => t.i);
  assert.deepEqual(fired, expected);
});

test("cancelling timers anywhere in the heap leaves the others in order", async () => {
  // A fixed pseudo-random sequence (a linear congruential generator), so
  // that cancellations hit leaves, inner nodes and the head, in both of
  // the head's subtrees.
  let seed = 12345;
  const next = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const fired: number[] = [];
  const timers: Array<{ ms: number; handle: TimerHandle; live: boolean }> = [];
  for (let i = 0; i < 300; i++) {
    // Steps of 10 ms, so that a stall while setting them cannot reorder them.
    const ms = 5 + 10 * next(12);
    timers.push({ ms, handle: systemClock.setTimeout(() => fired.push(i), ms), live: true });
    if (i % 2 === 1) {
      const victim = timers[next(timers.length)]!;
      victim.handle.cancel();
      victim.live = false;
    }
  }
  timers[0]!.handle.cancel(); // twice, or once
  timers[0]!.live = false;
  await sleep(300);
  const expected = timers
    .map((t, i) => ({ ...t, i }))
    .filter((t) => t.live)
    .sort((a, b) => a.ms - b.ms || a.i - b.i)
    .map((t) => t.i);
  assert.ok(expected.length > 100);
  assert.deepEqual(fired, expected);
});

test("a timer set for now by a callback runs after the current pass, not in it", async () => {
  const order: string[] = [];
  systemClock.setTimeout(() => {
    order.push("a");
    systemClock.setTimeout(() => order.push("c"), 0);
    setImmediate(() => order.push("immediate"));
  }, 5);
  systemClock.setTimeout(() => order.push("b"), 5);
  await sleep(100);
  assert.deepEqual(order, ["a", "b", "immediate", "c"]);
});

test("timers set a moment apart in one run of JavaScript, for the same delay, fire in one pass", async () => {
  // As Node's own, which count from the event loop's time of the turn:
  // however long the code between the two takes, they are due together.
  for (let round = 0; round < 5; round++) {
    const order: string[] = [];
    systemClock.setTimeout(() => {
      order.push("a");
      setImmediate(() => order.push("immediate"));
    }, 5);
    const start = performance.now();
    while (performance.now() - start < 2);
    systemClock.setTimeout(() => order.push("b"), 5);
    await sleep(30);
    assert.deepEqual(order, ["a", "b", "immediate"], `round ${round}`);
  }
});

test("a timer cancelled by an earlier one of the same pass does not run", async () => {
  const order: string[] = [];
  systemClock.setTimeout(() => {
    order.push("first");
    second.cancel();
  }, 5);
  const second = systemClock.setTimeout(() => order.push("second"), 5);
  systemClock.setTimeout(() => order.push("third"), 5);
  await sleep(100);
  assert.deepEqual(order, ["first", "third"]);
});

test("a callback that throws leaves the later timers scheduled", () => {
  // In a child: the throw is an uncaught exception, as with Node's timers.
  const clock = fileURLToPath(new URL("../src/main/clock.js", import.meta.url));
  const script = `
    const { systemClock } = await import(${JSON.stringify(clock)});
    const seen = [];
    process.on("uncaughtException", (e) => seen.push("caught " + e.message));
    systemClock.setTimeout(() => { throw new Error("boom"); }, 5);
    systemClock.setTimeout(() => seen.push("same pass"), 5);
    systemClock.setTimeout(() => seen.push("later"), 40);
    setTimeout(() => console.log(JSON.stringify(seen)), 150);
  `;
  const out = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 10_000 });
  assert.equal(out.status, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout), ["caught boom", "same pass", "later"]);
});

test("a timer beyond 2^31-1 ms is chained, not fired at once", async () => {
  let fired = false;
  const timer = systemClock.setTimeout(() => (fired = true), 2 ** 31 + 1_000);
  await sleep(100);
  assert.equal(fired, false);
  timer.cancel();
});
