// When the state file is saved (src/main/state/state-file.ts, StateSaver):
// one second after a change, or longer after a save that took long, so
// that saving never takes more than SAVE_MAX_SHARE of the server's time
// (a 10,000-client state file in a reboot wave), and never later than
// SAVE_MAX_DELAY_MS. On a manual clock; the save itself is real (a file
// in a temporary directory).

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock, type Clock } from "../src/main/clock.js";
import { SAVE_DELAY_MS, SAVE_MAX_DELAY_MS, SAVE_MAX_SHARE, saveDelay, StateSaver } from "../src/main/state/state-file.js";

test("the delay is a second, or the last save's duration over the share saving may take, at most SAVE_MAX_DELAY_MS", () => {
  assert.equal(saveDelay(0), SAVE_DELAY_MS);
  assert.equal(saveDelay(SAVE_DELAY_MS * SAVE_MAX_SHARE), SAVE_DELAY_MS);
  assert.equal(saveDelay(90), Math.ceil(90 / SAVE_MAX_SHARE));
  assert.ok(saveDelay(90) > SAVE_DELAY_MS);
  assert.equal(saveDelay(10_000), SAVE_MAX_DELAY_MS);
});

test("a slow save puts the next one off; a fast one brings the one-second delay back", () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-saver-"));
  const manual = new ManualClock();
  // Time spent inside a save: the manual clock's own timers are not fired from within one.
  let inside = 0;
  const clock: Clock = { now: () => manual.now() + inside, setTimeout: (fn, ms) => manual.setTimeout(fn, ms) };
  let saveTakes = 100;
  let saves = 0;
  const path = join(dir, "clients.json");
  const saver = new StateSaver(path, () => {
    inside += saveTakes;
    saves++;
    return [`{"save":${saves}}\n`];
  }, clock);
  try {
    saver.changed();
    manual.advance(SAVE_DELAY_MS - 1);
    assert.equal(existsSync(path), false, "saved before its second");
    manual.advance(1);
    assert.equal(readFileSync(path, "utf8"), '{"save":1}\n');

    saver.changed();
    saveTakes = 0;
    manual.advance(saveDelay(100) - 1);
    assert.equal(saves, 1, "a save that took 100 ms is followed by another within saveDelay(100)");
    manual.advance(1);
    assert.equal(saves, 2);

    saver.changed();
    manual.advance(SAVE_DELAY_MS - 1);
    assert.equal(saves, 2);
    manual.advance(1);
    assert.equal(saves, 3, "after a fast save the next comes after a second again");
    assert.equal(readFileSync(path, "utf8"), '{"save":3}\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("saveNow saves at once and cancels the pending save", () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-saver-"));
  const clock = new ManualClock();
  let saves = 0;
  const saver = new StateSaver(join(dir, "clients.json"), () => [`{"save":${++saves}}\n`], clock);
  try {
    saver.changed();
    saver.saveNow();
    assert.equal(saves, 1);
    clock.advance(SAVE_MAX_DELAY_MS);
    assert.equal(saves, 1, "the pending save ran after saveNow");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
