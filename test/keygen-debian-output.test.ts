// mandos-keygen's output beside Debian's for the same keys: no gpg warning
// about our keys' preferences, the secret in gpg's 64-character lines, the
// ECDSA curve certtool --sec-param ultra picks, and a missing key file
// named in words.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decryptSecret } from "./helpers/gpg-decrypt.js";
import { GPG, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { REPO } from "./helpers/server.js";
import { secretLines } from "../src/keygen/openpgp-key.js";
import { generateTlsKey } from "../src/keygen/tls-key.js";

const BIN_KEYGEN = `${REPO}bin/mandos-keygen`;
const CERTTOOL = "/usr/bin/certtool";
const skip = missing(MANDOS_KEYGEN, GPG);

let root = "";
let dir = "";
const password = "a password long enough for several lines of secret ".repeat(4);

function keygen(command: readonly string[], args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(command[0]!, [...command.slice(1), ...args], { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const OURS = [process.execPath, BIN_KEYGEN];

before(() => {
  root = mkdtempSync(join(tmpdir(), "mandos-ts-keygen-out-"));
  dir = join(root, "keys");
  mkdirSync(dir);
  writeFileSync(join(root, "pw"), password);
  execFileSync(process.execPath, [BIN_KEYGEN, "--dir", dir, "--type", "EDDSA", "--subtype", "ECDH", "--name", "out"]);
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

test("Debian's mandos-keygen --passfile on keys ours made: no gpg warning about preferences", { skip }, () => {
  const r = keygen([MANDOS_KEYGEN], ["--dir", dir, "--passfile", join(root, "pw"), "--no-ssh", "--name", "out"]);
  assert.equal(r.status, 0);
  assert.equal(r.stderr, "");
});

test("the secret is in lines of 64 base64 characters, as in Debian's section for the same key and password", { skip }, () => {
  const args = ["--dir", dir, "--passfile", join(root, "pw"), "--no-ssh", "--name", "out"];
  for (const [who, r] of [["ours", keygen(OURS, args)], ["Debian's", keygen([MANDOS_KEYGEN], args)]] as const) {
    assert.equal(r.status, 0, r.stderr);
    const secret = r.stdout.split("\n").filter((l) => l.startsWith("    "));
    assert.ok(secret.length > 2, who);
    for (const line of secret.slice(0, -1)) assert.equal(line.length, 4 + 64, `${who}: ${line}`);
    assert.ok(secret.at(-1)!.length <= 4 + 64, who);
    assert.equal(decryptSecret(r.stdout, dir, root).toString("utf8"), password, who);
  }
});

test("secretLines keeps a line of padding and drops the CRC-24 line", () => {
  const body = "A".repeat(60);
  const armoured = `-----BEGIN PGP MESSAGE-----\nComment: x\n\n${body}\n${body}\n==\n=AbC+\n-----END PGP MESSAGE-----\n`;
  assert.deepEqual(secretLines(armoured), [`    ${"A".repeat(64)}`, `    ${"A".repeat(56)}==`]);
});

test("--tls-keytype ecdsa makes the curve that certtool --sec-param ultra makes for Debian's", { skip: missing(CERTTOOL) }, () => {
  const file = join(root, "certtool-ec.pem");
  execFileSync(CERTTOOL, ["--generate-privkey", "--password=", "--outfile", file, "--sec-param", "ultra", "--key-type=ecdsa", "--pkcs8", "--no-text"], { stdio: "ignore" });
  const theirs = createPrivateKey(readFileSync(file)).asymmetricKeyDetails?.namedCurve;
  const ours = createPrivateKey(generateTlsKey("ecdsa").privateKeyPem).asymmetricKeyDetails?.namedCurve;
  assert.ok(theirs);
  assert.equal(ours, theirs);
});

test("a missing pubkey.txt: one line naming it, the reason in words, with --passfile and --enroll", () => {
  const empty = join(root, "empty");
  mkdirSync(empty);
  writeFileSync(join(empty, "password"), "x");
  const pubkey = join(empty, "pubkey.txt");
  const passfile = keygen(OURS, ["--dir", empty, "--passfile", join(root, "pw"), "--no-ssh"]);
  assert.deepEqual([passfile.status, passfile.stdout, passfile.stderr], [1, "", `mandos-keygen: ${pubkey}: No such file or directory\n`]);
  const conf = join(root, "clients.conf");
  writeFileSync(conf, "[DEFAULT]\n", { mode: 0o600 });
  const enroll = keygen(OURS, ["--enroll", "--clients-conf", conf, empty]);
  assert.deepEqual([enroll.status, enroll.stdout, enroll.stderr], [1, "", `mandos-keygen: ${pubkey}: No such file or directory\n`]);
});
