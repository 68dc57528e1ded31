// mandos-keygen's command line as getopt(1) takes it for Debian's script:
// abbreviated long options, values that begin with "-", getopt's error
// words; each command line run through ours and Debian's.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { REPO } from "./helpers/server.js";
import { getopt } from "../src/keygen/getopt.js";

const BIN_KEYGEN = `${REPO}bin/mandos-keygen`;
const skip = missing(MANDOS_KEYGEN);

let root = "";
let dir = "";

before(() => {
  root = mkdtempSync(join(tmpdir(), "mandos-ts-keygen-getopt-"));
  dir = join(root, "keys");
  mkdirSync(dir);
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

/** Exit status and stderr, the program's name made the same for both. */
function outcome(command: readonly string[], args: readonly string[]): { status: number | null; stderr: string } {
  const r = spawnSync(command[0]!, [...command.slice(1), ...args], { encoding: "utf8", input: "" });
  return { status: r.status, stderr: r.stderr.replaceAll(MANDOS_KEYGEN, "mandos-keygen") };
}

test("bad command lines fail as getopt makes Debian's fail, in its words", { skip }, () => {
  for (const args of [["--bogus"], ["--bogus=1", "--bad"], ["--pass"], ["--leng"], ["-l"], ["-q"], ["--help=x"], ["--force="], ["--su", "x"]]) {
    const ours = outcome([process.execPath, BIN_KEYGEN], args);
    assert.deepEqual(ours, outcome([MANDOS_KEYGEN], args), args.join(" "));
    assert.equal(ours.status, 1);
  }
});

test("abbreviations and values beginning with '-' reach the same check as Debian's", { skip }, () => {
  for (const args of [["--d", dir, "--leng", "100"], ["--di=" + dir, "--length=100"], ["-fSl100", "-d", dir], ["--dir", dir, "--comment", "-foo", "-l", "100"], ["-c", "-x", "--dir", dir, "-l", "100"], ["--dir", dir, "--", "-f"]]) {
    const ours = outcome([process.execPath, BIN_KEYGEN], args);
    assert.deepEqual(ours, outcome([MANDOS_KEYGEN], args), args.join(" "));
  }
});

test("a comment that begins with '-' is the key's comment", async () => {
  const r = outcome([process.execPath, BIN_KEYGEN], ["--dir", dir, "-t", "EDDSA", "-s", "ECDH", "--na", "h", "-c", "-x", "--no-s"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(readFileSync(join(dir, "pubkey.txt"), "utf8"), /^Comment: Mandos client key for h \(-x\)$/m);
});

test("getopt: an abbreviation of one of Debian's options means it, though ours has more", () => {
  const options = { dir: { type: "string" }, "dry-run": { type: "boolean" }, password: { type: "boolean", short: "p" }, passfile: { type: "string", short: "F" } } as const;
  assert.deepEqual(getopt(["--d", "x", "--dr"], options, new Set(["dir", "password", "passfile"])), { values: { dir: "x", "dry-run": true }, positionals: [], errors: [] });
  assert.deepEqual(getopt(["a", "-pF", "-", "b", "--", "-p"], options).positionals, ["a", "b", "-p"]);
  assert.deepEqual(getopt(["--d"], options).errors, ["option '--d' is ambiguous; possibilities: '--dir' '--dry-run'"]);
});
