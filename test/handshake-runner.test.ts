// The worker pool's batching: many tasks submitted at once all come back,
// each to its own caller, in a handful of batches; a task that throws on the
// worker fails alone, not its batch; a flight's progress crosses from task
// to task; a closed runner rejects queued work; a pool says when its
// workers have loaded their code.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHandshakeRunner } from "../src/main/serve/handshake-runner.js";
import { describeBuild, installedBuild } from "../src/build.js";
import { DEFAULT_PRIORITY, EngineDriver, parsePriority, type HandshakeTask, type NamedGroup, type TlsEvent } from "../src/tls/index.js";
import { openFlight } from "./helpers/tls-flight.js";
import { makeKey } from "./helpers/tls-pair.js";

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
    const runner = createHandshakeRunner(2, settings, undefined, { build: server, onOtherBuild: (m) => said.push(m) });
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

  it("rejects work after close", async () => {
    const runner = createHandshakeRunner(1, settings);
    await runner.close();
    await assert.rejects(runner.run({ kind: "key-share", group: "x25519" }), /closed/);
  });
});
