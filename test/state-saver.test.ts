// When the state file is saved (src/main/state/state-file.ts, StateSaver):
// one second after a change, or longer after a save that took long, so
// that saving never takes more than SAVE_MAX_SHARE of the server's time
// (a 10,000-client state file in a reboot wave), and never later than
// SAVE_MAX_DELAY_MS; written in the background, one save at a time, and
// overtaken by saveNow (shutdown); a failed save tried again until one
// succeeds, and said once. On a manual clock; the save itself is real (a
// file in a temporary directory).

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock, type Clock } from "../src/main/clock.js";
import { ROUTINE_SAVE_DELAY_MS, routineChange, SAVE_DELAY_MS, SAVE_MAX_DELAY_MS, SAVE_MAX_SHARE, SAVE_RETRY_MS, saveDelay, StateSaver } from "../src/main/state/state-file.js";
import type { ClientView, RegistryEvent } from "../src/main/clients/contract.js";
import { events } from "../src/main/events.js";
import { logServeEvents, STATE_REPLACED_LINE_MS } from "../src/main/daemon/log-serve.js";
import type { Logger } from "../src/main/daemon/log.js";

test("the delay is a second, or the last save's duration over the share saving may take, at most SAVE_MAX_DELAY_MS", () => {
  assert.equal(saveDelay(0), SAVE_DELAY_MS);
  assert.equal(saveDelay(SAVE_DELAY_MS * SAVE_MAX_SHARE), SAVE_DELAY_MS);
  assert.equal(saveDelay(90), Math.ceil(90 / SAVE_MAX_SHARE));
  assert.ok(saveDelay(90) > SAVE_DELAY_MS);
  assert.equal(saveDelay(10_000), SAVE_MAX_DELAY_MS);
});

test("a slow save puts the next one off; a fast one brings the one-second delay back", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-saver-"));
  const manual = new ManualClock();
  // Time spent inside a save: the manual clock's own timers are not fired from within one.
  let inside = 0;
  const clock: Clock = {
    now: () => manual.now() + inside,
    elapsed: () => manual.elapsed() + inside,
    setTimeout: (fn, ms) => manual.setTimeout(fn, ms),
    setTimeoutWith: (fn, ms, arg) => manual.setTimeoutWith(fn, ms, arg),
  };
  let saveTakes = 100;
  let saves = 0;
  const path = join(dir, "clients.json");
  const saver = new StateSaver(path, () => {
    inside += saveTakes;
    saves++;
    return [Buffer.from(`{"save":${saves}}\n`)];
  }, clock);
  try {
    saver.changed();
    manual.advance(SAVE_DELAY_MS - 1);
    assert.equal(existsSync(path), false, "saved before its second");
    manual.advance(1);
    await saver.idle();
    assert.equal(readFileSync(path, "utf8"), '{"save":1}\n');

    saver.changed();
    saveTakes = 0;
    manual.advance(saveDelay(100) - 1);
    assert.equal(saves, 1, "a save that took 100 ms is followed by another within saveDelay(100)");
    manual.advance(1);
    assert.equal(saves, 2);
    await saver.idle();

    saver.changed();
    manual.advance(SAVE_DELAY_MS - 1);
    assert.equal(saves, 2);
    manual.advance(1);
    assert.equal(saves, 3, "after a fast save the next comes after a second again");
    await saver.idle();
    assert.equal(readFileSync(path, "utf8"), '{"save":3}\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a background save that fails is tried again SAVE_RETRY_MS later, with no further change, until one succeeds", () =>
  withCountingSaver(async ({ saver, clock, dir, path, saves }) => {
    const failures: string[] = [];
    const onFailure = ({ reason }: { reason: string }): void => void failures.push(reason);
    events.stateSaveFailed.subscribe(onFailure);
    try {
      // The state directory gone (a full disk or a read-only one fails the same way: no file written).
      rmSync(dir, { recursive: true });
      saver.changed();
      clock.advance(SAVE_DELAY_MS);
      await saver.idle();
      assert.deepEqual([saves(), failures], [1, ["ENOENT"]]);
      clock.advance(SAVE_RETRY_MS - 1);
      assert.equal(saves(), 1, "tried again before SAVE_RETRY_MS");
      clock.advance(1);
      assert.equal(saves(), 2, "not tried again");
      await saver.idle();
      assert.deepEqual(failures, ["ENOENT", "ENOENT"]);
      mkdirSync(dir);
      clock.advance(SAVE_RETRY_MS);
      await saver.idle();
      assert.equal(readFileSync(path, "utf8"), '{"save":3}\n', "the state did not reach the disk once it could");
      clock.advance(SAVE_MAX_DELAY_MS * 3);
      assert.equal(saves(), 3, "tried again after a save succeeded");
      assert.equal(failures.length, 2);
    } finally {
      events.stateSaveFailed.unsubscribe(onFailure);
    }
  }));

test("the log says a failing save once for each reason, naming the file, and once when a save succeeds again", () => {
  const lines: string[] = [];
  const logger: Logger = {
    debug() {},
    info: (m) => void lines.push(`INFO: ${m}`),
    warning: (m) => void lines.push(`WARNING: ${m}`),
    error: (m) => void lines.push(`ERROR: ${m}`),
    critical: (m) => void lines.push(`CRITICAL: ${m}`),
  };
  const unlog = logServeEvents(logger);
  const path = "/var/lib/mandos/clients.json";
  try {
    for (const reason of ["ENOSPC", "ENOSPC", "ENOSPC", "EIO", "EIO"]) events.stateSaveFailed.publish({ path, reason });
    events.stateSaved.publish({ path, bytes: 10, durationMs: 1, replacedOther: false });
    events.stateSaved.publish({ path, bytes: 10, durationMs: 1, replacedOther: false });
    events.stateSaveFailed.publish({ path, reason: "ENOSPC" });
    assert.deepEqual(lines, [
      "WARNING: Could not save persistent state: No space left on device (/var/lib/mandos/clients.json)",
      "WARNING: Could not save persistent state: Input/output error (/var/lib/mandos/clients.json)",
      "INFO: Saved persistent state to /var/lib/mandos/clients.json again, after 5 failed saves",
      "WARNING: Could not save persistent state: No space left on device (/var/lib/mandos/clients.json)",
    ]);
  } finally {
    unlog();
  }
});

test("two servers saving to one state file: each save that finds the other's file says so, at most once every 10 minutes", () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-saver-"));
  const path = join(dir, "clients.json");
  const clock = new ManualClock();
  const lines: string[] = [];
  const logger: Logger = { debug() {}, info() {}, warning: (m) => void lines.push(m), error() {}, critical() {} };
  const unlog = logServeEvents(logger, clock);
  const seen: boolean[] = [];
  const onSaved = ({ path: saved, replacedOther }: { path: string; replacedOther: boolean }): void => void (saved === path && seen.push(replacedOther));
  events.stateSaved.subscribe(onSaved);
  try {
    writeFileSync(path, "{}\n");
    // Both started with the same file; then each saves in turn (b finds a's at once).
    const a = new StateSaver(path, () => [Buffer.from("a\n")], clock);
    const b = new StateSaver(path, () => [Buffer.from("b\n")], clock);
    for (const saver of [a, a, b, a, b]) assert.equal(saver.saveNow(), null);
    assert.deepEqual(seen, [false, false, true, true, true]);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, new RegExp(`^${path.replace(/[.]/g, "\\.")} was written by another process since this server's last save: is a second server using the state directory `));
    clock.advance(STATE_REPLACED_LINE_MS);
    assert.equal(a.saveNow(), null);
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /\(3 saves found it so since this was last said\)/);
  } finally {
    events.stateSaved.unsubscribe(onSaved);
    unlog();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A saver on a manual clock whose Nth save writes `{"save":N}`, in a temporary directory removed afterwards. */
async function withCountingSaver(
  body: (t: { saver: StateSaver; clock: ManualClock; dir: string; path: string; saves: () => number }) => void | Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-saver-"));
  const clock = new ManualClock();
  let saves = 0;
  const path = join(dir, "clients.json");
  const saver = new StateSaver(path, () => [Buffer.from(`{"save":${++saves}}\n`)], clock);
  try {
    await body({ saver, clock, dir, path, saves: () => saves });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("saveNow saves at once and cancels the pending save", () =>
  withCountingSaver(({ saver, clock, saves }) => {
    saver.changed();
    saver.saveNow();
    assert.equal(saves(), 1);
    clock.advance(SAVE_MAX_DELAY_MS);
    assert.equal(saves(), 1, "the pending save ran after saveNow");
  }));

test("one save is written at a time; a change meanwhile is saved after it", () =>
  withCountingSaver(async ({ saver, clock, path, saves }) => {
    saver.changed();
    clock.advance(SAVE_DELAY_MS);
    assert.equal(saves(), 1, "the first save began");
    saver.changed();
    clock.advance(SAVE_MAX_DELAY_MS);
    assert.equal(saves(), 1, "a second save began while the first was being written");
    await saver.idle();
    assert.equal(readFileSync(path, "utf8"), '{"save":1}\n');
    // On this clock the first save took the 10 s it moved meanwhile: the next waits saveDelay of that.
    clock.advance(SAVE_MAX_DELAY_MS - 1);
    assert.equal(saves(), 1);
    clock.advance(1);
    assert.equal(saves(), 2, "the change made during the first save was not saved after it");
    await saver.idle();
    assert.equal(readFileSync(path, "utf8"), '{"save":2}\n');
  }));

test("saveNow overtakes a save being written in the background: the older state never replaces the newer", () =>
  withCountingSaver(async ({ saver, clock, dir, path, saves }) => {
    saver.changed();
    clock.advance(SAVE_DELAY_MS);
    assert.equal(saves(), 1, "the background save began");
    saver.saveNow();
    assert.equal(readFileSync(path, "utf8"), '{"save":2}\n');
    await saver.idle();
    assert.equal(readFileSync(path, "utf8"), '{"save":2}\n', "the overtaken save was renamed over the newer one");
    assert.deepEqual(readdirSync(dir), ["clients.json"], "the overtaken save left its temporary file");
  }));

// Seen at a stop in session 59's full run: a save in the background had
// renamed its file but not yet noted it as its own (that waited for the
// directory's fsync), and saveNow, coming between, took it for another
// process's ("was written by another process ... is a second server
// using the state directory?").
test("saveNow just after a background save's rename does not take that file for another process's", () =>
  withCountingSaver(async ({ saver, clock, path, saves }) => {
    const seen: boolean[] = [];
    const onSaved = ({ path: saved, replacedOther }: { path: string; replacedOther: boolean }): void => void (saved === path && seen.push(replacedOther));
    events.stateSaved.subscribe(onSaved);
    try {
      assert.equal(saver.saveNow(), null);
      saver.changed();
      clock.advance(SAVE_DELAY_MS);
      assert.equal(saves(), 2, "the background save began");
      // Looked at each turn of the event loop: the rename is seen before the directory's fsync ends.
      for (let turns = 0; readFileSync(path, "utf8") !== '{"save":2}\n'; turns++) {
        assert.ok(turns < 100_000, "the background save never renamed its file");
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.equal(saver.saveNow(), null);
      await saver.idle();
      // Three saves (the background one said after saveNow's, once its directory's fsync ended), none finding another's file.
      assert.deepEqual(seen, [false, false, false], "saveNow took the background save's file for another process's");
    } finally {
      events.stateSaved.unsubscribe(onSaved);
    }
  }));

// A checker's success and a secret sent move only times that a restart
// forgives losing: saved within ROUTINE_SAVE_DELAY_MS, not each second
// (a fleet's checkers rewrote the whole file without pause).
test("a routine change waits ROUTINE_SAVE_DELAY_MS; any other change brings it forward, and a routine one never puts a save off", () =>
  withCountingSaver(async ({ saver, clock, saves }) => {
    saver.routine();
    clock.advance(ROUTINE_SAVE_DELAY_MS - 1);
    assert.equal(saves(), 0, "a routine change saved before ROUTINE_SAVE_DELAY_MS");
    clock.advance(1);
    assert.equal(saves(), 1);
    await saver.idle();

    saver.routine();
    clock.advance(5_000);
    saver.changed();
    clock.advance(SAVE_DELAY_MS);
    assert.equal(saves(), 2, "a change that cannot wait waited for the routine save");
    await saver.idle();
    clock.advance(ROUTINE_SAVE_DELAY_MS);
    assert.equal(saves(), 2, "the routine save ran again, though saved with the other");

    saver.changed();
    saver.routine();
    clock.advance(SAVE_DELAY_MS);
    assert.equal(saves(), 3, "a routine change put off a pending save");
    await saver.idle();

    // Routine changes while a save is written wait their own delay after it.
    saver.changed();
    clock.advance(SAVE_DELAY_MS);
    saver.routine();
    await saver.idle();
    clock.advance(SAVE_MAX_DELAY_MS);
    assert.equal(saves(), 4, "a routine change during a save was saved within seconds");
    clock.advance(ROUTINE_SAVE_DELAY_MS);
    assert.equal(saves(), 5);
    await saver.idle();
  }));

test("what waits for a routine save: checker successes, moved expiries, secrets sent to checked clients; never what an operator or a failure changed", () => {
  const client = {} as ClientView;
  const routine = (event: RegistryEvent): boolean => routineChange(event);
  for (const property of ["LastCheckedOK", "Expires", "CheckerRunning"] as const) {
    assert.equal(routine({ type: "property-changed", client, property }), true, property);
  }
  for (const property of ["Enabled", "LastEnabled", "LastCheckerStatus", "Timeout", "Interval", "Checker", "Host", "Secret", "ApprovedByDefault", "LastApprovalRequest", "ExtendedTimeout"] as const) {
    assert.equal(routine({ type: "property-changed", client, property }), false, property);
  }
  assert.equal(routine({ type: "checker-completed", client, exitCode: 0, waitStatus: 0, command: "true" }), true);
  // A secret sent: routine once the client's checker succeeds; else its
  // moved expiry is what a restart after a crash would need.
  const checked = { lastCheckedOk: new Date(0), lastCheckerStatus: 0 } as ClientView;
  assert.equal(routine({ type: "got-secret", client: checked }), true);
  assert.equal(routine({ type: "got-secret", client: { ...checked, lastCheckerStatus: 1 } }), false, "last checker failed");
  assert.equal(routine({ type: "got-secret", client: { ...checked, lastCheckedOk: null, lastCheckerStatus: -2 } }), false, "never checked");
  assert.equal(routine({ type: "client-added", client }), false);
  assert.equal(routine({ type: "client-removed", client }), false);
  assert.equal(routine({ type: "rejected", client, reason: "disabled" }), false);
  assert.equal(routine({ type: "approval-given", client, approved: false }), false);
  assert.equal(routine({ type: "secret-opened", client, opened: true }), false);
});

// Found by review: a routine change made while a failing save was being
// written put the retry off to ROUTINE_SAVE_DELAY_MS.
test("a failed save is tried again SAVE_RETRY_MS later whatever changes came while it was written", () =>
  withCountingSaver(async ({ saver, clock, dir, saves }) => {
    rmSync(dir, { recursive: true });
    for (const during of ["routine", "changed"] as const) {
      const before = saves();
      saver.changed();
      clock.advance(SAVE_MAX_DELAY_MS);
      assert.equal(saves(), before + 1, "the save began");
      if (during === "routine") saver.routine();
      else saver.changed();
      await saver.idle();
      clock.advance(SAVE_RETRY_MS - 1);
      assert.equal(saves(), before + 1, `tried again before SAVE_RETRY_MS (${during})`);
      clock.advance(1);
      assert.equal(saves(), before + 2, `not tried again at SAVE_RETRY_MS (${during})`);
      await saver.idle();
      // Past the retries: the next test starts from no pending save.
      saver.saveNow();
    }
  }));
