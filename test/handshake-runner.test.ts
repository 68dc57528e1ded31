// The worker pool's batching: many tasks submitted at once all come back,
// each to its own caller, in a handful of batches; a task that throws on the
// worker fails alone, not its batch; a flight's progress crosses from task
// to task; callers whose sources fail often wait behind the others, for a
// worker and for key shares; a closed runner rejects queued work; a pool
// says when its workers have loaded their code.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHandshakeRunner, poolErrorWords } from "../src/main/serve/handshake-runner.js";
import { describeBuild, installedBuild } from "../src/build.js";
import { DEFAULT_PRIORITY, EngineDriver, parsePriority, type HandshakeTask, type NamedGroup, type TlsEvent } from "../src/tls/index.js";
import { openFlight } from "./helpers/tls-flight.js";
import { makeKey } from "./helpers/tls-pair.js";
import { eventually } from "./helpers/wait.js";

const settings = parsePriority(DEFAULT_PRIORITY);

describe("the worker pool runner", () => {
  it("answers 100 concurrent tasks, each with its own result", async () => {
    const runner = createHandshakeRunner(2, settings);
    try {
      const groups: NamedGroup[] = ["x25519", "secp256r1", "x448", "secp384r1"];
      const tasks: HandshakeTask[] = Array.from({ length: 100 }, (_, i) => ({ kind: "key-share", group: groups[i % 4]! }));
      const results = await Promise.all(tasks.map((t) => runner.run(t)));
      const publicKeys = new Set<string>();
      results.forEach((r, i) => {
        assert.equal(r.kind, "key-share");
        if (r.kind !== "key-share") return;
        assert.equal(r.share.group, groups[i % 4], `task ${i} got another task's result`);
        publicKeys.add(Buffer.from(r.share.publicKey).toString("hex"));
      });
      assert.equal(publicKeys.size, 100, "every task made its own key");
    } finally {
      await runner.close();
    }
  });

  it("fails only the task that throws, not the rest of its batch", async () => {
    const runner = createHandshakeRunner(1, settings);
    try {
      const good: HandshakeTask = { kind: "key-share", group: "x25519" };
      const bad = { kind: "key-share", group: "no-such-group" } as unknown as HandshakeTask;
      const outcomes = await Promise.allSettled([good, good, bad, good, good].map((t) => runner.run(t)));
      assert.deepEqual(outcomes.map((o) => o.status), ["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]);
    } finally {
      await runner.close();
    }
  });

  it("carries a flight's progress from task to task across the thread boundary", { timeout: 30_000 }, async () => {
    // A flight in 7-byte records, fed a byte at a time: many tasks, each
    // going on from the FlightProgress the previous one returned (structured-cloned).
    const runner = createHandshakeRunner(1, settings);
    try {
      const { client, flight } = openFlight({ key: makeKey("p256"), faults: { fragment: 7 } });
      const events: TlsEvent[] = [];
      let tasks = 0;
      let settle: () => void = () => undefined;
      const quiet = new Promise<void>((resolve) => (settle = resolve));
      const driver = new EngineDriver(
        client,
        { write: () => undefined, event: (e) => (events.push(e), settle()) },
        (task) => (tasks++, runner.run(task)),
      );
      for (const byte of flight) {
        driver.receive(Buffer.of(byte));
        // Let a task that is out come back now and then, so that several run.
        if (byte % 16 === 0) await new Promise((r) => setImmediate(r));
      }
      await quiet;
      assert.equal(events[0]?.type, "handshake-complete", JSON.stringify(events[0]));
      assert.ok(tasks > 1, `${tasks} tasks`);
    } finally {
      await runner.close();
    }
  });

  it("runs the tasks of callers that are behind (sources failing often) after the others', but a place in four of a batch while others wait", async () => {
    const runner = createHandshakeRunner(1, settings);
    try {
      await runner.ready();
      const order: string[] = [];
      const ask = (name: string, behind: boolean): Promise<unknown> =>
        runner.run({ kind: "key-share", group: "x25519" }, { closed: false, behind }).then(() => order.push(name));
      // One turn: twenty behind, then four that are not; one worker, batches of 16.
      const all = [...Array.from({ length: 20 }, (_, i) => ask(`behind${i}`, true)), ...Array.from({ length: 4 }, (_, i) => ask(`clean${i}`, false))];
      assert.equal(runner.queued, 24);
      await Promise.all(all);
      assert.deepEqual(order.slice(0, 4), ["clean0", "clean1", "clean2", "clean3"], order.join(", "));
      assert.deepEqual(order.slice(4), Array.from({ length: 20 }, (_, i) => `behind${i}`), "in their own order after");
      // A wave keeps more than a batch waiting; one task of a source held back came first: never starved.
      order.length = 0;
      await Promise.all([ask("behind", true), ...Array.from({ length: 40 }, (_, i) => ask(`clean${i}`, false))]);
      assert.ok(order.indexOf("behind") < 16, `in the first batch: at ${order.indexOf("behind")} of ${order.length}`);
    } finally {
      await runner.close();
    }
  });

  it("hands key shares to waiting callers that are not behind first, once the reservoir is drained", { timeout: 30_000 }, async () => {
    const runner = createHandshakeRunner(1, settings);
    try {
      await runner.ready();
      const order: string[] = [];
      const ask = (name: string, behind: boolean): Promise<unknown> => runner.keyShares({ closed: false, behind }).then(() => order.push(name));
      // More than the reservoir holds (RESERVOIR_TARGET, 256), then five that are not behind.
      const all = [...Array.from({ length: 400 }, (_, i) => ask(`behind${i}`, true)), ...Array.from({ length: 5 }, (_, i) => ask(`clean${i}`, false))];
      await Promise.all(all);
      const lastClean = Math.max(...Array.from({ length: 5 }, (_, i) => order.indexOf(`clean${i}`)));
      assert.ok(lastClean < order.indexOf("behind399") - 32, `the five served at the first refill after they asked: at ${lastClean} of ${order.length}`);
    } finally {
      await runner.close();
    }
  });

  it("says it is ready once every worker has loaded its code (what the server waits for before dropping privileges)", async () => {
    const runner = createHandshakeRunner(2, settings);
    try {
      assert.equal(await runner.ready(), true);
    } finally {
      await runner.close();
    }
    assert.equal(await createHandshakeRunner(0, settings).ready(), true, "inline is ready at once");
  });

  it("runs every handshake inline, those it already held too, once a worker's files are another build than the server's", async () => {
    // The server's build as the pool is told it; the workers' files are
    // this checkout's, whose stamp (or "unstamped") is not it.
    const server = { version: "0.1.0", build: "0123456789ab" };
    assert.notEqual(installedBuild().build, server.build);
    const said: string[] = [];
    const runner = createHandshakeRunner(2, settings, undefined, { build: server, onInline: (m) => said.push(m) });
    try {
      // Sent before any worker has loaded: queued, or in a batch a worker answers with "otherBuild".
      const tasks: HandshakeTask[] = Array.from({ length: 40 }, () => ({ kind: "key-share", group: "x25519" }));
      const results = await Promise.all(tasks.map((t) => runner.run(t)));
      assert.equal(new Set(results.map((r) => (r.kind === "key-share" ? Buffer.from(r.share.publicKey).toString("hex") : ""))).size, 40);
      assert.equal(await runner.ready(), true, "ready: inline serves");
      assert.equal((await runner.keyShares()).shares.length > 0, true);
      assert.equal((await runner.run({ kind: "key-share", group: "x25519" })).kind, "key-share", "a task after the switch");
      assert.equal(runner.queued, 0);
      assert.equal(runner.workers, 0, "no worker thread serves (the mandos_handshake_workers gauge)");
      assert.deepEqual(said, [`the installed mandos-ts is ${describeBuild(installedBuild())}, not this server's 0.1.0 (build 0123456789ab): restart mandos to run it`], "said once");
    } finally {
      await runner.close();
    }
  });

  it("goes inline as well when a worker's answer says another build before any message does, and runs that batch here", async () => {
    const said: string[] = [];
    const entry = new URL("./helpers/answer-first-worker.cjs", import.meta.url);
    const runner = createHandshakeRunner(1, settings, undefined, { build: installedBuild(), onInline: (m) => said.push(m), entry });
    try {
      const results = await Promise.all(Array.from({ length: 4 }, () => runner.run({ kind: "key-share", group: "x25519" })));
      assert.deepEqual(results.map((r) => r.kind), ["key-share", "key-share", "key-share", "key-share"], "the batch the worker answered ran inline");
      assert.deepEqual(said, ["another build (said in the answer)"], "said once, from the answer");
      assert.equal(runner.workers, 0);
      assert.equal((await runner.keyShares()).shares.length > 0, true, "key shares made inline");
      assert.equal(await runner.ready(), true, "ready: inline serves, with no message from the worker");
    } finally {
      await runner.close();
    }
  });

  it("goes inline, once, when a worker cannot load its files (Piscina would start none again, and every handshake wait)", async () => {
    const said: string[] = [];
    const entry = new URL("./helpers/unloadable-worker.cjs", import.meta.url);
    const runner = createHandshakeRunner(2, settings, undefined, { build: installedBuild(), onInline: (m) => said.push(m), entry });
    try {
      const results = await Promise.all(Array.from({ length: 4 }, () => runner.run({ kind: "key-share", group: "x25519" })));
      assert.deepEqual(results.map((r) => r.kind), ["key-share", "key-share", "key-share", "key-share"]);
      assert.equal(await runner.ready(), true, "ready: inline serves");
      assert.equal((await runner.keyShares()).shares.length > 0, true);
      assert.equal(runner.workers, 0);
      assert.deepEqual(said, ["Cannot find module 'a file an upgrade removed'"], "said once, of two workers");
    } finally {
      await runner.close();
    }
  });

  it("says once when a loaded worker fails outside any task, with its exit, and serves on with the one Piscina starts in its place", async (t) => {
    const marker = mkdtempSync(join(tmpdir(), "mandos-ts-fail-once-"));
    t.after(() => rmSync(marker, { recursive: true, force: true }));
    process.env.MANDOS_TS_TEST_FAIL_ONCE = join(marker, "failed");
    t.after(() => delete process.env.MANDOS_TS_TEST_FAIL_ONCE);
    const inline: string[] = [];
    const failed: string[] = [];
    const exited: string[] = [];
    const entry = new URL("./helpers/fail-once-worker.cjs", import.meta.url);
    const runner = createHandshakeRunner(1, settings, undefined, {
      build: installedBuild(), onInline: (m) => inline.push(m), onWorkerError: (m) => failed.push(m), onWorkerExit: (m) => exited.push(m), entry,
    });
    try {
      assert.equal(await runner.ready(), true);
      await eventually(() => exited.length > 0, { what: "the worker's failure said" });
      assert.equal(exited.length, 1, "said once, with its exit");
      assert.match(exited[0]!, /^Handshake worker \d+ exited with code 1 \(a loaded worker failed outside any task\); another was started$/);
      assert.deepEqual(failed, [], "not said again as a pool error");
      const results = await Promise.all(Array.from({ length: 20 }, () => runner.run({ kind: "key-share", group: "x25519" })));
      assert.equal(results.filter((r) => r.kind === "key-share").length, 20);
      assert.equal(runner.workers, 1, "still a worker pool");
      assert.deepEqual(inline, []);
    } finally {
      await runner.close();
    }
  });

  it("never logs what Piscina quotes of a worker's unexpected answer (key shares, traffic secrets)", () => {
    const quoted = new Error("Unexpected message from Worker: { taskId: 61, result: { kind: 'keygen', shares: [ { privateKey: <Buffer 01 02> } ] } }");
    assert.equal(poolErrorWords(quoted), "it answered a task the pool no longer had");
    assert.equal(poolErrorWords(new Error("Cannot find module 'x'")), "Cannot find module 'x'");
    // As Node reports a module it cannot read: the one line, and what to look at.
    const unreadable = Object.assign(new Error("Cannot find module '/opt/m/dist/src/workers/handshake-worker.js'\nRequire stack:\n- x"), { code: "MODULE_NOT_FOUND" });
    assert.equal(poolErrorWords(unreadable), "Cannot find module '/opt/m/dist/src/workers/handshake-worker.js' (missing, or not readable by the user the server runs as)");
    assert.equal(poolErrorWords("worker exited with code: 1"), "worker exited with code: 1");
  });

  it("rejects work after close", async () => {
    const runner = createHandshakeRunner(1, settings);
    await runner.close();
    await assert.rejects(runner.run({ kind: "key-share", group: "x25519" }), /closed/);
  });
});
