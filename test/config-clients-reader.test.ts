// Reading clients.conf for a reload: every failure is a reason in words,
// never "no clients"; the reader kept as root reads a root-only file after
// the drop; `mandos --check` says whether reloads will work.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readClientsBytes, reloadReadiness, startPrivilegedReader } from "../src/main/config/clients-reader.js";
import { reasonInWords } from "../src/main/config/os-error.js";
import { BIN_MANDOS } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const asRoot = process.getuid?.() === 0;
const NOBODY = 65534;

function scratch(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-reader-"));
  chmodSync(dir, 0o755);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("errors are given in words, as strerror spells them", () => {
  assert.equal(reasonInWords(Object.assign(new Error("ENOENT: no such file or directory, open '/x'"), { code: "ENOENT" })), "No such file or directory");
  assert.equal(reasonInWords(Object.assign(new Error("EISDIR: illegal operation on a directory, read"), { code: "EISDIR" })), "Is a directory");
  assert.equal(reasonInWords(Object.assign(new Error("EHOSTDOWN: host is down, connect"), { code: "EHOSTDOWN" })), "Host is down");
});

test("a missing file and a directory are failures with a reason, not an empty file", (t) => {
  const dir = scratch(t);
  assert.deepEqual(readClientsBytes(join(dir, "none")), { ok: false, reason: "No such file or directory" });
  assert.deepEqual(readClientsBytes(dir), { ok: false, reason: "Is a directory" });
  writeFileSync(join(dir, "empty"), "");
  assert.deepEqual(readClientsBytes(join(dir, "empty")), { ok: true, bytes: Buffer.alloc(0) });
});

test("a root-only file is 'Permission denied' to the dropped user", (t) => {
  const dir = scratch(t);
  const path = join(dir, "clients.conf");
  writeFileSync(path, "[a]\n", { mode: 0o600 });
  chmodSync(path, asRoot ? 0o600 : 0o000);
  const reader = new URL("../src/main/config/clients-reader.js", import.meta.url).href;
  const script = `import { readClientsBytes } from ${JSON.stringify(reader)}; console.log(JSON.stringify(readClientsBytes(${JSON.stringify(path)})));`;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}),
  });
  assert.deepEqual(JSON.parse(out), { ok: false, reason: "Permission denied" });
});

test("the reader kept as root answers each read with the file as it is then", { skip: asRoot ? false : "needs root" }, async (t) => {
  const dir = scratch(t);
  const path = join(dir, "clients.conf");
  writeFileSync(path, "[a]\nsecret = w6k=\n", { mode: 0o600 });
  const reader = startPrivilegedReader(path);
  t.after(() => reader.close());
  // Drop this process's privileges the way the server does would end the
  // test process's root; a child that drops is tested in the integration
  // test (reload-keeps-clients). Here: several reads, changes between them.
  assert.deepEqual(await reader.read(), { ok: true, bytes: Buffer.from("[a]\nsecret = w6k=\n") });
  writeFileSync(path, "é\n".repeat(100_000));
  assert.deepEqual(await reader.read(), { ok: true, bytes: Buffer.from("é\n".repeat(100_000)) });
  // Every length of the base64 text's last group, decoded as it comes.
  for (let n = 0; n < 12; n++) {
    const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37) & 0xff));
    writeFileSync(path, bytes);
    assert.deepEqual(await reader.read(), { ok: true, bytes });
  }
  rmSync(path);
  assert.deepEqual(await reader.read(), { ok: false, reason: "No such file or directory" });
  mkdirSync(path);
  const [a, b] = await Promise.all([reader.read(), reader.read()]);
  assert.deepEqual([a, b], [{ ok: false, reason: "Is a directory" }, { ok: false, reason: "Is a directory" }]);
});

test("the reader kept as root passes a 60 MB clients.conf whole (100,000 clients of 500-byte secrets), and the reads after it", { skip: asRoot ? false : "needs root" }, async (t) => {
  const dir = scratch(t);
  const path = join(dir, "clients.conf");
  let text = "";
  for (let i = 0; i < 100_000; i++) text += `[client-${i}]\nkey_id = ${String(i).padStart(64, "0")}\nsecret = ${"QUJD".repeat(125)}\nhost = client-${i}.example.org\n\n`;
  writeFileSync(path, text, { mode: 0o600 });
  assert.ok(text.length > 60_000_000);
  const reader = startPrivilegedReader(path);
  t.after(() => reader.close());
  // Joining and searching the whole answer at each 64 KiB chunk took this
  // past the reader's 10 s limit ("the privileged reader did not answer").
  const big = await reader.read();
  assert.equal(big.ok && big.bytes.length, Buffer.byteLength(text));
  assert.ok(big.ok && big.bytes.equals(Buffer.from(text)));
  writeFileSync(path, "[a]\nsecret = w6k=\n");
  assert.deepEqual(await reader.read(), { ok: true, bytes: Buffer.from("[a]\nsecret = w6k=\n") });
});

/** The pids of the readers kept as root for `path` (their command line names it). */
function readersOf(path: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv.includes("mandos-clients-reader") && argv.includes(path)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

test("the reader kept as root answers a FIFO in the file's place within its bound, reads again after, and exits when its input closes, mid-read too", { skip: asRoot ? false : "needs root" }, async (t) => {
  const dir = scratch(t);
  const path = join(dir, "clients.conf");
  execFileSync("mkfifo", [path]);
  // A bound of 1 s here (8 in the server): base64 waits on the FIFO until it is ended.
  const reader = startPrivilegedReader(path, 1);
  t.after(() => reader.close());
  const stuck = await reader.read();
  assert.deepEqual(stuck, { ok: false, reason: "not read within 1 s (a FIFO, a terminal or a hung mount in its place?)" });
  rmSync(path);
  writeFileSync(path, "[a]\n", { mode: 0o600 });
  assert.deepEqual(await reader.read(), { ok: true, bytes: Buffer.from("[a]\n") });
  // The server gone (its end of the pipe closed) while a read waits: the
  // reader, root where the server no longer is, ends within the bound.
  rmSync(path);
  execFileSync("mkfifo", [path]);
  const pending = reader.read();
  assert.equal(readersOf(path).length, 1);
  reader.close();
  await pending;
  await eventually(() => readersOf(path).length === 0, { what: "the reader gone" });
});

test("reload readiness: the reader as root, the mode bits otherwise, with the command that fixes it", (t) => {
  const dir = scratch(t);
  const path = join(dir, "clients.conf");
  writeFileSync(path, "[a]\n");
  chmodSync(path, 0o600);
  const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const other = { uid: owner.uid + 1000, gid: owner.gid + 1000 };
  const asRootNow = reloadReadiness(path, other, true);
  assert.equal(asRootNow.ok, true);
  assert.match(asRootNow.message, /re-read on SIGHUP by a reader kept as root \(the server itself runs as \d+:\d+, which cannot read it\)/);
  const plain = reloadReadiness(path, other, false);
  assert.equal(plain.ok, false);
  assert.match(plain.message, new RegExp(`chgrp ${other.gid} \\S+clients\\.conf && chmod 0640 \\S+clients\\.conf`));
  assert.equal(reloadReadiness(path, owner, false).ok, true);
  chmodSync(path, 0o640);
  assert.equal(reloadReadiness(path, { uid: other.uid, gid: owner.gid }, false).ok, true);
  const missing = reloadReadiness(join(dir, "none"), owner, false);
  assert.equal(missing.ok, false);
  assert.match(missing.message, /No such file or directory: the server would start with no clients/);
});

test("mandos --check reports whether clients.conf reloads will work", (t) => {
  const dir = scratch(t);
  writeFileSync(join(dir, "clients.conf"), `[a]\nkey_id = ${"ab".repeat(32)}\nsecret = YQ==\n`, { mode: 0o600 });
  const out = execFileSync(process.execPath, [BIN_MANDOS, "--check", "--configdir", dir], { encoding: "utf8" });
  assert.match(out, asRoot ? /^ok: clients\.conf reloads: \S+ is re-read on SIGHUP by a reader kept as root/m : /^ok: clients\.conf reloads: \S+ is readable by/m);
  assert.match(out, /^\d+ passed, 0 failed$/m);
});
