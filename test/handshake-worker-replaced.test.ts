// A handshake worker that stops answering, or dies mid-request, costs no
// handshake: it is ended and replaced (or Piscina replaces it), and the
// request's tasks run again once on a worker; a task that wedges every
// worker fails alone; a lost key-share refill is asked again; a closed
// connection's waiting task is dropped; /health says so while a worker
// does not answer. Regression tests for the s53 audit's F1 and F3 (a wedged
// worker left every handshake to time out, counted against its client; a
// worker's exit failed its whole batch with internal_error).

import { describe, it, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHandshakeRunner, type HandshakeRunner } from "../src/main/serve/handshake-runner.js";
import { installedBuild } from "../src/build.js";
import { DEFAULT_PRIORITY, parsePriority, type HandshakeTask } from "../src/tls/index.js";
import { trackHealth } from "../src/main/observe/health.js";
import { Observability } from "../src/main/observe/index.js";
import type { SystemdNotifier } from "../src/main/observe/sd-notify.js";
import { eventually } from "./helpers/wait.js";
import { idleSources } from "./helpers/observe-sources.js";

const settings = parsePriority(DEFAULT_PRIORITY);
const entry = new URL("./helpers/misbehave-worker.cjs", import.meta.url);
const good: HandshakeTask = { kind: "key-share", group: "x25519" };
const poison = { kind: "key-share", group: "poison" } as unknown as HandshakeTask;
/** Far below WORKER_ANSWER_MS, far above a batch of key shares. */
const ANSWER_WITHIN_MS = 400;

interface Said {
  stuck: string[];
  exited: string[];
  inline: string[];
  /** runner.unanswering as each stuck worker was said. */
  unansweringThen: Array<string | null>;
}

/** A pool of `workers` whose first worker given a request of kind `on` does `what` to it. */
function misbehavingPool(t: TestContext, workers: number, what: "hang" | "exit" | "none", on: "handshakes" | "keygen" = "handshakes"): { runner: HandshakeRunner; said: Said } {
  const marker = mkdtempSync(join(tmpdir(), "mandos-ts-misbehave-"));
  // Read by the workers as they start (a worker's env is a copy of the process's then).
  process.env.MANDOS_TS_TEST_MISBEHAVE = what;
  process.env.MANDOS_TS_TEST_MISBEHAVE_ON = what === "none" ? "nothing" : on;
  process.env.MANDOS_TS_TEST_MISBEHAVE_ONCE = join(marker, "done");
  const said: Said = { stuck: [], exited: [], inline: [], unansweringThen: [] };
  const runner: HandshakeRunner = createHandshakeRunner(workers, settings, undefined, {
    build: installedBuild(),
    entry,
    answerWithinMs: ANSWER_WITHIN_MS,
    onInline: (m) => said.inline.push(m),
    onWorkerExit: (m) => said.exited.push(m),
    onWorkerStuck: (m) => {
      said.stuck.push(m);
      said.unansweringThen.push(runner.unanswering);
    },
  });
  // The workers first: one still running could make the marker again as it is removed.
  t.after(async () => {
    await runner.close();
    delete process.env.MANDOS_TS_TEST_MISBEHAVE;
    delete process.env.MANDOS_TS_TEST_MISBEHAVE_ON;
    delete process.env.MANDOS_TS_TEST_MISBEHAVE_ONCE;
    rmSync(marker, { recursive: true, force: true });
  });
  return { runner, said };
}

const kinds = (results: ReadonlyArray<{ kind: string }>): string[] => results.map((r) => r.kind);

describe("a handshake worker that does not answer, or dies", () => {
  it("is ended and replaced when it misses its deadline, and its batch runs again on the new one (one worker)", { timeout: 30_000 }, async (t) => {
    const { runner, said } = misbehavingPool(t, 1, "hang");
    assert.equal(await runner.ready(), true);
    const results = await Promise.all(Array.from({ length: 8 }, () => runner.run(good)));
    assert.deepEqual(kinds(results), Array(8).fill("key-share"), "every handshake of the wedged batch served");
    assert.equal(said.stuck.length, 1, said.stuck.join("\n"));
    assert.match(said.stuck[0]!, /^Handshake worker \d+ did not answer in 0\.4 s; replacing it$/);
    assert.match(said.unansweringThen[0] ?? "", /^handshake worker \d+ did not answer in 0\.4 s and has not ended$/, "/health's reason while it is being ended");
    assert.equal(runner.replaced, 1, "the mandos_handshake_workers_replaced_total count");
    await eventually(() => runner.unanswering === null, { what: "the wedged worker ended" });
    assert.deepEqual(said.exited, [], "its exit is not said again as a failure");
    assert.equal(runner.workers, 1, "still a pool: not inline");
    assert.deepEqual(said.inline, []);
    assert.equal((await runner.run(good)).kind, "key-share", "and serves on");
  });

  it("fails only a task that wedges every worker, once it went alone, and serves the rest of its batch", { timeout: 30_000 }, async (t) => {
    const { runner, said } = misbehavingPool(t, 1, "none");
    assert.equal(await runner.ready(), true);
    const outcomes = await Promise.allSettled([good, good, good, poison, good, good, good].map((task) => runner.run(task)));
    assert.deepEqual(outcomes.map((o) => o.status), ["fulfilled", "fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled", "fulfilled"]);
    const failed = outcomes[3] as PromiseRejectedResult;
    assert.match(String(failed.reason), /did not answer in 0\.4 s/);
    assert.equal(said.stuck.length, 2, "the worker of its batch, then the one it went to alone");
    assert.equal(runner.replaced, 2);
    await eventually(() => runner.unanswering === null, { what: "both wedged workers ended" });
  });

  it("runs a batch again when its worker exits under it, and says the exit with its code", { timeout: 30_000 }, async (t) => {
    const { runner, said } = misbehavingPool(t, 1, "exit");
    assert.equal(await runner.ready(), true);
    const results = await Promise.all(Array.from({ length: 16 }, () => runner.run(good)));
    assert.deepEqual(kinds(results), Array(16).fill("key-share"), "no handshake of the batch failed");
    assert.equal(said.exited.length, 1, said.exited.join("\n"));
    assert.match(said.exited[0]!, /^Handshake worker \d+ exited with code 3; another was started$/);
    assert.deepEqual(said.stuck, []);
    assert.equal(runner.replaced, 0, "replaced for not answering: none");
    assert.equal(runner.workers, 1);
  });

  it("asks again for key shares whose refill a wedged worker held", { timeout: 30_000 }, async (t) => {
    const { runner, said } = misbehavingPool(t, 1, "hang", "keygen");
    // More than the reservoir holds: the waiters are served by refills only.
    const shares = await Promise.all(Array.from({ length: 300 }, () => runner.keyShares()));
    assert.equal(shares.length, 300);
    assert.equal(new Set(shares.map((s) => Buffer.from(s.shares[0]!.publicKey).toString("hex"))).size, 300, "each fresh");
    assert.equal(said.stuck.length, 1);
  });

  it("asks again for key shares whose refill died with its worker", { timeout: 30_000 }, async (t) => {
    const { runner, said } = misbehavingPool(t, 1, "exit", "keygen");
    const shares = await Promise.all(Array.from({ length: 300 }, () => runner.keyShares()));
    assert.equal(shares.length, 300);
    assert.equal(said.exited.length, 1);
  });

  it("drops a closed connection's task that still waits for a worker", { timeout: 30_000 }, async (t) => {
    const { runner } = misbehavingPool(t, 1, "hang");
    assert.equal(await runner.ready(), true);
    const first = runner.run(good);
    // Let the first batch leave alone (dispatch is at the end of the turn).
    await new Promise((r) => setImmediate(r));
    const caller = { closed: false };
    const second = runner.run(good, caller);
    await new Promise((r) => setImmediate(r));
    assert.equal(runner.queued, 1, "waits behind the wedged worker");
    caller.closed = true;
    await assert.rejects(second, /its connection closed/);
    assert.equal((await first).kind, "key-share");
  });

  it("stops the watchdog pings while a worker does not answer (one that cannot be ended needs a restart)", async () => {
    let unanswering: string | null = null;
    let alive: () => boolean = () => true;
    const systemd: SystemdNotifier = { notify: () => undefined, startWatchdog: (a) => void (alive = a), close: () => undefined };
    const observe = await Observability.start({ metrics: undefined, auditLog: "", auditSyslog: false, servicename: "Mandos" }, systemd,
      idleSources({ workers: 1, workersUnanswering: () => unanswering }));
    try {
      observe.ready();
      assert.equal(alive(), true);
      unanswering = "handshake worker 3 did not answer in 5 s and has not ended";
      assert.equal(alive(), false, "no WATCHDOG=1 while it has not ended");
      unanswering = null;
      assert.equal(alive(), true);
    } finally {
      await observe.close();
    }
  });

  it("makes /health say not ok, with the runner's reason", () => {
    let unanswering: string | null = "handshake worker 3 did not answer in 5 s and has not ended";
    const health = trackHealth({ accepting: () => true, listenerLost: () => null, stateNotKept: () => null, workersUnanswering: () => unanswering });
    try {
      assert.deepEqual(health.report(), { ok: false, reason: "handshake worker 3 did not answer in 5 s and has not ended" });
      unanswering = null;
      assert.deepEqual(health.report(), { ok: true });
    } finally {
      health.close();
    }
  });
});
