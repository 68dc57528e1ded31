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
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeMachines, serverNodeFlags, writeConfig } from "../bench/reboot.js";
import { openReferenceSecret } from "../src/main/state/reference-secret.js";
import { unpickle, type PyDict, type PyTuple } from "../src/main/state/unpickle.js";
import { BIN_MANDOS, run, startServer } from "./helpers/server.js";

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

const ownMounts = process.getuid?.() !== 0 ? "needs root (a mount namespace, a small tmpfs in it)" : !existsSync("/usr/bin/unshare") ? "needs unshare" : false;

/**
 * The server of `conf`, its state directory a tmpfs of `size` in a mount
 * namespace of its own, stopped (SIGTERM) once its log says `ready`; what
 * it leaves there (`ls -A`, clients.json) and its log and exit code are
 * copied out to `out`.
 */
async function stopOnSmallDisk(conf: string, size: string, ready: string, out: string): Promise<{ log: string; code: number; left: string[] }> {
  const disk = join(out, "disk");
  mkdirSync(disk);
  const script = [
    `mount -t tmpfs -o size=${size},mode=0777 tmpfs "$D"`,
    `{ "$@" >"$O/log" 2>&1 & pid=$!; i=0; while [ $i -lt 600 ] && ! grep -q "$READY" "$O/log"; do sleep 0.2; i=$((i+1)); done; kill -TERM $pid; wait $pid; echo $? >"$O/rc"; }`,
    `ls -A "$D" >"$O/ls"`,
    `{ [ ! -e "$D/clients.json" ] || cp "$D/clients.json" "$O/"; }`,
  ].join(" && ");
  const r = await run("unshare", ["--mount", "--propagation", "private", "sh", "-c", script, "sh",
    process.execPath, ...serverNodeFlags(), BIN_MANDOS, "--debug", "--no-zeroconf", "--no-dbus", "--configdir", conf, "--statedir", disk, "--port", "0", "--address", "::1"],
  240_000, { D: disk, O: out, READY: ready });
  const log = existsSync(join(out, "log")) ? readFileSync(join(out, "log"), "utf8") : "";
  assert.equal(r.code, 0, `${r.stderr}\n${log.slice(-3000)}`);
  return { log, code: Number(readFileSync(join(out, "rc"), "utf8")), left: readFileSync(join(out, "ls"), "utf8").split("\n").filter(Boolean) };
}

test("a full disk as the server stops: the pickle's pieces leave no temporary, clients.json is whole; a save that fails names the file", { skip: ownMounts, timeout: 600_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-stop-full-"));
  try {
    // Opened to the user the server becomes.
    chmodSync(root, 0o755);
    const conf = join(root, "conf");
    writeConfig(conf, makeMachines(300));
    chmodSync(conf, 0o755);
    chmodSync(join(conf, "clients.conf"), 0o644);
    chmodSync(join(conf, "mandos.conf"), 0o644);

    // Room for clients.json (~250 KB, twice as a save replaces it), not for the pickle (~1.2 MB).
    const first = join(root, "pickle-too-big");
    mkdirSync(first);
    const pickleFull = await stopOnSmallDisk(conf, "1m", "Derived ahead the keys that seal the secrets of 300 clients", first);
    assert.equal(pickleFull.code, 0, pickleFull.log.slice(-3000));
    assert.ok(pickleFull.log.includes(`WARNING: Could not write ${join(first, "disk", "clients.pickle")} for the Python server: No space left on device; it would not find the state this server leaves`), pickleFull.log.slice(-3000));
    assert.deepEqual(pickleFull.left, ["clients.json"], "no temporary left, no pickle cut short");
    const saved = JSON.parse(readFileSync(join(first, "clients.json"), "utf8")) as { clients: Record<string, unknown> };
    assert.equal(Object.keys(saved.clients).length, 300);

    // Room for neither: every line that says so names the file.
    const second = join(root, "nothing-fits");
    mkdirSync(second);
    const stateFull = await stopOnSmallDisk(conf, "64k", "Could not save persistent state", second);
    const statePath = join(second, "disk", "clients.json");
    assert.equal(stateFull.code, 1, stateFull.log.slice(-3000));
    assert.ok(stateFull.log.includes(`WARNING: Could not save persistent state: No space left on device (${statePath})`), stateFull.log.slice(-3000));
    assert.ok(stateFull.log.includes(`ERROR: Could not save persistent state as the server stops: No space left on device (${statePath}); the changes since the last save are lost`), stateFull.log.slice(-3000));
    assert.deepEqual(stateFull.left, [], "no temporary left");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
