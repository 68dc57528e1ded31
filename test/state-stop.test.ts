// A stop (SIGTERM) of a server with a few thousand clients: what it leaves
// and how it leaves (src/main/main.ts's stop; docs/STATE.md, "Going back
// to the Python server"). The last clients.json holds every client, the
// clients.pickle for the Python server every client with its secret sealed
// so that it opens, and the process exits 0, as the reference saves its
// state at exit. The pickle's key derivations, ~4 s of a stop of 20,000
// clients, are done ahead, after the start: the stop says that it derived
// none itself.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeMachines, writeConfig } from "../bench/reboot.js";
import { openReferenceSecret } from "../src/main/state/reference-secret.js";
import { unpickle, type PyDict, type PyTuple } from "../src/main/state/unpickle.js";
import { startServer } from "./helpers/server.js";

const COUNT = 2_000;

test("a stop of a few thousand clients leaves them all in clients.json and clients.pickle, derives no pickle key itself, and exits 0", { timeout: 300_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-stop-"));
  try {
    const conf = join(root, "conf");
    const state = join(root, "state");
    mkdirSync(state);
    const machines = makeMachines(COUNT);
    writeConfig(conf, machines);
    const server = await startServer(["--configdir", conf, "--statedir", state, "--port", "0", "--address", "::1"]);
    try {
      await server.waitForLog(new RegExp(`DEBUG: Derived ahead the keys that seal the secrets of ${COUNT} clients for the Python server`), 120_000);
    } finally {
      assert.equal(await server.stop(), 0, server.log().slice(-2_000));
    }
    assert.match(server.log(), new RegExp(`DEBUG: Sealed ${COUNT} secrets for the Python server, 0 of them with a key derived as the server stops`));
    const stopping = server.log().slice(server.log().indexOf("DEBUG: Server exiting"));
    assert.deepEqual(stopping.split("\n").filter((l) => /: (WARNING|ERROR|CRITICAL): /.test(l)), [], "nothing went wrong as it stopped");

    const saved = JSON.parse(readFileSync(join(state, "clients.json"), "utf8")) as { clients: Record<string, { config: { keyId: string } }> };
    const names = machines.map((_, i) => `machine${i}`);
    assert.deepEqual(Object.keys(saved.clients).sort(), [...names].sort());
    machines.forEach((m, i) => assert.equal(saved.clients[`machine${i}`]!.config.keyId, m.keyId));

    const [clients, settings] = (unpickle(readFileSync(join(state, "clients.pickle"))) as PyTuple).items as [PyDict, PyDict];
    assert.equal(clients.size, COUNT);
    assert.equal(settings.size, COUNT);
    // Each sealed under its own key: no two share the S2K salt (bytes 4-11 of the first packet's body).
    const salts = new Set([...clients.values()].map((c) => ((c as PyDict).get("encrypted_secret") as Buffer).subarray(6, 14).toString("hex")));
    assert.equal(salts.size, COUNT);
    // A sample opens to its secret under its clients.conf secret, as the Python server opens it.
    for (let i = 0; i < COUNT; i += 97) {
      const secret = Buffer.from(machines[i]!.secretBase64, "base64");
      const sealed = (clients.get(`machine${i}`) as PyDict).get("encrypted_secret") as Buffer;
      assert.deepEqual(await openReferenceSecret(sealed, secret), secret, `machine${i}`);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
