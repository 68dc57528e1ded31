// mandos-keygen --passfile and --enroll on the keys older Mandos made, which
// Debian's script still encrypts to with gpg: DSA/ELG-E 2048 (the default
// before Mandos 1.6) and RSA keys under 2047 bits (`-l 1024 -L 1024`).
// The keys are made by Debian's mandos-keygen, the secret is decrypted by
// gpg with the machine's secret key.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decryptSecret } from "./helpers/gpg-decrypt.js";
import { GPG, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { REPO, run } from "./helpers/server.js";

const BIN_KEYGEN = `${REPO}bin/mandos-keygen`;
const skip = missing(MANDOS_KEYGEN, GPG);

let root = "";
const password = "old key, new keygen";

async function ours(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await run(process.execPath, [BIN_KEYGEN, ...args], 120_000);
  return { code: r.code, stdout: r.stdout.toString("utf8"), stderr: r.stderr };
}

const keys = [
  { label: "DSA/ELG-E 2048, as Mandos before 1.6 made them", dir: "dsa", args: ["-t", "DSA", "-l", "2048", "-s", "ELG-E", "-L", "2048"] },
  { label: "RSA 1024", dir: "rsa1024", args: ["-l", "1024", "-L", "1024"] },
] as const;

before(() => {
  if (skip) return;
  root = mkdtempSync(join(tmpdir(), "mandos-ts-keygen-old-"));
  writeFileSync(join(root, "pw"), password);
  for (const k of keys) {
    const dir = join(root, k.dir);
    mkdirSync(dir);
    execFileSync(MANDOS_KEYGEN, ["--dir", dir, "--name", k.dir, ...k.args], { stdio: ["ignore", "ignore", "pipe"] });
    writeFileSync(join(dir, "password"), password);
  }
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

for (const k of keys) {
  test(`--passfile encrypts to ${k.label}, and gpg decrypts`, { skip }, async () => {
    const dir = join(root, k.dir);
    const r = await ours(["--dir", dir, "--passfile", join(root, "pw"), "--no-ssh", "--name", k.dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.equal(decryptSecret(r.stdout, dir, root).toString("utf8"), password);
  });

  test(`--enroll encrypts to ${k.label}, and gpg decrypts`, { skip }, async () => {
    const dir = join(root, k.dir);
    const conf = join(root, `${k.dir}.conf`);
    writeFileSync(conf, "[DEFAULT]\n", { mode: 0o600 });
    const r = await ours(["--enroll", "--clients-conf", conf, dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(decryptSecret(readFileSync(conf, "utf8"), dir, root).toString("utf8"), password);
  });
}

test("a key it cannot encrypt to is one line on stderr, not a stack", { skip }, async () => {
  // The DSA primary key without its ElGamal subkey: nothing to encrypt to.
  const dir = join(root, "signonly");
  mkdirSync(dir);
  const home = mkdtempSync(join(root, "gnupg-"));
  try {
    execFileSync(GPG, ["--homedir", home, "--batch", "--quiet", "--import", join(root, "dsa", "pubkey.txt")], { stdio: "ignore" });
    const fpr = /^fpr:(?:[^:]*:){8}([0-9A-F]{40}):/m.exec(execFileSync(GPG, ["--homedir", home, "--batch", "--with-colons", "--fingerprint"], { encoding: "utf8" }))![1]!;
    const pub = execFileSync(GPG, ["--homedir", home, "--batch", "--armor", "--export-options", "export-minimal", "--export", `${fpr}!`], { encoding: "utf8" });
    writeFileSync(join(dir, "pubkey.txt"), pub);
  } finally {
    execFileSync("gpgconf", ["--homedir", home, "--kill", "all"], { stdio: "ignore" });
  }
  const r = await ours(["--dir", dir, "--passfile", join(root, "pw"), "--no-ssh", "--name", "signonly"]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr.split("\n").length, 2, r.stderr);
  assert.doesNotMatch(r.stderr, /\bat |openpgp\.mjs/);
});
