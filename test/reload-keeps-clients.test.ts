// Regression test for the SIGHUP that removed every client: with Debian's
// root:root 0600 clients.conf and the server dropped to another user, a
// reload during a reboot wave read nothing, took that for "no clients" and
// refused every machine from then on. Now a reload applies a file only when
// it was read and parsed whole; a file that really lists no client (and only
// that) removes them all.

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/index.js";
import { fetchSecret } from "../src/client/fetch.js";
import { machine, machineSection, type Machine } from "./helpers/keys.js";
import { hangUp, startServer, type RunningServer } from "./helpers/server.js";

const SETTINGS = parsePriority(DEFAULT_PRIORITY);
const MACHINES = 12;
const AT_ONCE = 6;

interface WaveResult {
  readonly served: number;
  readonly failed: string[];
}

/**
 * A reboot wave: AT_ONCE simulated machines at a time, each asking again as
 * soon as it is served, until `during` settles; then each runs out its ask.
 */
async function wave(port: number, machines: readonly Machine[], during: Promise<unknown>): Promise<WaveResult> {
  let done = false;
  let served = 0;
  const failed: string[] = [];
  void during.finally(() => (done = true));
  let next = 0;
  const lane = async (): Promise<void> => {
    // At least one full round per lane, however quick `during` is.
    for (let round = 0; round < machines.length / AT_ONCE || !done; round++) {
      const m = machines[next++ % machines.length]!;
      try {
        const got = await fetchSecret({ host: "::1", port, identity: m.identity, settings: SETTINGS, timeoutMs: 10_000 });
        if (got.equals(m.secret)) served++;
        else failed.push(`${m.name}: wrong secret`);
      } catch (error) {
        failed.push(`${m.name}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  };
  await Promise.all([during, ...Array.from({ length: AT_ONCE }, lane)]);
  return { served, failed };
}

const asRoot = process.getuid?.() === 0;

/**
 * The scenario, on a server started with `threading`: inline, or serve
 * threads, whose client tables each reload has to reach.
 */
async function reloadDuringWaves(t: TestContext, threading: readonly string[]): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-reload-"));
  // The server stopped first: its last save makes a state directory removed under it again.
  let started: RunningServer | undefined;
  t.after(async () => {
    await started?.stop();
    rmSync(root, { recursive: true, force: true });
  });
  const conf = join(root, "conf");
  const state = join(root, "state");
  mkdirSync(conf);
  mkdirSync(state);
  const clientsConf = join(conf, "clients.conf");
  const machines = Array.from({ length: MACHINES }, (_, i) => machine(`machine${i}`));
  const file = machines.map((m) => machineSection(m, "checker =\n")).join("\n");
  // As Debian installs it: it holds the secrets. Run as root, the server
  // drops to _mandos (or nobody), which cannot read this file.
  writeFileSync(clientsConf, file, { mode: 0o600 });
  chmodSync(clientsConf, 0o600);

  const server = (started = await startServer(["--configdir", conf, "--statedir", state, "--port", "0", ...threading], {}, { keepClientsConfPrivate: true }));
  if (asRoot) {
    // The premise: the server really runs as a user that cannot open the file.
    await server.waitForLog(/Did setuid\/setgid to (?!0:)\d+:\d+/);
  }

  const phase = async (name: string, outcome: RegExp, prepare?: () => void): Promise<void> => {
    prepare?.();
    const result = await wave(server.port, machines, hangUp(server, outcome));
    assert.deepEqual(result.failed, [], `${name}: every machine is served`);
    assert.ok(result.served >= MACHINES, `${name}: the wave ran (${result.served} served)`);
  };

  // An unchanged file: nothing to do, nobody lost.
  await phase("unchanged, root-only", /Reloaded clients\.conf: 0 added, 0 removed, 0 changed/);

  // Missing: the running configuration stays, with the path and the reason in words.
  await phase("missing", /Not reloading clients\.conf: \S*clients\.conf: No such file or directory; keeping the running configuration \(12 clients\)/, () =>
    renameSync(clientsConf, `${clientsConf}.away`));
  renameSync(`${clientsConf}.away`, clientsConf);

  // Unreadable: a directory where the file was fails for root too.
  renameSync(clientsConf, `${clientsConf}.away`);
  mkdirSync(clientsConf);
  await phase("a directory", /Not reloading clients\.conf: \S*clients\.conf: Is a directory; keeping/);
  rmSync(clientsConf, { recursive: true });
  renameSync(`${clientsConf}.away`, clientsConf);

  // Made unreadable after start: as root the reader kept as root still
  // reads it and nothing changes; as a plain user the reload is refused.
  chmodSync(clientsConf, 0o000);
  await phase(
    "mode 000",
    asRoot ? /Reloaded clients\.conf: 0 added, 0 removed, 0 changed/ : /Not reloading clients\.conf: \S*clients\.conf: Permission denied; keeping/,
  );
  chmodSync(clientsConf, 0o600);

  // A syntax error: refused with the file and line, and no secret in the message.
  writeFileSync(clientsConf, `${file}\n[broken\nkey_id = 00\n`);
  await phase("syntax error", /Not reloading clients\.conf: \S*clients\.conf:\d+.*; keeping the running configuration \(12 clients\)/);
  assert.ok(!machines.some((m) => server.log().includes(m.secret.toString("base64").slice(0, 16))), "no secret in the log");

  // The file restored: still all there, still served.
  writeFileSync(clientsConf, file);
  await phase("restored", /Reloaded clients\.conf: 0 added, 0 removed, 0 changed/);

  // A file that really lists no client removes them all, as asked.
  writeFileSync(clientsConf, "# every machine retired\n[DEFAULT]\ntimeout = PT5M\n");
  await hangUp(server, /Reloaded clients\.conf: 0 added, 12 removed \(machine\d+(, machine\d+)* and 2 more\), 0 changed/);
  assert.match(server.log(), /clients\.conf lists no clients: removing all 12/);
  const m = machines[0]!;
  await assert.rejects(fetchSecret({ host: "::1", port: server.port, identity: m.identity, settings: SETTINGS, timeoutMs: 10_000 }),
    // Its key ID is no client's now: refused before its signature is checked (access_denied).
    { code: "MANDOS_CLIENT_TLS", message: /alert 49/ });
  await server.waitForLog(/Client not found for key ID/);
}

const TITLE = "SIGHUP during a reboot wave keeps every client unless the file was read, parsed, and lists none";

test(TITLE, { timeout: 180_000 }, (t) => reloadDuringWaves(t, ["--workers", "0"]));

test(`${TITLE}: on serve threads`, { timeout: 180_000 }, (t) => reloadDuringWaves(t, ["--serve-threads", "2"]));
