// mandos-keygen --password and --passfile: the password bytes that get
// encrypted, and where the prompts go, beside Debian's script on the same
// keys. The typed password is what dash's `read -r` leaves of the line
// (leading and trailing spaces and tabs stripped, bytes kept as they are,
// Latin-1 too); prompts go to /dev/tty; --passfile - reads standard input
// unstripped. Secrets are decrypted by gpg with the machine's secret key.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decryptSecret } from "./helpers/gpg-decrypt.js";
import { GPG, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { runOnPty } from "./helpers/pty.js";
import { REPO } from "./helpers/server.js";

const BIN_KEYGEN = `${REPO}bin/mandos-keygen`;
const skip = missing(MANDOS_KEYGEN, GPG, "/usr/bin/python3");
const OURS = [process.execPath, BIN_KEYGEN] as const;
const DEBIANS = [MANDOS_KEYGEN] as const;

let root = "";
let dir = "";

before(() => {
  if (skip) return;
  root = mkdtempSync(join(tmpdir(), "mandos-ts-keygen-pw-"));
  dir = join(root, "keys");
  mkdirSync(dir);
  execFileSync(process.execPath, [BIN_KEYGEN, "--dir", dir, "--type", "EDDSA", "--subtype", "ECDH", "--name", "pw"]);
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

const count = (text: string, what: string): number => text.split(what).length - 1;

for (const [who, keygen] of [["ours", OURS], ["Debian's", DEBIANS]] as const) {
  describe(`${who} mandos-keygen`, { skip }, () => {
    test("typed at the terminal: Latin-1 bytes kept, blanks stripped, prompts on the terminal with stderr to /dev/null, no echo", async () => {
      const line = Buffer.from("  \tsp\xe9ce \\x \t \n", "latin1");
      const r = await runOnPty([...keygen, "--dir", dir, "--password", "--no-ssh", "--name", "pw"], {
        typed: [{ after: "Enter passphrase: ", bytes: line }, { after: "Repeat passphrase: ", bytes: line }],
        stderrToNull: true,
      });
      assert.equal(r.status, 0, r.terminal.toString("latin1"));
      const terminal = r.terminal.toString("latin1");
      assert.match(terminal, /Enter passphrase: [^]*Repeat passphrase: /);
      assert.doesNotMatch(terminal, /sp.ce/);
      assert.deepEqual(decryptSecret(r.stdout.toString("utf8"), dir, root), Buffer.from("sp\xe9ce \\x", "latin1"));
    });

    test("from a pipe, with a terminal: prompts on the terminal, blanks stripped", async () => {
      const r = await runOnPty([...keygen, "--dir", dir, "--password", "--no-ssh", "--name", "pw"], { stdin: Buffer.from(" a\tb \n a\tb \n") });
      assert.equal(r.status, 0, r.terminal.toString("latin1"));
      assert.match(r.terminal.toString("latin1"), /Enter passphrase: [^]*Repeat passphrase: /);
      assert.equal(decryptSecret(r.stdout.toString("utf8"), dir, root).toString("latin1"), "a\tb");
    });

    test("a mismatch from a pipe: one 'Passphrase mismatch', exit status 1, no section", async () => {
      const r = await runOnPty([...keygen, "--dir", dir, "--password", "--no-ssh", "--name", "pw"], { stdin: Buffer.from("a\nb\n") });
      assert.equal(r.status, 1);
      assert.equal(r.stdout.length, 0);
      assert.equal(count(r.terminal.toString("latin1"), "Passphrase mismatch"), 1);
    });

    test("--passfile - reads standard input, byte for byte", () => {
      const input = Buffer.from(" x\t\xe9 \n", "latin1");
      const r = spawnSync(keygen[0], [...keygen.slice(1), "--dir", dir, "--passfile", "-", "--no-ssh", "--name", "pw"], { input });
      assert.equal(r.status, 0, r.stderr.toString());
      assert.deepEqual(decryptSecret(r.stdout.toString("utf8"), dir, root), input);
    });
  });
}

test("ours, a mismatch with no terminal at all: one line, exit status 1", { skip }, () => {
  const r = spawnSync(process.execPath, [BIN_KEYGEN, "--dir", dir, "--password", "--no-ssh", "--name", "pw"], { input: "a\nb\n", encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr, "Passphrase mismatch\n");
});
