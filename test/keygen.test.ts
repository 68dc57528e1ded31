// bin/mandos-keygen (ours) against Debian's mandos-keygen and the real
// mandos-client: the files it writes, the section it prints, and a password
// it encrypts being decrypted by the real client served by our server.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeKeySet, writeTlsKey } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { DBUS_DAEMON, startPrivateBus, startReference } from "./helpers/dbus.js";
import { REPO, run, runMandosClient, startServer, type RunningServer } from "./helpers/server.js";
import { localSshHostKey, formatSection } from "../src/keygen/section.js";
import { parseExpire } from "../src/keygen/expire.js";

const BIN_KEYGEN = `${REPO}bin/mandos-keygen`;
const skip = missing(MANDOS_CLIENT, MANDOS_KEYGEN);
const referenceSkip = missing(MANDOS_REFERENCE, DBUS_DAEMON) || (process.getuid?.() === 0 ? false : "needs root: the reference server drops to _mandos");

function ours(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run(process.execPath, [BIN_KEYGEN, ...args], 120_000).then((r) => ({ code: r.code, stdout: r.stdout.toString("utf8"), stderr: r.stderr }));
}

const field = (section: string, key: string): string => new RegExp(`^${key} = (.*)$`, "m").exec(section)?.[1] ?? "";

describe("mandos-keygen (ours) with the real mandos-client and Debian's mandos-keygen", { skip }, () => {
  let root = "";
  let server: RunningServer;
  let conf = "";
  const password = "correct horse battery staple\nwith a second line";
  let oursDir = "";
  let debianDir = "";
  let oursSection = "";
  let debianKeysSection = "";

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-keygen-"));
    oursDir = join(root, "ours");
    debianDir = join(root, "debian");
    mkdirSync(oursDir);
    makeKeySet(debianDir);
    const made = await ours(["--dir", oursDir, "--name", "ourhost", "--email", "root@ourhost.example", "--comment", "test key", "--length", "2048", "--sublength", "2048"]);
    assert.equal(made.code, 0, made.stderr);
    writeFileSync(join(root, "pw"), password);
    const a = await ours(["--dir", oursDir, "--passfile", join(root, "pw"), "--no-ssh", "--name", "ourkeys"]);
    assert.equal(a.code, 0, a.stderr);
    oursSection = a.stdout;
    const b = await ours(["--dir", debianDir, "--passfile", join(root, "pw"), "--no-ssh", "--name", "debiankeys"]);
    assert.equal(b.code, 0, b.stderr);
    debianKeysSection = b.stdout;
    conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n\n${oursSection}\n${debianKeysSection}`, { mode: 0o600 });
    server = await startServer(["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::"]);
  });

  after(async () => {
    await server?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("key creation writes the four files, mode 0600, in Debian's formats", () => {
    assert.deepEqual(readdirSync(oursDir).filter((f) => !f.includes("~")).sort(), ["pubkey.txt", "seckey.txt", "tls-privkey.pem", "tls-pubkey.pem"]);
    for (const f of ["pubkey.txt", "seckey.txt", "tls-privkey.pem", "tls-pubkey.pem"]) {
      assert.equal(statSync(join(oursDir, f)).mode & 0o777, 0o600, f);
    }
    assert.match(readFileSync(join(oursDir, "pubkey.txt"), "utf8"), /^-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: Mandos client key for ourhost \(test key\) <root@ourhost\.example>\n/);
    assert.match(readFileSync(join(oursDir, "seckey.txt"), "utf8"), /^-----BEGIN PGP PRIVATE KEY BLOCK-----\n/);
    assert.match(readFileSync(join(oursDir, "tls-privkey.pem"), "utf8"), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(readFileSync(join(oursDir, "tls-pubkey.pem"), "utf8"), /^-----BEGIN PUBLIC KEY-----\n/);
    // gpg reads the key, with the user ID we asked for.
    const listing = execFileSync("gpg", ["--homedir", mkdtempSync(join(root, "gnupg-")), "--batch", "--with-colons", "--import-options", "show-only", "--import", join(oursDir, "pubkey.txt")], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    assert.match(listing, /^uid:.*:ourhost \(test key\) <root@ourhost\.example>:/m);
    assert.match(listing, /^sub:.*:2048:1:.*:e:/m);
  });

  test("a password encrypted by our --password to our keys is decrypted by the real client from our server", async () => {
    const r = await runMandosClient(oursDir, "::1", server.port);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString("utf8"), password);
  });

  test("our --password encrypts to keys made by Debian's mandos-keygen, and the real client decrypts", async () => {
    const r = await runMandosClient(debianDir, "::1", server.port);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString("utf8"), password);
  });

  test("the Python reference serves the sections our --password made, to the real client", { skip: referenceSkip }, async () => {
    const bus = await startPrivateBus();
    const state = join(root, "state-ref");
    mkdirSync(state);
    try {
      const reference = await startReference(conf, state, bus.address);
      try {
        for (const dir of [oursDir, debianDir]) {
          const r = await runMandosClient(dir, "::1", reference.port);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.toString("utf8"), password);
        }
      } finally {
        await reference.stop();
      }
    } finally {
      await bus.stop();
    }
  });

  test("the section has Debian's layout, key ID and fingerprint, for Debian's keys and for ours", () => {
    for (const [dir, section, name] of [[debianDir, debianKeysSection, "debiankeys"], [oursDir, oursSection, "ourkeys"]] as const) {
      const theirs = execFileSync(MANDOS_KEYGEN, ["--dir", dir, "--passfile", join(root, "pw"), "--no-ssh", "--name", name], { encoding: "utf8" });
      assert.equal(field(section, "key_id"), field(theirs, "key_id"));
      assert.equal(field(section, "fingerprint"), field(theirs, "fingerprint"));
      assert.match(field(section, "fingerprint"), /^[0-9A-F]{40}$/);
      assert.equal(section.split("\n").slice(0, 5).join("\n").replace(/= .{40,}$/gm, "= X"), theirs.split("\n").slice(0, 5).join("\n").replace(/= .{40,}$/gm, "= X"));
      // Every secret line is indented base64, with no armour CRC line.
      const secret = section.split("\n").slice(5).filter((l) => l !== "");
      assert.ok(secret.length > 5);
      for (const line of secret) assert.match(line, /^ {4}[A-Za-z0-9+/]+=*$/);
    }
  });

  test("refuses to overwrite key files without --force, and keeps numbered backups with it", async () => {
    const dir = join(root, "force");
    mkdirSync(dir);
    writeTlsKey(dir);
    const refused = await ours(["--dir", dir, "--type", "EDDSA", "--subtype", "ECDH"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /Refusing to overwrite old key files; use --force/);
    const old = readFileSync(join(dir, "tls-pubkey.pem"), "utf8");
    const forced = await ours(["--dir", dir, "--type", "EDDSA", "--subtype", "ECDH", "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(readFileSync(join(dir, "tls-pubkey.pem.~1~"), "utf8"), old);
    assert.notEqual(readFileSync(join(dir, "tls-pubkey.pem"), "utf8"), old);
  });

  test("bad options fail as Debian's script does", async () => {
    const dir = join(root, "bad");
    mkdirSync(dir);
    assert.match((await ours(["--dir", dir, "--length", "100"])).stderr, /Invalid key length/);
    assert.match((await ours(["--dir", join(root, "absent")])).stderr, /not a directory/);
    assert.match((await ours(["--dir", dir, "extra"])).stderr, /Unknown arguments: 'extra'/);
    assert.deepEqual(readdirSync(dir), []);
    assert.match((await ours(["--version"])).stdout, /1\.8\.16/);
  });
});

describe("mandos-keygen's pieces", () => {
  test("the checker line comes from the first key type ssh-keyscan answers, as Debian prints it", () => {
    const asked: string[] = [];
    const ssh = localSshHostKey((t) => {
      asked.push(t);
      return t === "ed25519" ? "localhost ssh-ed25519 AAAAC3Nza\n" : null;
    });
    assert.deepEqual(asked, ["ecdsa-sha2-nistp256", "ed25519"]);
    const section = formatSection({ name: "h", keyId: "ab", fingerprint: "CD", secret: ["    x"], ssh });
    assert.equal(section, `[h]\nhost = h\nkey_id = ab\nfingerprint = CD\nsecret =\n    x\nchecker = ssh-keyscan -t ed25519 %%(host)s 2>/dev/null | grep --fixed-strings --line-regexp --quiet --regexp=%%(host)s" %(ssh_fingerprint)s"\nssh_fingerprint = ssh-ed25519 AAAAC3Nza\n`);
    assert.equal(localSshHostKey(() => null), null);
  });

  test("--expire takes gpg's syntax", () => {
    const now = new Date("2026-01-01T00:00:00Z");
    assert.equal(parseExpire("0", now), 0);
    assert.equal(parseExpire("10", now), 10 * 86_400);
    assert.equal(parseExpire("2w", now), 14 * 86_400);
    assert.equal(parseExpire("1y", now), 365 * 86_400);
    assert.equal(parseExpire("2026-01-02", now), 86_400);
    assert.throws(() => parseExpire("soon", now), { code: "KEYGEN_BAD_EXPIRE" });
    assert.throws(() => parseExpire("2025-01-01", now), { code: "KEYGEN_BAD_EXPIRE" });
  });
});
