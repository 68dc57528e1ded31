// A serve thread that no longer answers (wedged in a loop by a bug) must
// not hold the server's stop for ever: found by an audit, SIGTERM then
// logged "Server exiting" and the process stayed, checkers running, the
// state unsaved, until SIGKILL. Now the stop gives such a thread its grace
// and CLOSE_SLACK_MS more, says so, saves the state and exits with a
// failure. And while it runs, the liveness watch finds the thread wedged:
// an ERROR, /health 503, no more watchdog pings (systemd restarts the
// server). Real bin/mandos with two serve threads; the wedge is a test
// preload (helpers/wedge-serve-thread.cts).

import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeClients, makeKeySet } from "./helpers/keys.js";
import { MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { REPO, startServer, type RunningServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";
import { receiveDatagrams } from "./helpers/datagram-receiver.js";
import { CLOSE_SLACK_MS, THREAD_UNANSWERED_MS } from "../src/main/serve/serve-threads.js";

async function health(port: number): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/health`);
  return { status: res.status, body: await res.text() };
}

test("a wedged serve thread is found, fails /health and the watchdog, and does not hold the stop: the state saved, a failure exit", { skip: missing(MANDOS_KEYGEN) }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-wedge-"));
  let server: RunningServer | undefined;
  try {
    makeKeySet(join(root, "pgp"));
    const [client] = makeClients(root, join(root, "pgp"), 1, "w");
    const conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    writeFileSync(join(conf, "clients.conf"), `${client!.section}\n`);
    const state = join(root, "state");
    // In the state directory: the server's user (it drops root) must rename it.
    const trigger = join(state, "wedge");
    const notify = join(root, "notify");
    const rx = await receiveDatagrams(notify);
    chmodSync(notify, 0o777);
    const pings = (datagrams = rx.received): number => datagrams.filter((b) => b.toString("utf8") === "WATCHDOG=1").length;
    try {
      server = await startServer(
        ["--configdir", conf, "--statedir", state, "--no-restore", "--port", "0", "--address", "::1", "--serve-threads", "2", "--metrics", ":0"],
        { NODE_OPTIONS: `-r ${REPO}dist/test/helpers/wedge-serve-thread.cjs`, MANDOS_TS_TEST_WEDGE: trigger, NOTIFY_SOCKET: notify, WATCHDOG_USEC: "400000" },
      );
      const metricsPort = Number(/Serving \/metrics and \/health on "127\.0\.0\.1", port (\d+)/.exec(server.log())?.[1]);
      await eventually(() => existsSync(join(state, "clients.json")), { what: "the first save" });
      assert.equal((await health(metricsPort)).status, 200);
      writeFileSync(trigger, "");
      await eventually(() => existsSync(`${trigger}.taken`), { what: "a serve thread wedged" });
      // Found wedged by the liveness watch: said, /health 503, no more watchdog pings.
      await server.waitForLog(new RegExp(`ERROR: Serve thread \\d has not answered for ${THREAD_UNANSWERED_MS / 1000} s`), THREAD_UNANSWERED_MS + 10_000);
      const answer = await health(metricsPort);
      assert.equal(answer.status, 503);
      assert.match(answer.body, /^not accepting connections: serve thread \d has not answered/);
      // Pings sent before it was found wedged may still be on their way: counted up to a marker sent after.
      const afterLoss = pings(rx.received.slice(0, await rx.mark()));
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal(pings(), afterLoss, "no watchdog ping once a thread is wedged");
    } finally {
      await rx.close();
    }
    const stoppedAt = Date.now();
    const child = server.process;
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    const code = await Promise.race([exited, new Promise<"hung">((resolve) => setTimeout(() => resolve("hung"), 30_000).unref())]);
    assert.notEqual(code, "hung", `the server did not exit within 30 s of SIGTERM; its log:\n${server.log().slice(-2000)}`);
    assert.equal(code, 1);
    assert.match(server.log(), new RegExp(`ERROR: Serve thread \\d did not close within ${(5_000 + CLOSE_SLACK_MS) / 1000} s; stopping without it`));
    assert.ok(statSync(join(state, "clients.json")).mtimeMs >= stoppedAt, "the state saved at the stop");
  } finally {
    // A wedged server the test gave up on: not left to hold this process.
    if (server && server.process.exitCode === null && server.process.signalCode === null) server.process.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  }
});
