// mandos-keygen --length and --sublength as gpg takes them for Debian's
// script: under 1024 bits or over 4096 gpg says "keysize invalid" and makes
// 3072 or 4096 bits; between, it rounds up to a multiple of 32. Ours makes
// the same sizes as Debian's, with the same notices, for the same options.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GPG, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { REPO, run } from "./helpers/server.js";
import { gpgRsaBits } from "../src/keygen/openpgp-key.js";

const BIN_KEYGEN = `${REPO}bin/mandos-keygen`;
const skip = missing(MANDOS_KEYGEN, GPG);

let root = "";

before(() => {
  root = mkdtempSync(join(tmpdir(), "mandos-ts-keygen-len-"));
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

/** The bits of the primary key and the subkey in `dir`/pubkey.txt, as gpg lists them. */
function keySizes(dir: string): string[] {
  const home = mkdtempSync(join(root, "gnupg-"));
  const listing = execFileSync(GPG, ["--homedir", home, "--batch", "--with-colons", "--import-options", "show-only", "--import", join(dir, "pubkey.txt")], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  return listing.split("\n").filter((l) => /^(pub|sub):/.test(l)).map((l) => `${l.split(":")[0]} ${l.split(":")[2]}`);
}

/** Makes keys with `args` by ours and by Debian's; their key sizes and stderr notices (without the program name). */
async function both(label: string, args: readonly string[]): Promise<Record<"ours" | "debian", { sizes: string[]; notices: string[] }>> {
  const made = await Promise.all(([["ours", process.execPath, [BIN_KEYGEN]], ["debian", MANDOS_KEYGEN, []]] as const).map(async ([who, command, pre]) => {
    const dir = join(root, `${label}-${who}`);
    mkdirSync(dir);
    const r = await run(command, [...pre, "--dir", dir, "--name", label, ...args], 300_000);
    assert.equal(r.code, 0, `${who}: ${r.stderr}`);
    const notices = r.stderr.split("\n").filter((l) => l !== "").map((l) => l.replace(/^(gpg|mandos-keygen): /, ""));
    return [who, { sizes: keySizes(dir), notices }] as const;
  }));
  return Object.fromEntries(made) as Record<"ours" | "debian", { sizes: string[]; notices: string[] }>;
}

test("under 1024 bits: 3072; a length not a multiple of 32 is rounded up", { skip }, async () => {
  const r = await both("low", ["--length", "700", "--sublength", "1025"]);
  assert.deepEqual(r.ours.sizes, ["pub 3072", "sub 1056"]);
  assert.deepEqual(r.ours, r.debian);
  assert.deepEqual(r.ours.notices, ["keysize invalid; using 3072 bits", "keysize rounded up to 1056 bits"]);
});

test("over 4096 bits: 4096; 1024 exactly is kept", { skip }, async () => {
  const r = await both("high", ["--length", "1024", "--sublength", "8192"]);
  assert.deepEqual(r.ours.sizes, ["pub 1024", "sub 4096"]);
  assert.deepEqual(r.ours, r.debian);
});

test("gpg's RSA sizes, at the edges", () => {
  assert.deepEqual([512, 768, 1023, 1024, 1025, 2048, 4095, 4096, 4097, 8192].map((b) => gpgRsaBits(b).bits), [3072, 3072, 3072, 1024, 1056, 2048, 4096, 4096, 4096, 4096]);
  assert.equal(gpgRsaBits(2048).notice, null);
});
