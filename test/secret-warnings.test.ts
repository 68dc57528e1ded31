// A secret mandos-client cannot decrypt is served, as the reference serves
// it, and warned of: in clients.conf at start-up, at a reload and by
// --check; set over D-Bus (the real mandos-ctl --secret) when it is set.
// One that mandos-client decrypts, binary or armoured, is not: the real
// mandos-client gets its password from an armoured secfile.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DBUS_DAEMON, mandosCtl, startOurServer, startPrivateBus, type PrivateBus } from "./helpers/dbus.js";
import { makeClients, makeKeySet, type TestClient } from "./helpers/keys.js";
import { GPG, MANDOS_CLIENT, MANDOS_CTL, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { BIN_MANDOS, hangUp, logCount, runMandosClient, startServer, type RunningServer } from "./helpers/server.js";

const skip = missing(MANDOS_CLIENT, MANDOS_KEYGEN, GPG);

const NOT_OPENPGP = "is not an OpenPGP message (a passphrase as it is? mandos-keygen --password encrypts one): mandos-client cannot decrypt it and asks again, for ever";
const inFile = (name: string): string => `WARNING: Client ${name}'s secret in clients.conf ${NOT_OPENPGP}; the machine never unlocks unless a secret set over D-Bus (mandos-ctl --secret) is in effect`;
const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** `client`'s password encrypted to its OpenPGP key, armoured, as `gpg --armor --encrypt` makes it. */
function armoured(client: TestClient, scratch: string): Buffer {
  const home = mkdtempSync(join(scratch, "gnupg-"));
  try {
    execFileSync(GPG, ["--homedir", home, "--batch", "--quiet", "--import", join(client.dir, "pubkey.txt")], { stdio: "ignore" });
    const fingerprint = /fingerprint\s*=\s*([0-9A-F]+)/.exec(client.section)![1]!;
    return execFileSync(GPG, ["--homedir", home, "--batch", "--quiet", "--trust-model", "always", "--armor", "--encrypt", "--recipient", fingerprint], { input: client.password });
  } finally {
    execFileSync("gpgconf", ["--homedir", home, "--kill", "all"], { stdio: "ignore" });
  }
}

describe("secrets mandos-client cannot decrypt", { skip }, () => {
  let root = "";
  let conf = "";
  let clients: TestClient[] = [];
  /** The secfile holding m2's password as it is. */
  let plainFile = "";

  before(() => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-secretwarn-"));
    makeKeySet(join(root, "pgp"));
    clients = makeClients(root, join(root, "pgp"), 4, "m");
    const [good, armour, plain, plainBase64] = clients as [TestClient, TestClient, TestClient, TestClient];
    conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    const armouredFile = join(root, "m1.asc");
    writeFileSync(armouredFile, armoured(armour, root));
    plainFile = join(root, "m2.secret");
    writeFileSync(plainFile, plain.password);
    writeFileSync(join(conf, "clients.conf"), [
      "[DEFAULT]\nchecker = true\n",
      // As mandos-keygen --password printed it.
      good.section,
      `[${armour.name}]\nkey_id = ${armour.keyId}\nsecfile = ${armouredFile}\n`,
      // The passphrase written into a secfile, and its base64 into `secret =`.
      `[${plain.name}]\nkey_id = ${plain.keyId}\nsecfile = ${plainFile}\n`,
      `[${plainBase64.name}]\nkey_id = ${plainBase64.keyId}\nsecret = ${Buffer.from(plainBase64.password).toString("base64")}\n`,
    ].join("\n"), { mode: 0o600 });
  });

  after(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("--check warns of the plain passphrases, not of mandos-keygen's secret nor of an armoured one", () => {
    const r = spawnSync(BIN_MANDOS, ["--check", "--configdir", conf, "--no-restore"], { encoding: "utf8", timeout: 60_000 });
    assert.match(r.stdout, /^ok: clients\.conf: .* 4 clients$/m, r.stdout + r.stderr);
    const said = r.stdout.split("\n").filter((l) => l.startsWith("WARNING: clients.conf: Client "));
    assert.deepEqual(said, ["m2", "m3"].map((name) => inFile(name).replace("WARNING: ", "WARNING: clients.conf: ")));
    for (const c of clients) assert.ok(!r.stdout.includes(c.password), "a password in --check's output");
  });

  test("a start and a reload warn once each of m2 and m3; the real mandos-client decrypts the armoured secret", async () => {
    const state = join(root, "state-start");
    const server = await startServer(["--configdir", conf, "--statedir", state, "--no-restore", "--port", "0", "--address", "::1"]);
    try {
      for (const name of ["m2", "m3"]) assert.equal(await logCount(server, new RegExp(escape(inFile(name))), 1), 1, server.log());
      assert.doesNotMatch(server.log(), /Client m[01]'s secret/);
      const got = await runMandosClient(clients[1]!.dir, "::1", server.port);
      assert.equal(got.code, 0, got.stderr.slice(-2000));
      assert.equal(got.stdout.toString("utf8"), clients[1]!.password);
      await hangUp(server, /Reloaded clients\.conf: 0 added, 0 removed, 0 changed/);
      for (const name of ["m2", "m3"]) assert.equal(await logCount(server, new RegExp(escape(inFile(name))), 2), 2, server.log());
      assert.doesNotMatch(server.log(), /Client m[01]'s secret/);
      for (const c of clients) assert.ok(!server.log().includes(c.password), "a password in the log");
    } finally {
      await server.stop();
    }
  });

  describe("set over D-Bus", { skip: missing(DBUS_DAEMON, MANDOS_CTL) }, () => {
    let bus: PrivateBus;
    let server: RunningServer;

    before(async () => {
      bus = await startPrivateBus();
      server = await startOurServer(conf, join(root, "state-dbus"), bus.address);
    });

    after(async () => {
      await server?.stop();
      await bus?.stop();
    });

    test("mandos-ctl --secret with a plain passphrase or nothing warns, naming the client; with an encrypted one it does not; the secret is set either way", async () => {
      const ctl = async (...args: string[]): Promise<void> => {
        const r = await mandosCtl(bus.address, ...args);
        assert.equal(r.code, 0, `mandos-ctl ${args.join(" ")}: ${r.stderr}`);
      };
      const overDbus = (what: string): RegExp => new RegExp(`WARNING: Client m0's secret set over D-Bus ${escape(what)}; it is served as set, until another is set over D-Bus or in clients\\.conf$`, "m");
      const encrypted = join(root, "m0.asc");
      writeFileSync(encrypted, armoured(clients[0]!, root));
      const from = server.log().length;
      const warned = (): string[] => server.log().slice(from).split("\n").filter((l) => l.includes("set over D-Bus"));
      await ctl("--secret", encrypted, "m0");
      await ctl("--secret", plainFile, "m0");
      await server.waitForLog(overDbus(NOT_OPENPGP));
      // Served as set: mandos-client gets it, fails to decrypt it, and would ask again in 10 s.
      const sent = server.log().length;
      const failed = await runMandosClient(clients[0]!.dir, "::1", server.port, 8_000);
      assert.equal(failed.stdout.length, 0);
      assert.match(failed.stderr, /bad gpgme_op_decrypt/);
      await server.waitForLog(/Sending secret to m0/, 10_000, sent);
      await ctl("--secret", "/dev/null", "m0");
      await server.waitForLog(overDbus("is empty: mandos-client takes an empty secret as a failure and asks again, for ever"));
      // The encrypted one again: no warning, and mandos-client gets m0's password.
      await ctl("--secret", encrypted, "m0");
      const got = await runMandosClient(clients[0]!.dir, "::1", server.port);
      assert.equal(got.stdout.toString("utf8"), clients[0]!.password, got.stderr.slice(-2000));
      assert.equal(warned().length, 2, warned().join("\n"));
      for (const c of clients) assert.ok(!server.log().includes(c.password), "a password in the log");
    });
  });
});
