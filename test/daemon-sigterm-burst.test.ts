// SIGTERM in the middle of a burst of real mandos-client connections: the
// server stops accepting, every client already past the handshake still
// gets its password, the exit is 0 and the state file is valid.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeFleetDir } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { runMandosClient, startServer } from "./helpers/server.js";

test("SIGTERM during a burst loses no client already past the handshake", { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN) }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-burst-"));
  try {
    const { clients, conf, state } = makeFleetDir(root, 24);
    writeFileSync(join(conf, "clients.conf"), clients.map((c) => c.section).join("\n"));
    const server = await startServer(["--configdir", conf, "--statedir", state, "--port", "0", "--workers", "0"]);
    const results = clients.map((c) => runMandosClient(c.dir, "::1", server.port, 15_000));
    await server.waitForLog(/Handshake succeeded/);
    const code = await server.stop();
    const done = await Promise.all(results);
    assert.equal(code, 0);
    const log = server.log();
    let pastHandshake = 0;
    clients.forEach((c, i) => {
      if (log.includes(`DEBUG: Key ID: ${c.keyId}`)) {
        pastHandshake++;
        assert.equal(done[i]!.stdout.toString(), c.password, `${c.name} was past the handshake but got no password`);
      }
    });
    assert.ok(pastHandshake >= 1);
    const saved = JSON.parse(readFileSync(join(state, "clients.json"), "utf8")) as { format: string; clients: Record<string, unknown> };
    assert.equal(saved.format, "mandos-ts-state");
    assert.equal(Object.keys(saved.clients).length, clients.length);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
