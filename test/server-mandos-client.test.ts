// Black-box tests of bin/mandos against the real mandos-client (Debian
// package), over real sockets on loopback, with inline handshakes
// (--workers 0), with a worker pool (--workers 2), and with the connections
// on serve threads (--serve-threads 2).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeClients, makeKeySet, type TestClient } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { BIN_TS_CLIENT, run, runMandosClient, startServer, type RunningServer } from "./helpers/server.js";
import { parseClientsConfig } from "../src/main/config/index.js";

const skip = missing(MANDOS_CLIENT, MANDOS_KEYGEN);
const FLEET = 50;

for (const mode of [["--workers", "0"], ["--workers", "2"], ["--serve-threads", "2"]]) {
  describe(`bin/mandos with ${mode.join(" ")} serves the real mandos-client`, { skip }, () => {
    let root = "";
    let clients: TestClient[] = [];
    let server: RunningServer;

    before(async () => {
      root = mkdtempSync(join(tmpdir(), "mandos-ts-server-"));
      const pgp = join(root, "pgp");
      makeKeySet(pgp);
      clients = makeClients(root, pgp, FLEET + 1);
      const conf = join(root, "conf");
      mkdirSync(conf);
      writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
      // One more client, configured but disabled.
      const sections = clients.map((c, i) => (i === FLEET ? `${c.section}\nenabled = False\n` : c.section));
      writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n\n${sections.join("\n")}\n`, { mode: 0o600 });
      server = await startServer([
        "--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0",
        "--address", "::", ...mode,
      ]);
    });

    after(async () => {
      await server?.stop();
      if (root) rmSync(root, { recursive: true, force: true });
    });

    test("one client over ::1 gets its exact password", async () => {
      const c = clients[0]!;
      const result = await runMandosClient(c.dir, "::1", server.port);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.toString("utf8"), c.password);
      await server.waitForLog(/Sending secret to client0\b/);
    });

    test("over 127.0.0.1, through the IPv4-mapped path", async () => {
      const c = clients[1]!;
      const result = await runMandosClient(c.dir, "127.0.0.1", server.port);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.toString("utf8"), c.password);
      await server.waitForLog(/TCP connection from: \('::ffff:127\.0\.0\.1'/);
    });

    test(`${FLEET} clients at once each get their own password`, async () => {
      const enabled = clients.slice(0, FLEET);
      const results = await Promise.all(enabled.map((c) => runMandosClient(c.dir, "::1", server.port, 120_000)));
      results.forEach((r, i) => {
        assert.equal(r.code, 0, `${enabled[i]!.name}: ${r.stderr}`);
        assert.equal(r.stdout.toString("utf8"), enabled[i]!.password, enabled[i]!.name);
      });
    });

    test("bin/mandos-ts-client prints the raw secret, byte for byte", async () => {
      const c = clients[2]!;
      const [settings] = parseClientsConfig(c.section, "section");
      const result = await run(process.execPath, [BIN_TS_CLIENT, `--connect=[::1]:${server.port}`, `--tls-privkey=${c.dir}/tls-privkey.pem`, `--tls-pubkey=${c.dir}/tls-pubkey.pem`]);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.stdout, settings!.secret);
    });

    test("a disabled client gets nothing, and is logged", async () => {
      const c = clients[FLEET]!;
      // mandos-client retries for ever when refused; give it one try's time.
      const result = await runMandosClient(c.dir, "::1", server.port, 4_000);
      assert.equal(result.stdout.length, 0);
      await server.waitForLog(new RegExp(`Client ${c.name} is disabled`));
    });
  });
}
