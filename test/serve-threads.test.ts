// --serve-threads: the connections run whole on threads that share the
// listening socket, and the main thread keeps the registry and counts the
// sources for all of them (src/main/serve/serve-threads.ts). What only the
// main thread has must still reach every thread: a per-source cap that
// holds across threads and never refuses a source under it, clients added
// by a reload, a decision that waits for the approval delay, a request
// withdrawn when its client leaves. Real bin/mandos, real mandos-client,
// loopback.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeClients, makeKeySet, type TestClient } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { listenBacklog, runMandosClient, startServer, type RunningServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";
import { LISTEN_BACKLOG } from "../src/main/serve/limits.js";
import { fetchSecret, loadIdentity, type FetchError } from "../src/client/fetch.js";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/index.js";

const skip = missing(MANDOS_CLIENT, MANDOS_KEYGEN);
const CAP = 4;
/** A client's section that waits a minute for an approval that does not come by default. */
const WAITS_LONG = (c: TestClient): string => `${c.section}\napproval_delay = PT1M\napproved_by_default = False\n`;

/**
 * Opens a socket from `local` that says nothing; resolves once connected or
 * dropped (a reset at accept can come before the connect is seen), and
 * tells whether the server has dropped it since.
 */
function idle(port: number, local: string): Promise<{ socket: Socket; dropped: () => boolean }> {
  return new Promise((resolve) => {
    let gone = false;
    const socket = connect({ host: "127.0.0.1", port, localAddress: local });
    const done = (): void => resolve({ socket, dropped: () => gone });
    socket.on("connect", done);
    socket.on("error", () => {
      gone = true;
      done();
    });
    socket.on("close", () => {
      gone = true;
      done();
    });
    socket.on("data", () => {});
  });
}

describe("bin/mandos --serve-threads 2", { skip }, () => {
  let root = "";
  let conf = "";
  let clients: TestClient[] = [];
  let server: RunningServer;
  let metricsPort = 0;

  /** Clients waiting for an approval, from the metrics (the main thread's registry). */
  async function awaitingApproval(): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return Number(/^mandos_clients\{state="awaiting_approval"\} (\d+)$/m.exec(text)?.[1] ?? NaN);
  }

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-threads-"));
    const pgp = join(root, "pgp");
    makeKeySet(pgp);
    clients = makeClients(root, pgp, 4);
    conf = join(root, "conf");
    mkdirSync(conf);
    // client2 waits 2 s for an approval that comes by default; client1 is
    // added by a reload; client3 would wait a minute for one that never comes.
    const sections = [clients[0]!.section, `${clients[2]!.section}\napproval_delay = PT2S\napproved_by_default = True\n`, WAITS_LONG(clients[3]!)];
    writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n\n${sections.join("\n")}\n`, { mode: 0o600 });
    server = await startServer([
      "--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::",
      "--serve-threads", "2", "--max-per-source", String(CAP), "--metrics", ":0",
    ]);
    metricsPort = Number(/Serving \/metrics and \/health on "127\.0\.0\.1", port (\d+)/.exec(server.log())?.[1]);
    assert.ok(metricsPort > 0, server.log());
  });

  after(async () => {
    await server?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("the shared listening socket keeps the whole backlog", async () => {
    // Each thread after the first listens again on the shared descriptor,
    // and listen(2) sets the backlog anew: Node's default 511 there let a
    // burst of 1,000 overflow the queue (SYNs dropped, clients retrying
    // after 1 s and 3 s).
    assert.equal(await listenBacklog(server.port), LISTEN_BACKLOG);
  });

  test("a client gets its exact password", async () => {
    const result = await runMandosClient(clients[0]!.dir, "::1", server.port);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString("utf8"), clients[0]!.password);
    await server.waitForLog(/Sending secret to client0\b/);
  });

  test("a client that leaves while its approval waits withdraws the request on the main thread", async () => {
    // The thread's connection aborts its pending request when the peer
    // goes (serve.ts: PendingRequest); the main thread then stops waiting
    // at once, not after the minute's approval_delay.
    const gone = runMandosClient(clients[3]!.dir, "::1", server.port, 3_000);
    await eventually(async () => (await awaitingApproval()) === 1, { what: "client3 awaiting approval", timeoutMs: 10_000 });
    await gone;
    await eventually(async () => (await awaitingApproval()) === 0, {
      what: "the approval withdrawn after client3 left",
      timeoutMs: 10_000,
      context: () => server.log().slice(-2000),
    });
  });

  test("the per-source cap counts the connections of every thread", async () => {
    // With a cap per thread, twice the cap could stay open over two threads.
    const sockets = await Promise.all(Array.from({ length: 2 * CAP }, () => idle(server.port, "127.0.0.9")));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const open = sockets.filter((s) => !s.dropped()).length;
    for (const s of sockets) s.socket.destroy();
    assert.equal(open, CAP);
    await server.waitForLog(/127\.0\.0\.9.*(too many|limit)/i);
  });

  test("a source that connects again as fast as it is served, at its cap, is never refused for the cap", async () => {
    // Its connections close on one thread and open on the other: counted
    // on the main thread from each thread's batches, an opening could come
    // before the closing it followed, and be refused for a cap the source
    // did not hold (a soak: 1,570 of 9,000, 120 at once against 128; here
    // 114 of 1,500 at CAP). source-recheck.ts and Connection's sending().
    const identity = loadIdentity(join(clients[0]!.dir, "tls-privkey.pem"), join(clients[0]!.dir, "tls-pubkey.pem"));
    const settings = parsePriority(DEFAULT_PRIORITY);
    /** `count` secrets asked for `atOnce` at a time from `local`; the error codes of those that failed. */
    const ask = async (count: number, atOnce: number, local: string): Promise<string[]> => {
      const failed: string[] = [];
      await Promise.all(Array.from({ length: atOnce }, async () => {
        while (count-- > 0) {
          await fetchSecret({ host: "127.0.0.1", port: server.port, localAddress: local, identity, settings, timeoutMs: 10_000 })
            .catch((e: FetchError) => failed.push(e.code));
        }
      }));
      return failed;
    };
    assert.deepEqual(await ask(600, CAP, "127.0.0.10"), []);
    // Over the cap, refusals still come, each answered (none held for good).
    const over = await ask(400, 2 * CAP, "127.0.0.11");
    assert.ok(over.length > 0, "twice the cap at once, and never refused");
    assert.deepEqual([...new Set(over)], ["MANDOS_CLIENT_SOCKET"]);
  });

  test("a client added by SIGHUP is known to every thread", async () => {
    const c = clients[1]!;
    writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n\n${clients[0]!.section}\n${c.section}\n${clients[2]!.section}\napproval_delay = PT2S\napproved_by_default = True\n${WAITS_LONG(clients[3]!)}`);
    server.process.kill("SIGHUP");
    await server.waitForLog(/client1/);
    // Twice, so that both threads are likely asked.
    for (let i = 0; i < 2; i++) {
      const result = await runMandosClient(c.dir, "::1", server.port);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.toString("utf8"), c.password);
    }
  });

  test("a decision that waits for the approval delay reaches the thread", async () => {
    const c = clients[2]!;
    const started = Date.now();
    const result = await runMandosClient(c.dir, "::1", server.port);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString("utf8"), c.password);
    assert.ok(Date.now() - started >= 1_900, `served after ${Date.now() - started} ms, before the 2 s delay`);
  });
});

describe("a serve thread that dies", { skip }, () => {
  let root = "";
  let server: RunningServer;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-threads-crash-"));
    const pgp = join(root, "pgp");
    makeKeySet(pgp);
    const [c] = makeClients(root, pgp, 1) as [TestClient];
    const conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n\n${c.section}\n`, { mode: 0o600 });
    // Preloaded in every thread (--require reaches workers): the serve threads throw 3 s after they start.
    const crash = join(root, "crash.cjs");
    writeFileSync(crash, `const { isMainThread } = require("node:worker_threads");\nif (!isMainThread) setTimeout(() => { throw new Error("injected fault"); }, 3000).unref();\n`);
    server = await startServer(
      ["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--serve-threads", "2"],
      { NODE_OPTIONS: `--require ${crash}` },
    );
  });

  after(async () => {
    await server?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("stops the server with a critical line and exit code 1, instead of leaving it up and serving nothing", async () => {
    await server.waitForLog(/CRITICAL: A serve thread ended: injected fault; stopping/, 15_000);
    const code = await new Promise<number | null>((resolve) => {
      if (server.process.exitCode !== null) resolve(server.process.exitCode);
      else server.process.once("exit", (c) => resolve(c));
    });
    assert.equal(code, 1);
  });
});
