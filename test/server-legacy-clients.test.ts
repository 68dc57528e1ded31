// Black-box tests of bin/mandos serving legacy Mandos clients (TLS 1.2,
// OpenPGP certificate, looked up by fingerprint) and modern ones (TLS 1.3,
// raw public key, looked up by key ID) on one port, from one clients.conf
// section carrying both `fingerprint` and `key_id` (project test data,
// test/data/legacy/: the recorded legacy client's keys and section). The
// legacy side is our TLS 1.2 test client (src/client/fetch.ts with an
// OpenPGP identity); the modern side is Debian's real mandos-client. Where
// a real GnuTLS 3.5 legacy mandos-client is present (MANDOS_LEGACY_PEER_DIR
// names its folder, with bin/mandos-client), it is run too.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as openpgp from "openpgp";
import { REFERENCE_OPENPGP_PRIORITY, REFERENCE_RPK_PRIORITY } from "../src/tls/index.js";
import { freshIdentity, recordedIdentity, type TestOpenPgpIdentity } from "./helpers/legacy-keys.js";
import { legacyFaults, legacyFetch, loggedWarnings } from "./helpers/legacy-faults.js";
import { LEGACY_DATA } from "./helpers/legacy-session.js";
import { MANDOS_CLIENT, MANDOS_CTL, MANDOS_KEYGEN, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { logCount, run, runMandosClient, startServer, type ProcessResult, type RunningServer } from "./helpers/server.js";
import { DBUS_DAEMON, mandosCtl, openToServerUser, referenceGpgEnvironment, startOurServer, startPrivateBus } from "./helpers/dbus.js";
import { eventually, freePort } from "./helpers/wait.js";

const PASSWORD = readFileSync(`${LEGACY_DATA}password.txt`, "latin1");
const FINGERPRINT = "9A2BE96516F47F33630C4AF4C28E2CE128594F14";
const skipModern = missing(MANDOS_CLIENT);
const LEGACY_PEER = process.env.MANDOS_LEGACY_PEER_DIR ?? "";
const legacyBinary = LEGACY_PEER ? join(LEGACY_PEER, "bin", "mandos-client") : "";
const skipRealLegacy = !LEGACY_PEER
  ? "MANDOS_LEGACY_PEER_DIR is not set (a folder with a GnuTLS 3.5 bin/mandos-client)"
  : existsSync(legacyBinary) ? false : `${legacyBinary} is absent`;

/** The secret bytes, decrypted as mandos-client would (GPGME there, OpenPGP.js here). */
async function decrypt(secret: Buffer): Promise<string> {
  const key = await openpgp.readPrivateKey({ armoredKey: readFileSync(`${LEGACY_DATA}seckey.txt`, "latin1") });
  const message = await openpgp.readMessage({ binaryMessage: secret });
  const { data } = await openpgp.decrypt({ message, decryptionKeys: key, format: "binary" });
  return Buffer.from(data as Uint8Array).toString("latin1");
}

/** The recorded client's keys (OpenPGP and raw public key) in `root`/keys, as mandos-client wants them; the folder's path. */
function copyKeys(root: string): string {
  const keys = join(root, "keys");
  mkdirSync(keys);
  for (const f of ["pubkey.txt", "seckey.txt", "tls-privkey.pem", "tls-pubkey.pem"]) copyFileSync(`${LEGACY_DATA}${f}`, join(keys, f));
  chmodSync(join(keys, "seckey.txt"), 0o600);
  chmodSync(join(keys, "tls-privkey.pem"), 0o600);
  return keys;
}

async function withServer(
  root: string,
  priority: string | null,
  body: (server: RunningServer) => Promise<void>,
  mode: readonly string[] = ["--workers", "0"],
  editClients: (text: string) => string = (text) => text,
): Promise<void> {
  const conf = join(root, `conf-${Math.random().toString(36).slice(2)}`);
  mkdirSync(conf);
  writeFileSync(join(conf, "mandos.conf"), priority === null ? "[DEFAULT]\n" : `[DEFAULT]\npriority = ${priority}\n`);
  writeFileSync(join(conf, "clients.conf"), editClients(readFileSync(`${LEGACY_DATA}clients.conf`, "latin1")), "latin1");
  chmodSync(join(conf, "clients.conf"), 0o600);
  const server = await startServer(["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::", ...mode]);
  try {
    await body(server);
  } finally {
    await server.stop();
  }
}

describe("bin/mandos serves legacy and modern clients from one clients.conf section", () => {
  let root = "";
  let keys = "";
  let recorded: TestOpenPgpIdentity;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-legacy-"));
    keys = copyKeys(root);
    recorded = await recordedIdentity();
  });
  after(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("with an empty mandos.conf (our default priority): the legacy client by fingerprint, the modern one by key ID, one after the other and 20 of each at once", { timeout: 240_000 }, async () => {
    await withServer(root, null, async (server) => {
      const secret = await legacyFetch(server.port, recorded);
      assert.equal(await decrypt(secret), PASSWORD);
      await server.waitForLog(new RegExp(`Fingerprint: b'${FINGERPRINT}'`));
      await server.waitForLog(/Sending secret to legacy-test/);
      if (!skipModern) {
        const modern = await runMandosClient(keys, "::1", server.port);
        assert.equal(modern.code, 0, modern.stderr);
        assert.equal(modern.stdout.toString("latin1"), PASSWORD);
        await server.waitForLog(/Key ID: A92F8287E8931EE2DC6DB17846E7B7E5443FAE6D1A44C171DB05512797BBABBC/i);
      }
      const legacyWave = Array.from({ length: 20 }, () => legacyFetch(server.port, recorded));
      const modernWave = skipModern ? [] : Array.from({ length: 20 }, () => runMandosClient(keys, "::1", server.port, 180_000));
      const [legacyResults, modernResults] = await Promise.all([Promise.all(legacyWave), Promise.all(modernWave)]);
      for (const s of legacyResults) assert.ok(s.equals(secret), "each legacy client got the section's secret");
      for (const r of modernResults) {
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.toString("latin1"), PASSWORD);
      }
      assert.equal(await logCount(server, /Sending secret to legacy-test/, 1 + 20 + (skipModern ? 0 : 21)), 1 + 20 + (skipModern ? 0 : 21));
    });
  });

  test("on serve threads: a legacy and a modern client, each served by a thread that loads OpenPGP.js itself", { timeout: 120_000 }, async () => {
    await withServer(root, null, async (server) => {
      // Several legacy clients at once, so that both threads are likely to serve one.
      const legacy = await Promise.all(Array.from({ length: 6 }, () => legacyFetch(server.port, recorded)));
      for (const secret of legacy) assert.equal(await decrypt(secret), PASSWORD);
      if (!skipModern) {
        const modern = await runMandosClient(keys, "::1", server.port);
        assert.equal(modern.code, 0, modern.stderr);
        assert.equal(modern.stdout.toString("latin1"), PASSWORD);
      }
      assert.equal(await logCount(server, /Sending secret to legacy-test/, 6 + (skipModern ? 0 : 1)), 6 + (skipModern ? 0 : 1));
    }, ["--serve-threads", "2"]);
  });

  test("on serve threads: a broken legacy flight is logged in the legacy reference's words", { timeout: 120_000 }, async () => {
    // The words depend on the session's generation, which a serve thread's
    // connection event carries to the main thread's log (legacy-faults.ts).
    const faults = (await legacyFaults(recorded.publicKey)).filter((f) => f.warning.endsWith("unexpected length was received.") || f.warning.startsWith("Bad certificate"));
    assert.ok(faults.length >= 6, "faults in both kinds of words");
    await withServer(root, null, async (server) => {
      const warnings = (): string[] => loggedWarnings(server.log());
      for (const [i, fault] of faults.entries()) {
        await assert.rejects(legacyFetch(server.port, { ...recorded, publicKey: fault.key ?? recorded.publicKey }, fault.faults, i % 2 === 0 ? "::1" : "127.0.0.1"), Error, fault.name);
        await eventually(() => warnings().length > i, { what: `a warning for ${fault.name}`, context: () => server.log() });
      }
      assert.deepEqual(warnings(), faults.map((f) => f.warning));
    }, ["--serve-threads", "2"]);
  });

  test("an unknown fingerprint is refused like an unknown key ID, and a bad self-signature fails the handshake", { timeout: 60_000 }, async () => {
    const stranger = await freshIdentity(2048, "stranger");
    await withServer(root, null, async (server) => {
      // Refused before any signature check (the known-key table holds fingerprints too): an access_denied alert.
      await assert.rejects(legacyFetch(server.port, stranger), { code: "MANDOS_CLIENT_TLS" });
      await server.waitForLog(new RegExp(`Fingerprint: b'${stranger.fingerprint}'`));
      await server.waitForLog(new RegExp(`Client not found for key ID: ${stranger.fingerprint}, address: \\('::1'`));
      // The same key with its user ID changed: the self-signature no longer holds.
      const key = Buffer.from(recorded.publicKey);
      const at = key.indexOf(Buffer.from("legacy-test"));
      key[at]! ^= 0x20;
      await assert.rejects(legacyFetch(server.port, { ...recorded, publicKey: key }));
      assert.equal((server.log().match(/Sending secret/g) ?? []).length, 0);
    });
  });

  test("the reference's legacy priority in mandos.conf serves the legacy client only", { timeout: 60_000 }, async () => {
    await withServer(root, REFERENCE_OPENPGP_PRIORITY, async (server) => {
      assert.equal(await decrypt(await legacyFetch(server.port, recorded)), PASSWORD);
      if (!skipModern) {
        const modern = await runMandosClient(keys, "::1", server.port, 8_000);
        assert.notEqual(modern.stdout.toString("latin1"), PASSWORD);
      }
      assert.equal(await logCount(server, /Sending secret/, 1), 1);
    });
  });

  test("the reference's RPK priority in mandos.conf serves the modern client only", { timeout: 60_000 }, async () => {
    await withServer(root, REFERENCE_RPK_PRIORITY, async (server) => {
      await assert.rejects(legacyFetch(server.port, recorded));
      if (!skipModern) {
        const modern = await runMandosClient(keys, "::1", server.port);
        assert.equal(modern.stdout.toString("latin1"), PASSWORD);
      }
      assert.equal(await logCount(server, /Sending secret/, skipModern ? 0 : 1), skipModern ? 0 : 1);
    });
  });

});

describe("the real GnuTLS 3.5 legacy mandos-client (MANDOS_LEGACY_PEER_DIR)", { skip: skipRealLegacy }, () => {
  let root = "";
  let keys = "";
  /** The real client once, as the initial RAM disk runs it; it retries every 10 s until it gets a password or `ms` pass. */
  const realLegacy = (port: number, ms = 60_000): Promise<ProcessResult> =>
    run(legacyBinary, [`--connect=[::1]:${port}`, "--interface=none", `--pubkey=${keys}/pubkey.txt`, `--seckey=${keys}/seckey.txt`], ms);

  before(() => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-legacy-real-"));
    keys = copyKeys(root);
  });
  after(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  for (const [what, mode] of [
    ["inline", ["--workers", "0"]],
    ["with two workers", ["--workers", "2"]],
    ["on two serve threads", ["--serve-threads", "2"]],
  ] as const) {
    test(`gets its password ${what}, alone, then 8 at once beside 8 modern mandos-clients, with an empty mandos.conf (our default priority)`, { timeout: 120_000 }, async () => {
      await withServer(root, null, async (server) => {
        const one = await realLegacy(server.port);
        assert.equal(one.code, 0, one.stderr);
        assert.equal(one.stdout.toString("latin1"), PASSWORD);
        await server.waitForLog(new RegExp(`Fingerprint: b'${FINGERPRINT}'`));
        const modern = skipModern ? 0 : 8;
        const wave = await Promise.all([
          ...Array.from({ length: 8 }, () => realLegacy(server.port, 90_000)),
          ...Array.from({ length: modern }, () => runMandosClient(keys, "::1", server.port, 90_000)),
        ]);
        for (const r of wave) {
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.toString("latin1"), PASSWORD);
        }
        assert.equal(await logCount(server, /Sending secret to legacy-test/, 9 + modern), 9 + modern);
      }, mode);
    });
  }

  test("gets its password under the reference's legacy priority, and nothing under its RPK-only priority", { timeout: 60_000 }, async () => {
    await withServer(root, REFERENCE_OPENPGP_PRIORITY, async (server) => {
      const r = await realLegacy(server.port);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString("latin1"), PASSWORD);
    });
    await withServer(root, REFERENCE_RPK_PRIORITY, async (server) => {
      // Its first try fails the handshake; killed before its second (10 s later).
      const r = await realLegacy(server.port, 5_000);
      assert.equal(r.stdout.length, 0, "no password");
      assert.equal((server.log().match(/Sending secret/g) ?? []).length, 0);
    });
  });

  test("with a DH group of its own (--dh-bits 3072: made at its start, no named one) and a priority that leaves only DHE, gets its password", { timeout: 60_000 }, async () => {
    // Its --dh-params file is read but never given to GnuTLS (mandos-client
    // 1.8.16 sets DH parameters only in its --dh-bits branch): no DHE with it.
    await withServer(root, `${REFERENCE_OPENPGP_PRIORITY}:-ECDHE-RSA`, async (server) => {
      const r = await run(legacyBinary, [`--connect=[::1]:${server.port}`, "--interface=none", `--pubkey=${keys}/pubkey.txt`, `--seckey=${keys}/seckey.txt`, "--dh-bits=3072"], 60_000);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString("latin1"), PASSWORD);
    }, ["--workers", "1"]);
  });

  test("a broken certificate or handshake: bin/mandos logs the warning the reference logs on this GnuTLS 3.5", { skip: missing(MANDOS_REFERENCE), timeout: 120_000 }, async () => {
    // The reference in its legacy mode: its ctypes finds this libgnutls,
    // which has OpenPGP. It drops to _mandos, who must reach its files.
    const conf = join(root, "reference-conf");
    const state = join(root, "reference-state");
    mkdirSync(conf);
    mkdirSync(state);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    copyFileSync(`${LEGACY_DATA}clients.conf`, join(conf, "clients.conf"));
    chmodSync(root, 0o755);
    openToServerUser(conf, state);
    const port = await freePort();
    const args = ["--foreground", "--debug", "--no-dbus", "--no-zeroconf", "--address", "::1", "--port", String(port), "--configdir", conf, "--statedir", state, "--no-restore"];
    // It connects to the system bus even with --no-dbus: a private one, not this machine's.
    const bus = await startPrivateBus();
    const env = { ...process.env, ...referenceGpgEnvironment(root), LD_LIBRARY_PATH: join(LEGACY_PEER, "lib"), DBUS_SYSTEM_BUS_ADDRESS: bus.address };
    const reference = spawn(MANDOS_REFERENCE, args, { stdio: ["ignore", "pipe", "pipe"], detached: true, env });
    let text = "";
    reference.stdout.on("data", (d: Buffer) => (text += d.toString("utf8")));
    reference.stderr.on("data", (d: Buffer) => (text += d.toString("utf8")));
    const recorded = await recordedIdentity();
    const faults = await legacyFaults(recorded.publicKey);
    try {
      await eventually(() => text.includes("Now listening"), { what: "the legacy reference listening", context: () => text });
      await withServer(root, null, async (ours) => {
        for (const [i, fault] of faults.entries()) {
          // Ours listens on every address: half the faults come from 127.0.0.1,
          // so that no source spends more than its burst of log lines.
          for (const [port_, log, host] of [[port, () => text, "::1"], [ours.port, () => ours.log(), i % 2 === 0 ? "::1" : "127.0.0.1"]] as const) {
            await assert.rejects(legacyFetch(port_, { ...recorded, publicKey: fault.key ?? recorded.publicKey }, fault.faults, host), Error, fault.name);
            await eventually(() => loggedWarnings(log()).length > i, { what: `a warning for ${fault.name}`, context: log });
          }
        }
        const expected = faults.map((f) => f.warning);
        assert.deepEqual(loggedWarnings(text), expected, "the reference's, as legacy-faults.ts has them");
        assert.deepEqual(loggedWarnings(ours.log()), expected, "ours");
        assert.equal((ours.log().match(/Sending secret/g) ?? []).length, 0);
      });
    } finally {
      try {
        process.kill(-reference.pid!, "SIGKILL");
      } catch {
        // gone
      }
      await bus.stop();
    }
  });

  // The reference on GnuTLS 3.5 serves it; this server refused it (at
  // 2,048 bits and over only) until an audit ran one (2026-12).
  test("with an RSA-1,024 key of Debian's mandos-keygen --length 1024, gets its password", { skip: missing(MANDOS_KEYGEN), timeout: 120_000 }, async () => {
    const small = join(root, "rsa1024");
    mkdirSync(small);
    const made = await run(MANDOS_KEYGEN, ["--dir", small, "--length", "1024", "--sublength", "1024"], 90_000);
    assert.equal(made.code, 0, made.stderr);
    const password = "one-kilobit-machine";
    writeFileSync(join(root, "rsa1024-pass"), password);
    const section = await run(MANDOS_KEYGEN, ["--dir", small, "--passfile", join(root, "rsa1024-pass"), "--no-ssh", "--name", "small"], 60_000);
    assert.equal(section.code, 0, section.stderr);
    await withServer(root, null, async (server) => {
      const r = await run(legacyBinary, [`--connect=[::1]:${server.port}`, "--interface=none", `--pubkey=${small}/pubkey.txt`, `--seckey=${small}/seckey.txt`], 60_000);
      assert.equal(r.code, 0, `${r.stderr}\n${server.log().slice(-2_000)}`);
      assert.equal(r.stdout.toString("latin1"), password);
      await server.waitForLog(/Sending secret to small/);
    }, ["--workers", "0"], () => section.stdout.toString("utf8"));
  });

  test("gets nothing while its client is disabled, logged as the legacy reference logs it", { timeout: 60_000 }, async () => {
    await withServer(root, null, async (server) => {
      const r = await realLegacy(server.port, 5_000);
      assert.equal(r.stdout.length, 0, "no password");
      // The reference on GnuTLS 3.5 wrote these two lines for the same client (by hand, 2026-12-04).
      await server.waitForLog(new RegExp(`Fingerprint: b'${FINGERPRINT}'`));
      await server.waitForLog(/INFO: Client legacy-test is disabled/);
      assert.equal((server.log().match(/Sending secret/g) ?? []).length, 0);
    }, ["--workers", "0"], (text) => text.replace("host = legacy-test\n", "host = legacy-test\nenabled = False\n"));
  });

  test("waits for approval: mandos-ctl --deny refuses it, --approve gives it its password", { skip: missing(DBUS_DAEMON, MANDOS_CTL), timeout: 120_000 }, async () => {
    const conf = join(root, "approval-conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    const clients = readFileSync(`${LEGACY_DATA}clients.conf`, "latin1").replace("host = legacy-test\n", "host = legacy-test\napproved_by_default = False\napproval_delay = 60s\n");
    writeFileSync(join(conf, "clients.conf"), clients, { encoding: "latin1", mode: 0o600 });
    const bus = await startPrivateBus();
    try {
      const server = await startOurServer(conf, join(root, "approval-state"), bus.address);
      try {
        // Denied while it waits: nothing, and stopped before it tries again 10 s later.
        const denied = realLegacy(server.port, 8_000);
        await server.waitForLog(/INFO: Client legacy-test needs approval/);
        assert.equal((await mandosCtl(bus.address, "--deny", "legacy-test")).code, 0);
        await server.waitForLog(/WARNING: Client legacy-test was not approved/);
        assert.equal((await denied).stdout.length, 0, "no password when denied");
        // Approved while it waits.
        const approved = realLegacy(server.port);
        assert.equal(await logCount(server, /INFO: Client legacy-test needs approval/, 2, 30_000), 2);
        assert.equal((await mandosCtl(bus.address, "--approve", "legacy-test")).code, 0);
        const r = await approved;
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.toString("latin1"), PASSWORD);
        assert.equal(await logCount(server, /Sending secret to legacy-test/, 1), 1);
      } finally {
        await server.stop();
      }
    } finally {
      await bus.stop();
    }
  });

  test("gets nothing when no section holds its fingerprint: refused as unknown, by fingerprint", { timeout: 60_000 }, async () => {
    const other = "0".repeat(40);
    await withServer(root, null, async (server) => {
      const r = await realLegacy(server.port, 5_000);
      assert.equal(r.stdout.length, 0, "no password");
      await server.waitForLog(new RegExp(`Client not found for key ID: ${FINGERPRINT}, address: \\('::1'`));
      assert.equal((server.log().match(/Sending secret/g) ?? []).length, 0);
    }, ["--workers", "0"], (text) => text.replace(FINGERPRINT, other));
  });
});
