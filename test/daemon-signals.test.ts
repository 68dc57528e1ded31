// Signals on the real bin/mandos: SIGHUP reloads clients.conf without a
// restart (added clients served, removed ones unknown), SIGTERM exits 0
// after saving the state file, and a restart restores it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeFleetDir } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { runMandosClient, startServer } from "./helpers/server.js";

test("SIGHUP reloads clients.conf; SIGTERM saves state and exits 0; a restart restores it", { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN) }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-signals-"));
  try {
    const { clients: [a, b], conf, state } = makeFleetDir(root, 2);
    writeFileSync(join(conf, "clients.conf"), `${a!.section}\n`);
    const args = ["--configdir", conf, "--statedir", state, "--port", "0"];
    const server = await startServer(args);
    let r = await runMandosClient(a!.dir, "::1", server.port);
    assert.equal(r.stdout.toString(), a!.password);

    // b replaces a; b's host is edited too.
    writeFileSync(join(conf, "clients.conf"), `${b!.section}\n`);
    server.process.kill("SIGHUP");
    await server.waitForLog(new RegExp(`Reloaded clients.conf: 1 added \\(${b!.name}\\), 1 removed \\(${a!.name}\\), 0 changed$`, "m"));
    r = await runMandosClient(b!.dir, "::1", server.port);
    assert.equal(r.stdout.toString(), b!.password);
    r = await runMandosClient(a!.dir, "::1", server.port, 4_000);
    assert.equal(r.stdout.length, 0);
    await server.waitForLog(new RegExp(`Client not found for key ID: ${a!.keyId}`));

    assert.equal(await server.stop(), 0);
    const saved = JSON.parse(readFileSync(join(state, "clients.json"), "utf8")) as { clients: Record<string, { runtime: { enabled: boolean } }> };
    assert.deepEqual(Object.keys(saved.clients), [b!.name]);
    assert.equal(saved.clients[b!.name]!.runtime.enabled, true);

    const again = await startServer(args);
    try {
      r = await runMandosClient(b!.dir, "::1", again.port);
      assert.equal(r.stdout.toString(), b!.password);
      assert.doesNotMatch(again.log(), /Could not load persistent state/);
    } finally {
      await again.stop();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

// Found beside the reference: SIGUSR1 opened Node's inspector on
// 127.0.0.1:9229, where any local user could run code in the server (as
// _mandos, with every client's secret in reach). If it ever opens again,
// it does so on a port of the OS's choosing here, never 9229 of this host.
test("SIGUSR1 opens no debugger; the server serves on", { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN) }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-sigusr1-"));
  try {
    const { clients: [a], conf, state } = makeFleetDir(root, 1);
    writeFileSync(join(conf, "clients.conf"), `${a!.section}\n`);
    const server = await startServer(["--configdir", conf, "--statedir", state, "--port", "0"], {}, { nodeFlags: ["--inspect-port=0"] });
    try {
      server.process.kill("SIGUSR1");
      // Node says so on standard error within milliseconds when it opens.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.doesNotMatch(server.log(), /Debugger listening/);
      assert.equal(server.process.exitCode, null, "SIGUSR1 ended the server");
      const r = await runMandosClient(a!.dir, "::1", server.port);
      assert.equal(r.stdout.toString(), a!.password);
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
