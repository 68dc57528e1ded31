// The opening of a big pickle's secrets as the operator and systemd hear of
// it (src/main/observe/start-progress.ts), on a clock the test moves: what
// the log says and when, and that systemd's status follows it once a
// second, not once a secret; its pauses while the server is busy. The real
// opening, while serving, under a stand-in for systemd's socket, is in
// migrate-pickle.test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import type { SystemdNotifier } from "../src/main/observe/sd-notify.js";
import { LOG_EVERY_MS, openingProgress } from "../src/main/observe/start-progress.js";

function listeners(): { say: (line: string) => void; lines: string[]; systemd: SystemdNotifier; told: string[] } {
  const lines: string[] = [];
  const told: string[] = [];
  const systemd: SystemdNotifier = { notify: (m) => void told.push(m), startWatchdog: () => undefined, close: () => undefined };
  return { say: (line) => void lines.push(line), lines, systemd, told };
}

test("10,000 secrets over 100 s: a log line every 30 s with what is left, systemd's status once a second", () => {
  const { say, lines, systemd, told } = listeners();
  let now = 1_000_000;
  const progress = openingProgress(say, systemd, "; then serving", () => now);
  progress.begin(10_000, 2);
  for (let done = 1; done <= 10_000; done++) {
    now += 10;
    progress.opened(done, 10_000);
  }
  progress.end();
  assert.deepEqual(lines, [
    "Opening the 10000 secrets the Python server sealed in clients.pickle, on 2 threads; then serving",
    "Opened 3000 of 10000 sealed secrets (30%); about 70 s left",
    "Opened 6000 of 10000 sealed secrets (60%); about 40 s left",
    "Opened 9000 of 10000 sealed secrets (90%); about 10 s left",
    "Opened the 10000 sealed secrets in 100 s",
  ]);
  assert.equal(LOG_EVERY_MS, 30_000);
  // The first, then one a second (100 s), the last count, the cleared status.
  assert.equal(told[0], "STATUS=Opening the secrets sealed in clients.pickle: 0 of 10000");
  assert.equal(told[1], "STATUS=Opening the secrets sealed in clients.pickle: 100 of 10000");
  assert.equal(told.at(-2), "STATUS=Opening the secrets sealed in clients.pickle: 10000 of 10000");
  assert.equal(told.at(-1), "STATUS=");
  assert.ok(told.length >= 101 && told.length <= 103, `told ${told.length} times`);
  // Never two within a second but for the last count.
  const counts = told.slice(0, -1).map((m) => Number(/: (\d+) of/.exec(m)?.[1]));
  for (let i = 1; i < counts.length - 1; i++) assert.ok(counts[i]! - counts[i - 1]! >= 100, `told at ${counts[i - 1]} and again at ${counts[i]}`);
});

test("a small fleet logs its start and its end only; one thread is said so; without systemd only the log", () => {
  const { say, lines } = listeners();
  let now = 0;
  const progress = openingProgress(say, null, "", () => now);
  progress.begin(3, 1);
  for (let done = 1; done <= 3; done++) {
    now += 100;
    progress.opened(done, 3);
  }
  progress.end();
  assert.deepEqual(lines, ["Opening the 3 secrets the Python server sealed in clients.pickle, on 1 thread", "Opened the 3 sealed secrets in 1 s"]);
});

test("minutes read as minutes; nothing is said at the end of an opening that never began", () => {
  const { say, lines, systemd, told } = listeners();
  let now = 0;
  const idle = openingProgress(say, systemd, "", () => now);
  idle.end();
  assert.deepEqual([lines, told], [[], []]);
  const progress = openingProgress(say, null, "", () => now);
  progress.begin(10_000, 4);
  now = 31_000;
  progress.opened(100, 10_000);
  now = 600_000;
  progress.end();
  assert.equal(lines[1], "Opened 100 of 10000 sealed secrets (1%); about 51 min left");
  assert.equal(lines[2], "Opened the 10000 sealed secrets in 10 min");
});

test("paused while connections are served: said as it pauses (once every 30 s at most) and goes on, in systemd's status, and left out of the time left", () => {
  const { say, lines, systemd, told } = listeners();
  let now = 0;
  const progress = openingProgress(say, systemd, "", () => now);
  progress.begin(1_000, 1);
  now = 10_000;
  progress.opened(100, 1_000);
  // A storm: told after a second of it, 20 s in all; a hurried one opens meanwhile.
  now = 11_000;
  progress.paused(true, 100, 1_000, 1_000);
  now = 20_000;
  progress.opened(101, 1_000);
  now = 30_000;
  progress.paused(false, 101, 1_000, 20_000);
  // A second storm 5 s later: not said again so soon, but systemd hears it.
  now = 36_000;
  progress.paused(true, 101, 1_000, 1_000);
  now = 40_000;
  progress.paused(false, 101, 1_000, 5_000);
  // 39.9 s of opening for 400: the other 600 take ~60 s, not the 97 s that counting the pauses would say.
  now = 64_900;
  progress.opened(400, 1_000);
  now = 300_000;
  progress.end();
  assert.deepEqual(lines, [
    "Opening the 1000 secrets the Python server sealed in clients.pickle, on 1 thread",
    "Paused the opening of the sealed secrets at 100 of 1000 while the server is busy serving connections; a connecting client's own is still opened at once",
    "Went on opening the sealed secrets after a pause of 20 s",
    "Opened 400 of 1000 sealed secrets (40%); about 60 s left",
    "Opened the 1000 sealed secrets in 5 min (of which 25 s paused while connections were served)",
  ]);
  const paused = "STATUS=Opening the secrets sealed in clients.pickle: 100 of 1000, paused while connections are served";
  assert.deepEqual(told.slice(0, 6), [
    "STATUS=Opening the secrets sealed in clients.pickle: 0 of 1000",
    "STATUS=Opening the secrets sealed in clients.pickle: 100 of 1000",
    paused,
    "STATUS=Opening the secrets sealed in clients.pickle: 101 of 1000, paused while connections are served",
    "STATUS=Opening the secrets sealed in clients.pickle: 101 of 1000",
    "STATUS=Opening the secrets sealed in clients.pickle: 101 of 1000, paused while connections are served",
  ]);
  assert.equal(told[6], "STATUS=Opening the secrets sealed in clients.pickle: 101 of 1000");
});
