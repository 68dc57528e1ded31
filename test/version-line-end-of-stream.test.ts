// How the version line ends, as the reference's text-mode readline() ends
// it, against our server: the end of the stream ends it (a connect and
// close is an empty line, refused and logged as the reference logs it, but
// under the source's line budget), and so does a "\r" with a byte after it.
// test/log-lines-reference.test.ts compares the same lines with the
// reference's.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PEER_LINES_BURST } from "../src/main/daemon/log-serve.js";
import { startServer, type RunningServer } from "./helpers/server.js";

/** Connects, writes `bytes` (with `end`, then closes its side), and resolves with what the server sent once it has closed. */
function talk(port: number, bytes: string, end: boolean): Promise<Buffer> {
  return new Promise((resolve) => {
    const received: Buffer[] = [];
    const socket = connect({ host: "::1", port }, () => (end ? socket.end(bytes) : socket.write(bytes)));
    socket.on("data", (chunk: Buffer) => received.push(chunk));
    socket.on("close", () => resolve(Buffer.concat(received)));
    socket.on("error", () => undefined);
  });
}

async function withServer(run: (server: RunningServer) => Promise<void>): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-line-end-"));
  try {
    writeFileSync(join(root, "clients.conf"), "[DEFAULT]\n", { mode: 0o600 });
    const server = await startServer(["--configdir", root, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::1"]);
    try {
      await run(server);
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const count = (text: string, pattern: RegExp): number => text.match(pattern)?.length ?? 0;

test("a connect and close is an empty version line, logged as the reference logs it, within the source's budget", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    const connections = PEER_LINES_BURST;
    for (let i = 0; i < connections; i++) await talk(server.port, "", true);
    await server.waitForLog(/ERROR: Unknown protocol version: list index out of range/);
    assert.match(server.log(), /DEBUG: Protocol version: ''$/m);
    await server.stop();
    const log = server.log();
    // Three lines a connection (connection, line, refusal): the budget holds most back, and says so.
    const refusals = count(log, /ERROR: Unknown protocol version: list index out of range$/gm);
    assert.ok(refusals > 0 && refusals < connections, `${refusals} refusals logged of ${connections}`);
    assert.match(log, /WARNING: Suppressed \d+ log lines caused by ::\/64 in the last \d+ s$/m);
  });
});

test("a good line ended by the end of the stream goes on to the handshake, which the peer has left", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    await talk(server.port, "1", true);
    await server.waitForLog(/WARNING: Handshake failed: The TLS connection was non-properly terminated\./);
    assert.match(server.log(), /DEBUG: Protocol version: '1'$/m);
  });
});

test("a \\r ends the line once a byte follows it: the handshake starts without a \\n", { timeout: 60_000 }, async () => {
  await withServer(async (server) => {
    // "hello" is then the peer's first TLS bytes: our ClientHello goes out, then the handshake fails on them.
    const received = await talk(server.port, "1\rhello", false);
    assert.equal(received[0], 0x16, "a TLS handshake record (our ClientHello) came back");
    await server.waitForLog(/WARNING: Handshake failed: An unexpected TLS packet was received\./);
    assert.match(server.log(), /DEBUG: Protocol version: '1\\n'$/m);
  });
});
