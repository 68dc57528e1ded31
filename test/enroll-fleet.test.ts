// Enrolling a fleet with `mandos-keygen --enroll`: 1,000 generated machines
// are added to a running server's clients.conf in one atomic step, the
// server takes them on SIGHUP, and all of them are then served in one wave
// by our simulated machines (src/client/fetch.ts), each getting a secret
// that its own OpenPGP key opens to its own password. Also the dry run,
// and the refusals of a name, key ID or fingerprint already taken.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as openpgp from "openpgp";
import { makeFleetKeyDirs, type FleetMachine } from "./helpers/fleet-keys.js";
import { hangUp, REPO, run, startServer, type RunningServer } from "./helpers/server.js";
import { parseClientsConfig } from "../src/main/config/index.js";
import { fetchSecret, loadIdentity } from "../src/client/fetch.js";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/index.js";

const BIN_KEYGEN = `${REPO}bin/mandos-keygen`;
const FLEET = 1_000;
const AT_ONCE = 100;
const SETTINGS = parsePriority(DEFAULT_PRIORITY);

async function keygen(args: readonly string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  if (stdin === undefined) {
    const r = await run(process.execPath, [BIN_KEYGEN, ...args], 120_000);
    return { code: r.code, stdout: r.stdout.toString("utf8"), stderr: r.stderr };
  }
  const child = spawn(process.execPath, [BIN_KEYGEN, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  child.stdin.end(stdin);
  const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  return { code, stdout, stderr };
}

describe("enrolling a fleet into a running server", { timeout: 600_000 }, () => {
  let root = "";
  let clientsConf = "";
  let machines: FleetMachine[] = [];
  let server: RunningServer;
  const original = "[DEFAULT]\nchecker = true\n";

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-enroll-"));
    const conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    clientsConf = join(conf, "clients.conf");
    writeFileSync(clientsConf, original, { mode: 0o640 });
    machines = await makeFleetKeyDirs(join(root, "fleet"), FLEET);
    server = await startServer(["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::1"]);
  });

  after(async () => {
    await server?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("a dry run lists every machine and changes nothing", async () => {
    const r = await keygen(["--enroll", "--dry-run", "--clients-conf", clientsConf, ...machines.map((m) => m.dir)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.match(/^would add \[m\d{5}\] key_id [0-9a-f]{64} fingerprint [0-9A-F]{40}$/gm)?.length, FLEET);
    assert.match(r.stdout, /Dry run: 1000 clients would be added/);
    assert.equal(readFileSync(clientsConf, "utf8"), original);
    for (const m of machines.slice(0, 20)) assert.ok(!r.stdout.includes(m.password));
  });

  test("enrolling writes all sections at once, keeps the file's mode, and prints no password", async () => {
    // (The test helper opens the file to the server's user: the mode is whatever it is now.)
    const mode = statSync(clientsConf).mode & 0o7777;
    const r = await keygen(["--enroll", "--clients-conf", clientsConf, ...machines.map((m) => m.dir)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1000 clients added to .*clients\.conf; send the server SIGHUP/);
    for (const m of machines) assert.ok(!r.stdout.includes(m.password), m.name);
    assert.equal(statSync(clientsConf).mode & 0o7777, mode);
    const text = readFileSync(clientsConf, "utf8");
    assert.ok(text.startsWith(original));
    assert.equal(parseClientsConfig(text, clientsConf).length, FLEET);
  });

  test("after SIGHUP all 1,000 are served in one wave, each secret opening to its own password", async () => {
    await hangUp(server, /Reloaded clients\.conf: 1000 added \([^)]* and 990 more\), 0 removed, 0 changed/);
    const failed: string[] = [];
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < machines.length) {
        const m = machines[next++]!;
        try {
          const identity = loadIdentity(join(m.dir, "tls-privkey.pem"), join(m.dir, "tls-pubkey.pem"));
          const sealed = await fetchSecret({ host: "::1", port: server.port, identity, settings: SETTINGS, timeoutMs: 30_000 });
          const decryptionKeys = await openpgp.readPrivateKey({ armoredKey: readFileSync(join(m.dir, "seckey.txt"), "utf8") });
          const { data } = await openpgp.decrypt({ message: await openpgp.readMessage({ binaryMessage: sealed }), decryptionKeys, format: "binary" });
          if (Buffer.from(data).toString("utf8") !== m.password) failed.push(`${m.name}: wrong password`);
        } catch (error) {
          failed.push(`${m.name}: ${(error as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: AT_ONCE }, lane));
    assert.deepEqual(failed, []);
  });

  test("a name, key ID or fingerprint already in clients.conf is refused, and the file is left alone", async () => {
    const before = readFileSync(clientsConf);
    const again = await keygen(["--enroll", "--clients-conf", clientsConf, machines[0]!.dir]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /Refusing to enroll: duplicate name:\n {2}\[m00000\]: name m00000 already used by \[m00000\] in clients\.conf/);
    const sameKeys = await keygen(["--enroll", "--clients-conf", clientsConf, "--manifest", "-"], `newname\t${machines[1]!.dir}\tsecret words\n`);
    assert.equal(sameKeys.code, 1);
    assert.match(sameKeys.stderr, /duplicate key ID:\n {2}\[newname\]: key ID [0-9A-F]{64} already used by \[m00001\] in clients\.conf/);
    assert.ok(!sameKeys.stderr.includes("secret words"));
    assert.deepEqual(readFileSync(clientsConf), before);
  });

  test("a manifest on standard input enrolls, and twice the same machine in one batch is refused", async () => {
    const [extra] = await makeFleetKeyDirs(join(root, "extra"), 1, "extra");
    const twice = await keygen(["--enroll", "--clients-conf", clientsConf, "--manifest", "-"], `a\t${extra!.dir}\tpw a\nb\t${extra!.dir}\tpw b\n`);
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /\[b\]: key ID [0-9A-F]{64} already used by \[a\] being enrolled/);
    const ok = await keygen(["--enroll", "--clients-conf", clientsConf, "--manifest", "-"], `# one more\n\nlate-machine\t${extra!.dir}\tpw late\n`);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^added \[late-machine\]/m);
    assert.equal(parseClientsConfig(readFileSync(clientsConf, "utf8"), clientsConf).length, FLEET + 1);
  });
});
