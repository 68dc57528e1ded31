// daemon/log-serve.ts's per-source budget on a manual clock: a source's
// lines stop at the burst, the ones held back are summarised with its
// address and count, other sources are not affected, and what a peer sent
// reaches a line as printable ASCII; a flood of one line (SummedLines) is
// said once, then summed up while it lasts; past the ceiling of all
// sources, a quiet source still writes from a reserve; a known key's lines are
// charged to its client instead; and a server that stops writes the
// summaries still pending.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../src/main/clock.js";
import {
  ALL_PEER_LINES_BURST, ALL_PEER_LINES_PER_SECOND, CLIENT_LINES_BURST, CLIENT_LINES_PER_SECOND, PEER_LINES_BURST, PEER_LINES_PER_SECOND, PeerLineBudget,
  QUIET_SOURCE_LINES, RESERVE_LINES_BURST, RESERVE_LINES_PER_SECOND, SUMMARY_INTERVAL_MS, SUMMARY_SOURCES_MAX, logServeEvents,
} from "../src/main/daemon/log-serve.js";
import { MAX_APPROVAL_WAITS } from "../src/main/clients/approval.js";
import type { ClientView } from "../src/main/clients/contract.js";
import { events, type ClientRejected } from "../src/main/events.js";
import { printableAscii, pyAscii, pyTextLine } from "../src/main/python/repr.js";
import { SummedLines, type Logger } from "../src/main/daemon/log.js";
import { startServer } from "./helpers/server.js";

test("a source's lines stop at the burst and are summarised with its address and count", () => {
  const clock = new ManualClock();
  const summaries: string[] = [];
  const budget = new PeerLineBudget(clock, (source, n, s) => summaries.push(`${source} ${n} ${s}`));
  let allowed = 0;
  for (let i = 0; i < PEER_LINES_BURST + 50; i++) if (budget.allow("192.0.2.1")) allowed++;
  assert.equal(allowed, PEER_LINES_BURST);
  assert.equal(budget.allow("192.0.2.2"), true, "another source keeps its budget");
  clock.advance(SUMMARY_INTERVAL_MS - 1);
  assert.deepEqual(summaries, []);
  clock.advance(1);
  assert.deepEqual(summaries, ["192.0.2.1 50 10"]);
  // The budget came back at its rate meanwhile.
  let again = 0;
  while (budget.allow("192.0.2.1")) again++;
  assert.equal(again, (SUMMARY_INTERVAL_MS / 1000) * PEER_LINES_PER_SECOND);
  budget.stop();
  assert.deepEqual(summaries, ["192.0.2.1 50 10", "192.0.2.1 1 1"]);
});

test("sources that never had a line held back are forgotten once their budget is whole", () => {
  const clock = new ManualClock();
  const budget = new PeerLineBudget(clock, () => {});
  // 1,000 scanners' one line each: none held back, so no summary was due.
  for (let i = 0; i < 1000; i++) assert.equal(budget.allow(`198.51.100.${i % 250}/${i}`), true);
  assert.equal(budget.tracked, 1000);
  clock.advance(60_000);
  assert.equal(budget.tracked, 0, "no source kept for ever");
  budget.stop();
});

test("a served connection's lines go back to its source", () => {
  const budget = new PeerLineBudget(new ManualClock(), () => undefined);
  for (let id = 0; id < PEER_LINES_BURST * 3; id++) {
    for (let line = 0; line < 4; line++) assert.equal(budget.allow("198.51.100.1", id), true, `connection ${id}`);
    budget.refund(id);
  }
  budget.stop();
});

// Sources cost an attacker on the link nothing (an IPv6 link-local address
// each): fresh ones must not bring fresh lines without end.
test("all sources together stop at one ceiling; the summaries name the worst and sum the rest", () => {
  const clock = new ManualClock();
  const summaries: string[] = [];
  const budget = new PeerLineBudget(clock, (who, n, s) => summaries.push(`${who} ${n} ${s}`));
  const source = (i: number): string => `fe80::${i.toString(16)}%eth0`;
  let allowed = 0;
  // Each new, each quiet: they take the reserve for quiet sources too, and then stop.
  for (let i = 0; i < ALL_PEER_LINES_BURST + RESERVE_LINES_BURST + 50; i++) if (budget.allow(source(i))) allowed++;
  assert.equal(allowed, ALL_PEER_LINES_BURST + RESERVE_LINES_BURST);
  assert.equal(budget.allow("192.0.2.9"), false, "a fresh source is held back too");
  clock.advance(1_000);
  let again = 0;
  for (let i = 0; i < ALL_PEER_LINES_PER_SECOND * 2; i++) if (budget.allow(`192.0.2.${i % 250}`, 1)) again++;
  assert.equal(again, ALL_PEER_LINES_PER_SECOND + RESERVE_LINES_PER_SECOND);
  // One source held back more than the others is named first.
  for (let i = 0; i < 5; i++) assert.equal(budget.allow(source(3)), false);
  // A served connection gives its lines back to the ceiling as well.
  budget.refund(1);
  assert.equal(budget.allow("198.51.100.7"), true);
  clock.advance(SUMMARY_INTERVAL_MS);
  assert.equal(summaries.length, SUMMARY_SOURCES_MAX + 1, summaries.slice(0, 3).join("\n"));
  assert.equal(summaries[0], `${source(3)} 5 9`);
  assert.equal(summaries[1], "192.0.2.9 2 10");
  const held = 50 + 1 + (ALL_PEER_LINES_PER_SECOND - RESERVE_LINES_PER_SECOND) + 5;
  const named = summaries.slice(0, SUMMARY_SOURCES_MAX).reduce((n, line) => n + Number(line.split(" ")[1]), 0);
  const others = /^(\d+) other sources (\d+) (\d+)$/.exec(summaries.at(-1)!);
  assert.ok(others, summaries.at(-1));
  assert.equal(named + Number(others[2]), held, "every line held back is counted once");
  budget.stop();
});

// A flood from a few hundred addresses reaches the ceiling of all sources:
// a machine that comes then (its first lines, a `Client not found` to
// enroll it) is still heard, the flood's sources are not.
test("past the ceiling, a quiet source still writes from the reserve; the flood's own sources do not", () => {
  const clock = new ManualClock();
  const budget = new PeerLineBudget(clock, () => {});
  // 400 sources, 50 lines each: their own budgets half full, the ceiling reached.
  const flood = (i: number): string => `10.0.${Math.floor((i % 400) / 200)}.${i % 200}`;
  let i = 0;
  while (budget.allow(flood(i))) i++;
  assert.equal(i, ALL_PEER_LINES_BURST);
  // Each has spent more than its quiet lines: none takes the reserve.
  for (let n = 0; n < 400; n++) assert.equal(budget.allow(flood(n)), false, `flood source ${n}`);
  let newcomer = 0;
  while (budget.allow("192.0.2.50")) newcomer++;
  assert.equal(newcomer, QUIET_SOURCE_LINES, "its quiet lines, from the reserve");
  for (let n = 0; n < RESERVE_LINES_BURST; n++) budget.allow(`192.0.2.${100 + (n % 100)}`);
  assert.equal(budget.allow("192.0.2.51"), false, "the reserve has its own bound");
  // The flood goes on for a minute, each source asking 12 lines a second and held back:
  // what it asks costs its own budget, so it never looks quiet again, and the reserve is the newcomers'.
  for (let second = 0; second < 60; second++) {
    clock.advance(1_000);
    for (let line = 0; line < 12; line++) for (let n = 0; n < 400; n++) budget.allow(flood(n));
  }
  let later = 0;
  while (budget.allow("192.0.2.60")) later++;
  assert.equal(later, QUIET_SOURCE_LINES, "a minute into the flood, a newcomer is still heard");
  budget.stop();
});

test("a served connection gets back what its lines cost its source, those the ceiling held back too", () => {
  const budget = new PeerLineBudget(new ManualClock(), () => {});
  for (let i = 0; budget.allow(`10.0.${Math.floor((i % 400) / 200)}.${i % 200}`); i++);
  // A rack behind one address: its quiet lines from the reserve, then held back, each costing its budget.
  let first = 0;
  for (let line = 0; line < 30; line++) if (budget.allow("192.0.2.80", 7)) first++;
  assert.equal(first, QUIET_SOURCE_LINES);
  budget.refund(7);
  let again = 0;
  while (budget.allow("192.0.2.80")) again++;
  assert.equal(again, QUIET_SOURCE_LINES, "quiet again once its served connection gave back all 30");
  budget.stop();
});

test("a peer's text reaches the log as printable ASCII; the good line keeps the reference's form", () => {
  assert.equal(pyAscii(pyTextLine("1\r\n")), "'1\\n'");
  assert.equal(pyAscii("1\u009b[2J\u0085x"), "'1\\x9b[2J\\x85x'");
  assert.equal(printableAscii("bad \u0007\u00e9\n"), "bad \\x07\\xe9\\x0a");
});

test("a flood of one line: the first at once, then a sum every interval while it lasts, then at once again", () => {
  const clock = new ManualClock();
  const lines: string[] = [];
  const flood = new SummedLines(clock, 10_000, (d) => void lines.push(`first ${d}`), (n, s) => void lines.push(`${n} more in ${s} s`));
  for (let i = 0; i < 5; i++) flood.note(`#${i}`);
  assert.deepEqual(lines, ["first #0"]);
  clock.advance(9_999);
  assert.deepEqual(lines, ["first #0"]);
  clock.advance(1);
  assert.deepEqual(lines, ["first #0", "4 more in 10 s"]);
  flood.note("#5");
  clock.advance(10_000);
  assert.deepEqual(lines.slice(2), ["1 more in 10 s"]);
  // A quiet interval ends the flood: nothing said for it, and the next is said at once.
  clock.advance(10_000);
  clock.advance(30_000);
  assert.equal(lines.length, 3);
  flood.note("#6");
  assert.deepEqual(lines.slice(3), ["first #6"]);
  flood.note("#7");
  // Stopping says what is still counted, over the time it was counted in, and leaves no timer behind.
  clock.advance(2_000);
  flood.stop();
  assert.deepEqual(lines.slice(4), ["1 more in 2 s"]);
  clock.advance(60_000);
  assert.equal(lines.length, 5);
});

test("a known key's lines stop at its client's burst and are summarised by name; another client's go on", () => {
  // A stolen or decommissioned key replayed in a loop wrote a line a
  // connection ("is disabled", "needs approval"), ~245 a second.
  const clock = new ManualClock();
  const lines: string[] = [];
  const capture: Logger = {
    debug: (m) => void lines.push(m), info: (m) => void lines.push(m), warning: (m) => void lines.push(m),
    error: (m) => void lines.push(m), critical: (m) => void lines.push(m), enabledFor: () => true,
  };
  const stop = logServeEvents(capture, clock);
  try {
    const connection = { id: 1, address: "192.0.2.7", port: 4000, source: "192.0.2.7", label: "('192.0.2.7', 4000)" };
    const rejected = (client: string, reason: ClientRejected["reason"]): void => events.clientRejected.publish({ connection, client, keyId: "AB", reason });
    for (let i = 0; i < CLIENT_LINES_BURST + 10; i++) rejected("stolen", "disabled");
    // The line only reads the name.
    events.approvalNeeded.publish({ client: { name: "stolen" } as ClientView, timeoutMs: 1_000, approvedByDefault: false });
    assert.equal(lines.filter((l) => l === "Client stolen is disabled").length, CLIENT_LINES_BURST);
    assert.equal(lines.length, CLIENT_LINES_BURST, "needs approval is charged to the same client");
    rejected("other", "denied");
    rejected("thief", "superseded");
    assert.deepEqual(lines.slice(CLIENT_LINES_BURST), [
      "Client other was not approved",
      `Client thief: closed its connection ('192.0.2.7', 4000) waiting for approval, for a newer one (at most ${MAX_APPROVAL_WAITS} of a client wait at once)`,
    ]);
    clock.advance(SUMMARY_INTERVAL_MS);
    assert.equal(lines.at(-1), "Suppressed 11 log lines about client stolen in the last 10 s");
    // Its budget came back at its rate meanwhile.
    lines.length = 0;
    for (let i = 0; i < CLIENT_LINES_BURST; i++) rejected("stolen", "approval_timeout");
    assert.equal(lines.length, (SUMMARY_INTERVAL_MS / 1000) * CLIENT_LINES_PER_SECOND);
  } finally {
    stop();
  }
});

// A noisy peer's lines held back in a server's last seconds used to go
// unsaid: the server left without writing their summary.
test("lines held back when the server stops are summed up as it leaves", { timeout: 60_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-budget-"));
  try {
    writeFileSync(join(root, "clients.conf"), "[DEFAULT]\n", { mode: 0o600 });
    const server = await startServer(["--configdir", root, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::1"]);
    try {
      // Each bad version line costs its source a line or two; far more than the burst.
      for (let i = 0; i < PEER_LINES_BURST; i++) {
        await new Promise<void>((resolve) => {
          const socket = connect({ host: "::1", port: server.port }, () => socket.end("9\r\n"));
          socket.on("close", () => resolve());
          socket.on("error", () => resolve());
        });
      }
      assert.doesNotMatch(server.log(), /Suppressed \d+ log lines/);
      await server.stop();
      assert.match(server.log(), /WARNING: Suppressed \d+ log lines caused by ::\/64 in the last \d+ s$/m);
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
