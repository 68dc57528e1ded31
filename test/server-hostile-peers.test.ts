// Broken and hostile peers against bin/mandos: each is closed and logged,
// none receives a byte of any secret, and a real mandos-client served right
// after still gets its password. Peers that wait out a deadline (silent,
// stalled mid-handshake) are in serve-deadlines.test.ts, on a manual clock.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeClients, makeKeySet, type TestClient } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { runMandosClient, startServer, type RunningServer } from "./helpers/server.js";

const skip = missing(MANDOS_CLIENT, MANDOS_KEYGEN);

interface RawResult {
  readonly received: Buffer;
  /** How the server ended it: "end" (FIN), "reset", or "open" if it did not within the wait. */
  readonly ending: "end" | "reset" | "open";
}

/** Connects, writes `payload` (in pieces if given an array), and collects what comes back until the server closes. */
function rawPeer(port: number, payload: Buffer | string | Array<Buffer | string>, waitMs: number): Promise<RawResult> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: "::1", port });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (ending: RawResult["ending"]): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ received: Buffer.concat(chunks), ending });
    };
    const timer = setTimeout(() => finish("open"), waitMs);
    socket.on("connect", () => {
      for (const piece of Array.isArray(payload) ? payload : [payload]) socket.write(piece);
    });
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("end", () => finish("end"));
    socket.on("error", () => finish("reset"));
    socket.on("close", () => finish("end"));
  });
}

for (const mode of [["--workers", "0"], ["--workers", "2"], ["--serve-threads", "2"]]) {
  describe(`hostile peers against ${mode.join(" ")}`, { skip }, () => {
    let root = "";
    let known: TestClient[] = [];
    let stranger: TestClient;
    let server: RunningServer;

    before(async () => {
      root = mkdtempSync(join(tmpdir(), "mandos-ts-hostile-"));
      const pgp = join(root, "pgp");
      makeKeySet(pgp);
      known = makeClients(root, pgp, 3, "known");
      [stranger] = makeClients(root, pgp, 1, "stranger") as [TestClient];
      const conf = join(root, "conf");
      mkdirSync(conf);
      writeFileSync(join(conf, "clients.conf"), known.map((c) => c.section).join("\n"), { mode: 0o600 });
      server = await startServer([
        "--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", ...mode,
      ]);
    });

    after(async () => {
      await server?.stop();
      if (root) rmSync(root, { recursive: true, force: true });
    });

    async function realClientStillServed(i: number): Promise<void> {
      const c = known[i]!;
      const result = await runMandosClient(c.dir, "::1", server.port);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.toString("utf8"), c.password);
    }

    test("an unknown key gets nothing and is logged with its key ID", async () => {
      const result = await runMandosClient(stranger.dir, "::1", server.port, 4_000);
      assert.equal(result.stdout.length, 0);
      await server.waitForLog(new RegExp(`Client not found for key ID: ${stranger.keyId}`));
      await realClientStillServed(0);
    });

    // Found beside the reference: a connect-then-RST reached us with no
    // address left to read, and was logged as ('', 0), every such peer in
    // one per-source bucket.
    test("peers that reset as they connect are dropped unlogged; the others still served", async () => {
      for (let i = 0; i < 40; i++) {
        await new Promise<void>((resolve) => {
          const socket = connect({ host: "::1", port: server.port }, () => {
            socket.resetAndDestroy();
            resolve();
          });
          socket.on("error", () => resolve());
        });
      }
      await realClientStillServed(0);
      assert.doesNotMatch(server.log(), /\(''/);
    });

    test("protocol version 2 is refused before any TLS", async () => {
      const r = await rawPeer(server.port, "2\r\n", 10_000);
      assert.notEqual(r.ending, "open");
      assert.equal(r.received.length, 0);
      await server.waitForLog(/Unknown protocol version: 2$/m);
      await realClientStillServed(1);
    });

    test("garbage instead of the version line is refused", async () => {
      const r = await rawPeer(server.port, "GET / HTTP/1.0\r\n\r\n", 10_000);
      assert.notEqual(r.ending, "open");
      assert.equal(r.received.length, 0);
      await server.waitForLog(/Unknown protocol version: invalid literal/);
    });

    test("a 1 MiB line is cut off early", async () => {
      const r = await rawPeer(server.port, [Buffer.alloc(64 * 1024, 0x31), Buffer.alloc(1024 * 1024 - 64 * 1024, 0x31)], 10_000);
      assert.notEqual(r.ending, "open");
      assert.equal(r.received.length, 0);
      await server.waitForLog(/longer than 64 bytes/);
      await realClientStillServed(2);
    });
  });
}
