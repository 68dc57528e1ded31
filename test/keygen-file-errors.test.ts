// mandos-keygen on a file it cannot read or write, or a key file that holds
// no key: one line `mandos-keygen: FILE: REASON`, exit status 1, nothing
// printed or written; not a Node stack trace. fileSystemError does not
// make a programming error into such a line (the command line still shows
// it in one line, `mandos-keygen: MESSAGE`, without the file).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeFleetKeyDirs, type FleetMachine } from "./helpers/fleet-keys.js";
import { REPO, run } from "./helpers/server.js";
import { fileSystemError } from "../src/keygen/errors.js";

const BIN_KEYGEN = `${REPO}bin/mandos-keygen`;

let root = "";
let machine: FleetMachine;

before(async () => {
  root = mkdtempSync(join(tmpdir(), "mandos-ts-keygen-errors-"));
  [machine] = (await makeFleetKeyDirs(join(root, "keys"), 1)) as [FleetMachine];
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

/** bin/mandos-keygen ARGS, under `wrapper` if given (runuser -u nobody --). */
async function keygen(args: readonly string[], wrapper: readonly string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [command, ...rest] = [...wrapper, process.execPath, BIN_KEYGEN, ...args] as [string, ...string[]];
  const r = await run(command, rest, 60_000);
  return { code: r.code, stdout: r.stdout.toString("utf8"), stderr: r.stderr };
}

function assertOneLine(r: { code: number | null; stdout: string; stderr: string }, line: string | RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, "", "nothing printed");
  if (typeof line === "string") assert.equal(r.stderr, `${line}\n`);
  else assert.match(r.stderr, line);
}

test("--passfile that is missing, or a directory", async () => {
  const missing = join(root, "nonexistent");
  assertOneLine(await keygen(["--passfile", missing, "--dir", machine.dir, "--no-ssh"]), `mandos-keygen: ${missing}: No such file or directory`);
  assertOneLine(await keygen(["--passfile", root, "--dir", machine.dir, "--no-ssh"]), `mandos-keygen: ${root}: Is a directory`);
});

test("--enroll --manifest that is missing: clients.conf not created", async () => {
  const conf = join(root, "manifest.conf");
  const missing = join(root, "nonexistent.tsv");
  assertOneLine(await keygen(["--enroll", "--clients-conf", conf, "--manifest", missing]), `mandos-keygen: ${missing}: No such file or directory`);
  assert.equal(existsSync(conf), false);
});

test("a tls-pubkey.pem or pubkey.txt that holds no key, with --enroll and with --passfile: clients.conf left alone", async () => {
  const conf = join(root, "garbage.conf");
  writeFileSync(conf, "[DEFAULT]\n", { mode: 0o600 });
  for (const file of ["tls-pubkey.pem", "pubkey.txt"]) {
    const dir = join(root, `garbage-${file}`);
    cpSync(machine.dir, dir, { recursive: true });
    writeFileSync(join(dir, file), "garbage\n");
    const said = new RegExp(`^mandos-keygen: ${join(dir, file)}: not an? (public|OpenPGP) key: [^\\n]*\\n$`);
    assertOneLine(await keygen(["--enroll", "--clients-conf", conf, dir]), said);
    assertOneLine(await keygen(["--passfile", join(dir, "password"), "--dir", dir, "--no-ssh"]), said);
  }
  assert.equal(readFileSync(conf, "utf8"), "[DEFAULT]\n");
});

const asNobody = process.getuid?.() !== 0 ? "needs root, to run mandos-keygen as nobody" : !existsSync("/usr/sbin/runuser") && !existsSync("/sbin/runuser") ? "needs runuser" : false;

test("--enroll into a directory the user cannot write", { skip: asNobody }, async () => {
  // Readable by nobody: the key directory (mkdtemp makes root 0700).
  chmodSync(root, 0o755);
  const dir = join(root, "nobody-keys", machine.name);
  cpSync(machine.dir, dir, { recursive: true });
  for (const d of [join(root, "nobody-keys"), dir]) chmodSync(d, 0o755);
  for (const f of ["pubkey.txt", "tls-pubkey.pem", "password"]) chmodSync(join(dir, f), 0o644);
  const etc = join(root, "etc");
  mkdirSync(etc, { mode: 0o755 });
  const conf = join(etc, "clients.conf");
  assertOneLine(await keygen(["--enroll", "--clients-conf", conf, dir], ["runuser", "-u", "nobody", "--"]), `mandos-keygen: ${join(etc, ".clients.conf.enroll-lock")}: Permission denied`);
  assert.equal(existsSync(conf), false);
});

test("only file-system errors with a file become FILE: REASON: a programming error is not blamed on a file", () => {
  const missing = Object.assign(new Error("ENOENT: no such file or directory, open '/x'"), { code: "ENOENT", syscall: "open", path: "/x" });
  assert.equal(fileSystemError(missing)?.message, "/x: No such file or directory");
  const badArgument = Object.assign(new TypeError('The "path" argument must be of type string'), { code: "ERR_INVALID_ARG_TYPE" });
  assert.equal(fileSystemError(badArgument, "/x"), null);
  assert.equal(fileSystemError(new Error("boom"), "/x"), null);
});

const ownMounts = process.getuid?.() !== 0 ? "needs root (a mount namespace, a small tmpfs in it)" : !existsSync("/usr/bin/unshare") ? "needs unshare" : false;

test("a full disk: --force leaves the old key set whole (no empty key file, no backup, no temporary) and names the file", { skip: ownMounts }, async () => {
  const old = join(root, "full-old");
  mkdirSync(old);
  const made = await keygen(["--dir", old, "--type", "EDDSA", "--subtype", "ECDH", "--name", "full"]);
  assert.equal(made.code, 0, made.stderr);
  const names = ["pubkey.txt", "seckey.txt", "tls-privkey.pem", "tls-pubkey.pem"];
  // Full at the first file; or room for two of the four (each takes a 4 KiB page), so that two temporaries are written and must go.
  for (const [round, fill, failing] of [["full", "", "tls-privkey.pem"], ["two-left", "count=58", "seckey.txt"]] as const) {
    const disk = join(root, `disk-${round}`);
    const after = join(root, `after-${round}`);
    mkdirSync(disk);
    mkdirSync(after);
    // A 256 KiB tmpfs (64 pages) over `disk`, in a mount namespace of its own, the old set
    // copied in and the rest filled; what keygen leaves is copied out to `after`.
    const script = [
      `mount -t tmpfs -o size=256k tmpfs '${disk}'`,
      ...names.map((n) => `cp -p '${join(old, n)}' '${disk}/'`),
      `(dd if=/dev/zero of='${disk}/filler' bs=4096 ${fill} 2>/dev/null || true)`,
      `('${process.execPath}' '${BIN_KEYGEN}' --dir '${disk}' --force --type EDDSA --subtype ECDH --name full 2>'${after}/stderr'; echo $? >'${after}/rc')`,
      `ls -A '${disk}' >'${after}/ls'`,
      `rm '${disk}/filler'`,
      `cp -p '${disk}'/*.* '${after}/'`,
    ].join(" && ");
    const r = await run("unshare", ["--mount", "--propagation", "private", "sh", "-c", script], 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(after, "rc"), "utf8").trim(), "1", round);
    assert.equal(readFileSync(join(after, "stderr"), "utf8"), `mandos-keygen: ${join(disk, failing)}: No space left on device\n`);
    assert.deepEqual(readFileSync(join(after, "ls"), "utf8").trim().split("\n").sort(), [...names, "filler"].sort(), round);
    for (const n of names) assert.ok(readFileSync(join(after, n)).equals(readFileSync(join(old, n))), `${round}: ${n} as it was`);
  }
});
