// The open-files limit bounds the connections held open (serve/limits.ts,
// openConnectionsAllowed). Past RLIMIT_NOFILE, accept(2) fails with EMFILE
// and libuv closes every connection waiting in the backlog without a word:
// under a low limit the server says at start how many it will hold, refuses
// each one past that with a log line said once (and summed up later), and
// serves the real mandos-client again once they are gone.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { oneClientConfig, type TestClient } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { runMandosClient, startServer, type RunningServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";
import { FD_RESERVE, FDS_PER_THREAD, IDLE_EVICT_AFTER_MS, MAX_OPEN_CONNECTIONS, PEER_SLOW_MS, SLOW_EVICT_AFTER_MS, VERSION_LINE_TIMEOUT_MS, openConnectionsAllowed } from "../src/main/serve/limits.js";
import { openFilesLimit } from "../src/main/daemon/open-files.js";

test("the connections held open are MAX_OPEN_CONNECTIONS, or what the open-files limit leaves", () => {
  assert.equal(openConnectionsAllowed(null), MAX_OPEN_CONNECTIONS);
  assert.equal(openConnectionsAllowed(524_288), MAX_OPEN_CONNECTIONS);
  assert.equal(openConnectionsAllowed(4_096), 4_096 - FD_RESERVE);
  assert.equal(openConnectionsAllowed(1_024), 1_024 - FD_RESERVE);
  // A tiny limit: half of it, not what little the reserve leaves.
  assert.equal(openConnectionsAllowed(320), 160);
  // Each worker or serve thread keeps descriptors of its own: 63 serve threads on 64 cores.
  assert.equal(openConnectionsAllowed(4_096, 63), 4_096 - FD_RESERVE - 63 * FDS_PER_THREAD);
  assert.equal(openConnectionsAllowed(10_256 + 63 * FDS_PER_THREAD, 63), MAX_OPEN_CONNECTIONS);
  assert.equal(openConnectionsAllowed(10_256, 63), 10_256 - FD_RESERVE - 63 * FDS_PER_THREAD);
});

test("the open-files limit is read as /proc/self/limits gives it", () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-limits-"));
  try {
    const limits = (soft: string): string => {
      const path = join(dir, soft);
      writeFileSync(path, "Limit                     Soft Limit           Hard Limit           Units     \n" +
        "Max processes             95786                95786                processes \n" +
        `Max open files            ${soft.padEnd(21)}524288               files     \n`);
      return path;
    };
    assert.equal(openFilesLimit(limits("1024")), 1_024);
    assert.equal(openFilesLimit(limits("unlimited")), null);
    assert.equal(openFilesLimit(join(dir, "absent")), null);
    assert.ok((openFilesLimit() ?? 0) > 0, "this process's own limit");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const OPEN_FILES = 320;
// Half the limit, with one worker (the default here) or two serve threads alike.
const HELD = openConnectionsAllowed(OPEN_FILES);
assert.equal(openConnectionsAllowed(OPEN_FILES, 2), HELD);
const OPENED = 350;

/**
 * Opens `count` connections to ::1 that say nothing, into `sockets`;
 * `closed` runs as each closes, with how long it had been open, counted
 * from before its connect(2): never less than the server held it.
 * Resolves once all are connected.
 */
async function openSilent(port: number, count: number, sockets: Socket[], closed: (openMs: number) => void): Promise<void> {
  await Promise.all(Array.from({ length: count }, () => new Promise<void>((resolve) => {
    const from = Date.now();
    const s = connect({ host: "::1", port }, resolve);
    s.on("error", () => undefined);
    s.on("close", () => closed(Date.now() - from));
    sockets.push(s);
  })));
}

/** Runs `body` with a server under an open-files limit of OPEN_FILES, one client configured, and the sockets it opens destroyed after. */
async function underOpenFilesLimit(
  mode: readonly string[],
  body: (server: RunningServer, client: TestClient, sockets: Socket[]) => Promise<void>,
): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-open-limit-"));
  const sockets: Socket[] = [];
  try {
    const { client, conf } = oneClientConfig(root);
    const server = await startServer(
      // Every peer here is ::1: no cap per source.
      ["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::1", "--max-per-source", "0", ...mode],
      {},
      { wrap: ["prlimit", `--nofile=${OPEN_FILES}:${OPEN_FILES}`, "--"] },
    );
    try {
      await body(server, client, sockets);
    } finally {
      await server.stop();
    }
  } finally {
    for (const s of sockets) s.destroy();
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * Opens HELD + 1 connections at once (each saying `line`, if given) and
 * waits until the server has closed exactly one of them at accept, at the
 * cap, and logged it. Which one is the server's: with serve threads, the
 * last to connect is not always the last counted (one thread may count a
 * connection accepted after another's that the other has yet to count).
 */
async function capPlusOne(server: RunningServer, sockets: Socket[], closed: (openMs: number) => void, closedSoFar: () => number, line?: string): Promise<number> {
  // When the first close came: the server had counted every held one by then.
  let refusedAt = 0;
  await openSilent(server.port, HELD + 1, sockets, (openMs) => {
    refusedAt ||= Date.now();
    closed(openMs);
  });
  if (line !== undefined) for (const s of sockets) if (!s.destroyed) s.write(line);
  // However long a loaded machine takes to accept them all (the server at
  // nice 10 beside a busy loop on one core once took over 5 s, starting
  // the handshakes of those that sent a line as it went).
  await eventually(() => closedSoFar() > 0, { what: "one connection closed at the cap", context: () => server.log().slice(-3_000) });
  // With serve threads the line comes from the main thread, a turn later.
  await server.waitForLog(/Refusing connection from ::1: as many connections open as the server allows/, 10_000);
  assert.equal(closedSoFar(), 1, `one closed at the cap, the others held open\n${server.log().slice(-3_000)}`);
  return refusedAt;
}

/** Resolves `ms` after `since` (a Date.now()), at once if that has passed. */
function sinceThen(since: number, ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, since + ms - Date.now())));
}

/**
 * Listens on ::1 and relays each connection to the server's `port`, not
 * before `at` (a Date.now()). mandos-client, started before then, has
 * loaded its keys into GnuPG by the time its connection reaches the
 * server; on a loaded machine that start took much of the window the test
 * is about, and sometimes more.
 */
async function relayFrom(port: number, at: number): Promise<Server> {
  const relay = createServer((downstream) => {
    downstream.pause();
    downstream.on("error", () => undefined);
    void sinceThen(at, 0).then(() => {
      const upstream = connect({ host: "::1", port }, () => {
        downstream.pipe(upstream);
        upstream.pipe(downstream);
      });
      upstream.on("error", () => downstream.destroy());
      upstream.on("close", () => downstream.destroy());
      downstream.on("close", () => upstream.destroy());
    });
  });
  await new Promise<void>((resolve) => relay.listen({ host: "::1", port: 0 }, resolve));
  return relay;
}

// With serve threads too, where the threads count the cap together
// (serve/shared-limit.ts; that one thread may take more than its half is
// shown in serve-threads-limits.test.ts, where it is made to).
for (const mode of [[], ["--serve-threads", "2"]]) test(
  `under an open-files limit of ${OPEN_FILES}, the server holds ${HELD} connections, refuses the rest saying so once, and serves mandos-client after${mode.length ? `, ${mode.join(" ")}` : ""}`,
  { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN), timeout: 60_000 },
  () => underOpenFilesLimit(mode, async (server, client, sockets) => {
    assert.match(server.log(), new RegExp(`WARNING: Open files are limited to ${OPEN_FILES} \\(RLIMIT_NOFILE\\): at most ${HELD} connections open at once instead of ${MAX_OPEN_CONNECTIONS}; raise LimitNOFILE=`));
    // Idle peers, well inside the version line's 3 s: nothing of theirs times out meanwhile.
    let refused = 0;
    await openSilent(server.port, OPENED, sockets, () => void refused++);
    // Until the server has closed them, however long a loaded machine takes (it once had 2 s from here);
    // then a moment more for any it should not have closed.
    await eventually(() => refused >= OPENED - HELD, { what: `${OPENED - HELD} closed by the server`, context: () => `${refused} closed\n${server.log().slice(-3_000)}` });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(refused, OPENED - HELD, `${refused} closed by the server, of ${OPENED}`);
    const lines = server.log().match(/WARNING: Refusing connection from ::1: as many connections open as the server allows/g) ?? [];
    assert.equal(lines.length, 1, server.log().slice(-3_000));
    for (const s of sockets) s.destroy();
    const served = await runMandosClient(client.dir, "::1", server.port);
    assert.equal(served.code, 0, served.stderr);
    assert.equal(served.stdout.toString("utf8"), client.password);
    // The rest, summed up at the end of the 10 s that began with the first.
    await server.waitForLog(new RegExp(`WARNING: Refused ${OPENED - HELD - 1} more connections in the last 10 s: as many open as the server allows`), 15_000);
  }),
);

// At the cap a new connection takes the place of the oldest that has said
// nothing for IDLE_EVICT_AFTER_MS: idle sockets from enough sources (each
// under its cap and its failure bucket) no longer keep every real client
// out until they time out.
for (const mode of [[], ["--serve-threads", "2"]]) test(
  `at the cap, mandos-client takes the place of a socket silent for ${IDLE_EVICT_AFTER_MS} ms, the others left open${mode.length ? `, ${mode.join(" ")}` : ""}`,
  { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN), timeout: 60_000 },
  () => underOpenFilesLimit(mode, async (server, client, sockets) => {
    // One more than the cap: it is closed at accept while none has been silent long enough.
    // Closed before their own version-line deadline (counted from before
    // each connect(2), so never short of what the server held it; less the
    // millisecond the server's timers and each clock may round off).
    let closedByServer = 0;
    let closedEarly = 0;
    const refusedAt = await capPlusOne(server, sockets, (openMs) => {
      closedByServer++;
      if (openMs < VERSION_LINE_TIMEOUT_MS - 10) closedEarly++;
    }, () => closedByServer);
    // Past IDLE_EVICT_AFTER_MS (inside the line's 3 s), mandos-client is served in the place of one of them.
    // Its connection reaches the server then, counted from the refusal (the server had counted every
    // held one by then), not from when a loaded machine got through capPlusOne's waits and started
    // mandos-client: both came out of the 3 s the others have.
    const relay = await relayFrom(server.port, refusedAt + IDLE_EVICT_AFTER_MS + 200);
    const served = await runMandosClient(client.dir, "::1", (relay.address() as AddressInfo).port).finally(() => relay.close());
    assert.equal(served.code, 0, `${served.stderr}\n${server.log().slice(-3_000)}`);
    assert.equal(served.stdout.toString("utf8"), client.password);
    // The line lags mandos-client's exit (written once the kernel has taken the secret).
    await server.waitForLog(/Sending secret to/, 10_000);
    // One silent socket closed to make room, before the secret (one thread's lines, in its order).
    const log = server.log();
    const sent = log.indexOf("Sending secret to");
    const evicted = [...log.matchAll(/timed out waiting for the version line: over 1 s, closed for a new connection at the open connections cap/g)];
    assert.equal(evicted.length, 1, `one made room\n${log.slice(-3_000)}`);
    assert.ok(evicted[0]!.index! < sent, "before the secret");
    // The others held their places until their own deadline (VERSION_LINE_TIMEOUT_MS), each as seen
    // from its own end, not by the log's order: on a loaded machine mandos-client may yet be in its
    // handshake when they go, and with serve threads their lines and the secret's come from two threads.
    // Once every one is closed (the others by their deadline, a few seconds at most from here): closed
    // before it, the one refused at the cap and the one that made room, no more.
    await eventually(() => closedByServer === HELD + 1, { what: "every socket closed by the server", context: () => `${closedByServer} closed\n${server.log().slice(-3_000)}` });
    assert.equal(closedEarly, 2, `the one refused at the cap and the one that made room closed early, the others held their places\n${log.slice(-3_000)}`);
  }),
);

// Stalled handshakes at the cap: below the slots and the slow pool, each
// holds a slot for PEER_SLOW_MS and then waits in the pool, and nobody
// waits for a slot to make room for. At the cap, one that has waited
// SLOW_EVICT_AFTER_MS there makes room for the newcomer.
for (const mode of [[], ["--serve-threads", "2"]]) test(
  `at the cap, mandos-client takes the place of a handshake stalled ${SLOW_EVICT_AFTER_MS} ms in the slow pool${mode.length ? `, ${mode.join(" ")}` : ""}`,
  { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN), timeout: 60_000 },
  () => underOpenFilesLimit(mode, async (server, client, sockets) => {
    // One more than the cap, each sending its line: one is closed at accept while no stalled one has waited long enough.
    let closedByServer = 0;
    await capPlusOne(server, sockets, () => void closedByServer++, () => closedByServer, "1\r\n");
    await new Promise((resolve) => setTimeout(resolve, PEER_SLOW_MS + SLOW_EVICT_AFTER_MS + 200));
    const served = await runMandosClient(client.dir, "::1", server.port);
    assert.equal(served.code, 0, `${served.stderr}\n${server.log().slice(-3_000)}`);
    assert.equal(served.stdout.toString("utf8"), client.password);
    // The line lags mandos-client's exit (written once the kernel has taken the secret).
    await server.waitForLog(/Sending secret to/, 10_000);
    const log = server.log();
    const sent = log.indexOf("Sending secret to");
    const evicted = [...log.matchAll(/timed out in the TLS handshake: its peer kept it waiting over 1 s at the open connections cap/g)];
    assert.ok(sent >= 0, log.slice(-3_000));
    assert.equal(evicted.length, 1, "one made room");
    assert.ok(evicted[0]!.index! < sent, "before the secret");
  }),
);
