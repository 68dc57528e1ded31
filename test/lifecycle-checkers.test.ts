// The client lifecycle of mandos(8) CHECKING, with a clock the test moves:
// checkers keep clients enabled or let them expire, never run twice at once,
// are killed when their client is disabled, expand %(attr)s with shell
// quoting, and are capped server-wide. Checkers are real /bin/sh processes
// where the test is about the shell; a recording spawner elsewhere.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientRegistry, MAX_CONCURRENT_CHECKERS, shellSpawner, type CheckerSpawner } from "../src/main/clients/registry.js";
import { CHECKER_SLOT_MS } from "../src/main/clients/checker.js";
import { CHECKER_KILL_GRACE_MS } from "../src/main/clients/shell-spawner.js";
import { percentFormat, shellQuote } from "../src/main/clients/python-format.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger, type Logger } from "../src/main/daemon/log.js";
import type { RegistryEvent } from "../src/main/clients/contract.js";
import { events, type CheckerCommandInvalid, type CheckerLate, type CheckerStarted } from "../src/main/events.js";
import { logClientEvents } from "../src/main/daemon/log-clients.js";
import { clientSettings } from "./helpers/clients.js";
import { makeFleetDir } from "./helpers/keys.js";
import { MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { startServer } from "./helpers/server.js";

/** A spawner whose checkers end when the test says, with the code it says. */
function scripted(): { spawner: CheckerSpawner; running: Map<string, (code: number | null, signal?: number) => void>; started: string[]; killed: string[] } {
  const running = new Map<string, (code: number | null, signal?: number) => void>();
  const started: string[] = [];
  const killed: string[] = [];
  const spawner: CheckerSpawner = (command, done) => {
    started.push(command);
    running.set(command, (code, signal) => {
      running.delete(command);
      done(code, signal ?? null);
    });
    return {
      kill() {
        killed.push(command);
        running.get(command)?.(null, 15);
      },
    };
  };
  return { spawner, running, started, killed };
}

function logCollector(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const add = (l: string) => (m: string): void => void lines.push(`${l}: ${m}`);
  return { lines, debug: add("DEBUG"), info: add("INFO"), warning: add("WARNING"), error: add("ERROR"), critical: add("CRITICAL") };
}

test("a succeeding checker keeps the client enabled across many timeouts", () => {
  const clock = new ManualClock();
  const s = scripted();
  const reg = new ClientRegistry([clientSettings("web", { checker: "check %(host)s" })], { logger: silentLogger, clock, spawner: s.spawner, random: () => 0.5 });
  reg.start();
  for (let t = 0; t < 30_000; t += 500) {
    clock.advance(500);
    for (const finish of [...s.running.values()]) finish(0);
  }
  assert.equal(reg.get("web")?.enabled, true);
  assert.ok(s.started.length >= 10, `${s.started.length} checkers`);
  assert.equal(reg.get("web")?.lastCheckerStatus, 0);
  assert.ok(reg.get("web")?.lastCheckedOk);
});

test("a failing checker lets the client be disabled after its timeout", () => {
  const clock = new ManualClock();
  const s = scripted();
  const events: RegistryEvent[] = [];
  const reg = new ClientRegistry([clientSettings("web")], { logger: silentLogger, clock, spawner: s.spawner, random: () => 0 });
  reg.subscribe((e) => events.push(e));
  reg.start();
  for (let t = 0; t < 20_000 && reg.get("web")?.enabled; t += 250) {
    clock.advance(250);
    for (const finish of [...s.running.values()]) finish(1);
  }
  assert.equal(reg.get("web")?.enabled, false);
  assert.equal(reg.get("web")?.lastCheckerStatus, 1);
  assert.equal(reg.get("web")?.expires, null);
  assert.ok(events.some((e) => e.type === "property-changed" && e.property === "Enabled"));
  assert.ok(events.some((e) => e.type === "checker-completed" && e.exitCode === 1 && e.waitStatus === 256));
});

test("a hanging checker is never doubled, and is killed when the client is disabled", () => {
  const clock = new ManualClock();
  const s = scripted();
  const reg = new ClientRegistry([clientSettings("web")], { logger: silentLogger, clock, spawner: s.spawner, random: () => 0 });
  reg.start();
  clock.advance(1_500);
  assert.equal(reg.get("web")?.checkerRunning, true);
  // The client lives until one interval after its first (delayed) check.
  reg.bumpTimeout("web");
  clock.advance(4_000);
  assert.equal(s.started.length, 1, "one checker at a time for a client");
  assert.equal(reg.get("web")?.enabled, true);
  clock.advance(10_000);
  assert.equal(reg.get("web")?.enabled, false);
  assert.equal(s.killed.length, 1);
  assert.equal(reg.get("web")?.checkerRunning, false);
});

test("secretDelivered bumps the expiry by extended_timeout; re-enabling restarts the timeout", () => {
  const clock = new ManualClock();
  const s = scripted();
  const reg = new ClientRegistry([clientSettings("web")], { logger: silentLogger, clock, spawner: s.spawner, random: () => 0 });
  reg.start();
  reg.secretDelivered("web");
  assert.equal(reg.get("web")?.expires?.getTime(), clock.now() + 15_000);
  reg.disable("web");
  assert.equal(reg.get("web")?.enabled, false);
  clock.advance(1_000);
  reg.enable("web");
  assert.equal(reg.get("web")?.enabled, true);
  assert.equal(reg.get("web")?.lastEnabled?.getTime(), clock.now());
  // The reference's init_checker: first checker one interval away, expiry one more interval after.
  assert.equal(reg.get("web")?.expires?.getTime(), clock.now() + 4_000);
});

test("secrets sent one after another set no new disable timer, and the client expires at the last one's expiry", () => {
  const clock = new ManualClock();
  let timersSet = 0;
  const counting = {
    now: () => clock.now(),
    elapsed: () => clock.elapsed(),
    setTimeout: (fn: () => void, ms: number) => (timersSet++, clock.setTimeout(fn, ms)),
    setTimeoutWith: <T>(fn: (arg: T) => void, ms: number, arg: T) => (timersSet++, clock.setTimeoutWith(fn, ms, arg)),
  };
  const s = scripted();
  // No checker runs before the client expires (interval far beyond the timeouts).
  const reg = new ClientRegistry([clientSettings("web", { interval: 3_600_000 })], { logger: silentLogger, clock: counting, spawner: s.spawner, random: () => 1 });
  reg.start();
  reg.secretDelivered("web");
  const before = timersSet;
  for (let i = 0; i < 10; i++) {
    clock.advance(1_000);
    reg.secretDelivered("web");
  }
  assert.equal(timersSet, before, "a later expiry reuses the timer set for an earlier one");
  const expires = clock.now() + 15_000;
  assert.equal(reg.get("web")?.expires?.getTime(), expires);
  // The timer set for the first secret fires first, and waits out the rest.
  clock.advance(15_000 - 1);
  assert.equal(reg.get("web")?.enabled, true);
  clock.advance(1);
  assert.equal(reg.get("web")?.enabled, false);
  assert.equal(s.started.length, 0);
});

test("an expiry moved earlier re-sets the disable timer", () => {
  const clock = new ManualClock();
  const s = scripted();
  const reg = new ClientRegistry([clientSettings("web", { interval: 3_600_000 })], { logger: silentLogger, clock, spawner: s.spawner, random: () => 1 });
  reg.start();
  reg.secretDelivered("web");
  // From extended_timeout (15 s) to timeout (5 s) ahead.
  reg.bumpTimeout("web");
  clock.advance(5_000 - 1);
  assert.equal(reg.get("web")?.enabled, true);
  clock.advance(1);
  assert.equal(reg.get("web")?.enabled, false);
});

test("the first checks after start are spread over one interval", () => {
  const clock = new ManualClock();
  const s = scripted();
  const many = Array.from({ length: 20 }, (_, i) => clientSettings(`c${i}`, { checker: `check ${i}`, interval: 10_000, timeout: 60_000 }));
  let r = 0;
  const reg = new ClientRegistry(many, { logger: silentLogger, clock, spawner: s.spawner, random: () => (r++ % 20) / 20 });
  reg.start();
  clock.advance(4_999);
  assert.ok(s.started.length > 5 && s.started.length < 15, `${s.started.length} started in the first half interval`);
  clock.advance(5_001);
  assert.equal(s.started.length, 20);
});

test("checker processes are capped server-wide; the rest wait their turn", () => {
  const clock = new ManualClock();
  const s = scripted();
  const many = Array.from({ length: 10 }, (_, i) => clientSettings(`c${i}`, { checker: `check ${i}` }));
  const reg = new ClientRegistry(many, { logger: silentLogger, clock, spawner: s.spawner, random: () => 0, maxCheckers: 3 });
  reg.start();
  clock.advance(1);
  assert.equal(s.running.size, 3);
  for (const finish of [...s.running.values()]) finish(0);
  assert.equal(s.running.size, 3);
  assert.equal(s.started.length, 6);
});

// Found by an audit: with a place held until the process ended, 32 hung
// checkers kept every other client unchecked until it was disabled.
test("a checker that runs long gives back its place after CHECKER_SLOT_MS; one killed gives it back at once", () => {
  const clock = new ManualClock();
  const s = scripted();
  const many = Array.from({ length: 10 }, (_, i) => clientSettings(`c${i}`, { checker: `check ${i}`, interval: 60_000, timeout: 120_000 }));
  const reg = new ClientRegistry(many, { logger: silentLogger, clock, spawner: s.spawner, random: () => 0, maxCheckers: 3 });
  reg.start();
  clock.advance(1);
  assert.equal(s.started.length, 3);
  clock.advance(CHECKER_SLOT_MS - 2);
  assert.equal(s.started.length, 3, "places held for CHECKER_SLOT_MS");
  clock.advance(1);
  assert.equal(s.started.length, 6, "the three hung checkers gave back their places");
  assert.equal(s.running.size, 6, "and run on");
  assert.equal(reg.counts().checkersWaiting, 4);
  // A checker that ignores SIGTERM: its kill does not end it, its place is given back.
  const stubborn = s.started[3]!;
  const finishLater = s.running.get(stubborn)!;
  s.running.delete(stubborn);
  reg.disable("c3");
  assert.equal(s.started.length, 7, "the killed checker's place went to the next one");
  // Its end later gives back nothing more.
  finishLater(null, 9);
  assert.equal(s.started.length, 7);
  clock.advance(CHECKER_SLOT_MS);
  assert.equal(s.started.length, 10, "the last three now");
  assert.equal(reg.counts().checkersWaiting, 0);
  reg.stop();
});

test("a checker that starts later than its next one was due says so, a line a minute", () => {
  const clock = new ManualClock();
  const s = scripted();
  const log = logCollector();
  const unsubscribe = logClientEvents(log);
  const late: CheckerLate[] = [];
  const onLate = (m: CheckerLate): void => void (m.client.name.startsWith("late") && late.push(m));
  events.checkerLate.subscribe(onLate);
  try {
    const many = Array.from({ length: 5 }, (_, i) => clientSettings(`late${i}`, { checker: `check ${i}`, interval: 1_500, timeout: 60_000 }));
    const reg = new ClientRegistry(many, { logger: silentLogger, clock, spawner: s.spawner, random: () => 0, maxCheckers: 1 });
    reg.start();
    // A first round that succeeds (each ends as it starts, the next then
    // starts): the clients expire a timeout away, not at their next check.
    clock.advance(1);
    for (let i = 0; i < 5; i++) s.running.get(`check ${i}`)!(0);
    assert.equal(s.started.length, 5);
    // The second round hangs: one place, each checker holds it a second.
    clock.advance(1_499);
    for (let t = 0; t < 4; t++) clock.advance(CHECKER_SLOT_MS);
    assert.deepEqual(late.map((m) => [m.client.name, m.waitedMs]), [["late2", 2_000], ["late3", 3_000], ["late4", 4_000]]);
    assert.deepEqual(log.lines.filter((l) => /late/.test(l) && l.startsWith("WARNING")), [
      `WARNING: Checker for late2 started 2 s late, after its next was due: 2 checkers wait for one of the ${MAX_CONCURRENT_CHECKERS} that start at once`,
    ]);
    reg.stop();
  } finally {
    events.checkerLate.unsubscribe(onLate);
    unsubscribe();
  }
});

test("a client whose next checker is due as it expires is disabled, with no checker started", () => {
  const clock = new ManualClock();
  const s = scripted();
  const reg = new ClientRegistry([clientSettings("down", { checker: "check down", interval: 2_000, timeout: 3_600_000 })], { logger: silentLogger, clock, spawner: s.spawner, random: () => 0 });
  reg.start();
  clock.advance(1);
  assert.equal(s.started.length, 1);
  s.running.get("check down")!(1);
  clock.advance(2_000);
  assert.equal(reg.get("down")?.enabled, false, "expired: its first checker failed");
  assert.equal(s.started.length, 1, "no second checker started to be killed at once");
  assert.deepEqual(s.killed, []);
});

test("a shell that cannot be started is a warning with its reason, not a command's failure", async () => {
  const clock = new ManualClock();
  const log = logCollector();
  const unsubscribe = logClientEvents(log);
  const spawner: CheckerSpawner = (_command, done) => {
    queueMicrotask(() => done(127, null, "EAGAIN"));
    return { kill() {} };
  };
  try {
    const reg = new ClientRegistry([clientSettings("nofork", { checker: "true" })], { logger: silentLogger, clock, spawner, random: () => 0 });
    reg.start();
    clock.advance(1);
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.ok(log.lines.includes("WARNING: Could not start checker for nofork: Resource temporarily unavailable"), log.lines.join("\n"));
    assert.ok(!log.lines.some((l) => /Checker for nofork failed/.test(l)));
    assert.equal(reg.get("nofork")?.lastCheckerStatus, 127);
    reg.stop();
  } finally {
    unsubscribe();
  }
});

// Found by session 56's D-Bus audit: a checker whose spawn threw (an
// argument past the kernel's limit) sent CheckerCompleted without a
// CheckerStarted before it.
test("a spawner that throws: the checker's start is announced, then its completion with 127", () => {
  const clock = new ManualClock();
  const spawner: CheckerSpawner = () => {
    throw Object.assign(new Error("spawn E2BIG"), { code: "E2BIG" });
  };
  const reg = new ClientRegistry([clientSettings("huge", { checker: "true" })], { logger: silentLogger, clock, spawner, random: () => 0 });
  const seen: string[] = [];
  reg.subscribe((e) => {
    if (e.type === "checker-started" || e.type === "checker-completed") seen.push(e.type);
  });
  reg.start();
  clock.advance(1);
  assert.deepEqual(seen, ["checker-started", "checker-completed"]);
  assert.equal(reg.get("huge")?.lastCheckerStatus, 127);
  assert.equal(reg.get("huge")?.checkerRunning, false);
  reg.stop();
});

test("a killed checker that ignores SIGTERM gets SIGKILL after CHECKER_KILL_GRACE_MS", async () => {
  const started = Date.now();
  const ended = new Promise<{ code: number | null; signal: number | null }>((resolve) => {
    const proc = shellSpawner("trap '' TERM; while :; do sleep 0.1; done", (code, signal) => resolve({ code, signal }));
    setTimeout(() => proc.kill(), 300);
  });
  const { code, signal } = await ended;
  assert.equal(code, null);
  assert.equal(signal, 9);
  assert.ok(Date.now() - started >= CHECKER_KILL_GRACE_MS, "SIGTERM alone did not end it");
});

test("runtime expansion quotes hostile values so that they run nothing", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-checker-"));
  const marker = join(dir, "pwned");
  const out = join(dir, "out");
  try {
    const hostile = `a b'c"d;touch ${marker};$(touch ${marker})\`touch ${marker}\``;
    const clock = new ManualClock();
    const reg = new ClientRegistry(
      [clientSettings("web", { host: hostile, checker: `printf '%%s|' %(host)s %(name)s %(timeout)s %(interval)s %(enabled)s %(last_checked_ok)s > ${out}` })],
      { logger: silentLogger, clock, spawner: shellSpawner, random: () => 0 },
    );
    const done = new Promise<RegistryEvent>((resolve) => reg.subscribe((e) => e.type === "checker-completed" && resolve(e)));
    reg.start();
    clock.advance(1);
    const event = await done;
    assert.equal(event.type === "checker-completed" && event.exitCode, 0);
    assert.equal(existsSync(marker), false, "the hostile host value ran a command");
    // Values as Python's str() writes them: timedeltas "0:00:05", booleans "True", None.
    assert.equal(readFileSync(out, "utf8"), `${hostile}|web|0:00:05|0:00:02|True|None|`);
    reg.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a bad checker format string is an error naming the client, and nothing runs", () => {
  const clock = new ManualClock();
  const s = scripted();
  const invalid: CheckerCommandInvalid[] = [];
  const started: CheckerStarted[] = [];
  // Channels are process-wide: keep only this test's client.
  const onInvalid = (m: CheckerCommandInvalid): void => void (m.client.name === "bad-format" && invalid.push(m));
  const onStarted = (m: CheckerStarted): void => void (m.client.name === "bad-format" && started.push(m));
  events.checkerCommandInvalid.subscribe(onInvalid);
  events.checkerStarted.subscribe(onStarted);
  try {
    const reg = new ClientRegistry([clientSettings("bad-format", { checker: "fping %(hots)s" })], { logger: silentLogger, clock, spawner: s.spawner, random: () => 0 });
    reg.start();
    clock.advance(1);
    assert.equal(s.started.length, 0);
    assert.equal(started.length, 0);
    assert.equal(invalid.length, 1);
    assert.equal(invalid[0]!.checker, "fping %(hots)s");
    assert.match(invalid[0]!.reason, /hots/);
  } finally {
    events.checkerCommandInvalid.unsubscribe(onInvalid);
    events.checkerStarted.unsubscribe(onStarted);
  }
});

test("the log lines of a client's checkers and expiry are the reference's, from the published facts", () => {
  const clock = new ManualClock();
  const s = scripted();
  const log = logCollector();
  const stop = logClientEvents(log);
  const reg = new ClientRegistry(
    [clientSettings("logged", { checker: "check %(name)s", interval: 1_000, timeout: 5_000 }), clientSettings("bad-log", { checker: "x %(nope)s" })],
    { logger: silentLogger, clock, spawner: s.spawner, random: () => 0 },
  );
  try {
    reg.start();
    clock.advance(1);
    s.running.get("check logged")!(0);
    clock.advance(1_000);
    s.running.get("check logged")!(1);
    clock.advance(1_000);
    s.running.get("check logged")!(null, 9);
    clock.advance(1_000);
    reg.disable("logged");
    reg.remove("bad-log");
  } finally {
    stop();
  }
  // Channels are process-wide: keep only this test's clients.
  const mine = log.lines.filter((l) => /\b(logged|bad-log)\b/.test(l));
  assert.deepEqual(mine.filter((l) => !l.startsWith("ERROR")), [
    "DEBUG: Creating client 'logged'",
    "DEBUG: Creating client 'bad-log'",
    "INFO: Starting checker 'check logged' for logged",
    "INFO: Checker for logged succeeded",
    "INFO: Starting checker 'check logged' for logged",
    "INFO: Checker for logged failed",
    // Its checker never ran, so its timeout ran out.
    "DEBUG: Disabling client bad-log",
    "INFO: Starting checker 'check logged' for logged",
    "WARNING: Checker for logged crashed?",
    "INFO: Starting checker 'check logged' for logged",
    "DEBUG: Disabling client logged",
    "DEBUG: Stopping checker for logged",
  ]);
  assert.equal(mine.filter((l) => l.startsWith("ERROR")).length, 1);
  assert.match(mine.find((l) => l.startsWith("ERROR"))!, /^ERROR: Could not format string "x %\(nope\)s" for client bad-log: .*nope/);
  const before = log.lines.length;
  reg.enable("logged");
  reg.disable("logged");
  assert.equal(log.lines.length, before, "nothing is logged after unsubscribing");
});

test("a checker killed by a signal records -1", async () => {
  const clock = new ManualClock();
  const reg = new ClientRegistry([clientSettings("web", { checker: "kill -KILL $$" })], { logger: silentLogger, clock, spawner: shellSpawner, random: () => 0 });
  const done = new Promise<RegistryEvent>((resolve) => reg.subscribe((e) => e.type === "checker-completed" && resolve(e)));
  reg.start();
  clock.advance(1);
  const e = await done;
  assert.equal(e.type === "checker-completed" && e.exitCode, -1);
  assert.equal(reg.get("web")?.lastCheckerStatus, -1);
  reg.stop();
});

// The reference expands a checker with `checker % {attr: shlex.quote(str(value))}`:
// a width, a precision, "-", %r and %a are Python's, applied to the quoted
// text. Python itself is the oracle.
test("a checker's %(attr)s forms with width, precision, %r and %a expand as Python's % does", (t) => {
  if (missing("/usr/bin/python3")) return t.skip("no python3");
  const values: Record<string, string> = { host: "odd host 'q' $x", name: "alpha", u: "\u00e9 x" };
  const templates = ["x %(host)r", "x %(name)10s|", "x %(name)-8s|", "x %(name).2s", "x %(name)08.3s|", "x %(u)a", "x %(name).s|", "x %(host)-30s| %(u)5.2r|", "100%% %(name)s"];
  const mapping = new Map(Object.entries(values).map(([k, v]) => [k, shellQuote(v)]));
  const script = "import json, shlex, sys\nm = {k: shlex.quote(v) for k, v in json.loads(sys.argv[1]).items()}\nprint(json.dumps([t % m for t in json.loads(sys.argv[2])]))";
  const expected = JSON.parse(execFileSync("/usr/bin/python3", ["-c", script, JSON.stringify(values), JSON.stringify(templates)], { encoding: "utf8" })) as string[];
  assert.deepEqual(templates.map((tpl) => percentFormat(tpl, mapping)), expected);
});

// The reference's checker is subprocess.call(command, shell=True): a
// negative return names the signal, which becomes LastCheckerSignal and the
// low byte of CheckerCompleted's wait status. Python itself is the oracle.
test("a checker killed by any signal reports that signal's number, as the reference's subprocess.call does", async (t) => {
  if (missing("/usr/bin/python3")) return t.skip("no python3");
  for (const name of ["TERM", "USR1", "USR2", "KILL", "HUP", "QUIT", "ALRM", "PIPE"]) {
    const command = `kill -${name} $$`;
    const py = execFileSync("/usr/bin/python3", ["-c", "import subprocess, sys; print(subprocess.call(sys.argv[1], shell=True))", command], { encoding: "utf8" });
    const expected = -Number(py.trim());
    assert.ok(expected > 0, `python3 says ${py}`);
    const got = await new Promise<{ code: number | null; signal: number | null }>((resolve) => {
      shellSpawner(command, (code, signal) => resolve({ code, signal }));
    });
    assert.deepEqual(got, { code: null, signal: expected }, command);
  }
});

// mandos-ctl --start-checker on a disabled client: the reference runs the
// checker (its start_checker does not ask whether the client is enabled),
// and the result is recorded without enabling the client.
test("the operator's StartChecker runs a disabled client's checker once; the schedule stays off", () => {
  const clock = new ManualClock();
  const s = scripted();
  const reg = new ClientRegistry([clientSettings("off", { checker: "check %(name)s", enabled: false, interval: 1_000 })], { logger: silentLogger, clock, spawner: s.spawner, random: () => 0 });
  try {
    reg.start();
    clock.advance(10_000);
    assert.deepEqual(s.started, [], "a disabled client's schedule ran");
    reg.startChecker("off");
    assert.deepEqual(s.started, ["check off"]);
    clock.advance(500);
    s.running.get("check off")!(0);
    const { runtime } = reg.snapshot()[0]!;
    assert.equal(runtime.enabled, false);
    assert.equal(runtime.expires, null);
    assert.equal(runtime.lastCheckedOk, clock.now());
    assert.equal(runtime.lastCheckerStatus, 0);
    clock.advance(10_000);
    assert.deepEqual(s.started, ["check off"], "one run, no schedule after it");
  } finally {
    reg.stop();
  }
});

// Seen on the bus beside the reference: ours announced LastCheckerStatus at
// every checker run (0 -> 0), and sent CheckerCompleted before the changes
// the run made; the reference announces a property only when its value
// changes, and sends CheckerCompleted last.
test("a checker's end announces LastCheckerStatus only when it changed, and CheckerCompleted after its changes", () => {
  const clock = new ManualClock();
  const s = scripted();
  const reg = new ClientRegistry([clientSettings("web", { checker: "check", interval: 1_000 })], { logger: silentLogger, clock, spawner: s.spawner, random: () => 0 });
  const seen: string[] = [];
  reg.subscribe((e: RegistryEvent) => {
    if (e.type === "property-changed") seen.push(e.property);
    if (e.type === "checker-completed") seen.push(`completed ${e.exitCode}`);
  });
  try {
    reg.start();
    clock.advance(1);
    const run = (code: number): string[] => {
      seen.length = 0;
      s.running.get("check")!(code);
      const out = seen.filter((p) => p !== "CheckerRunning");
      clock.advance(1_000);
      return out;
    };
    assert.deepEqual(run(0), ["LastCheckerStatus", "LastCheckedOK", "Expires", "completed 0"], "-2 -> 0");
    assert.deepEqual(run(0), ["LastCheckedOK", "Expires", "completed 0"], "0 -> 0");
    assert.deepEqual(run(3), ["LastCheckerStatus", "completed 3"], "0 -> 3");
    assert.deepEqual(run(3), ["completed 3"], "3 -> 3");
  } finally {
    reg.stop();
  }
});

// Found beside the reference: with --debug its checkers' output reaches the
// terminal (it sends it to /dev/null only when not debugging), which is how
// an admin sees why fping fails; ours went nowhere.
test("with --debug a checker's standard output and error reach the server's", { skip: missing(MANDOS_KEYGEN) }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-checker-out-"));
  const { clients: [a], conf, state } = makeFleetDir(root, 1);
  writeFileSync(join(conf, "clients.conf"), `${a!.section}checker = echo CHECKER-OUT-%%(name)s; echo CHECKER-ERR >&2\ninterval = 1s\n`);
  // startServer runs bin/mandos with --debug.
  const server = await startServer(["--configdir", conf, "--statedir", state, "--port", "0"]);
  t.after(async () => {
    await server.stop();
    rmSync(root, { recursive: true, force: true });
  });
  // Lines of their own: the log's "Starting checker '...'" quotes the command.
  await server.waitForLog(new RegExp(`^CHECKER-OUT-${a!.name}$`, "m"), 20_000);
  await server.waitForLog(/^CHECKER-ERR$/m, 20_000);
});
