// Dropping privileges (src/main/daemon/privileges.ts): which user and group, EPERM as a
// warning, worker threads switched too (as root), and a clients.conf others can read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FanOutLogger, type LogLevel } from "../src/main/daemon/log.js";
import { NOBODY_ID, checkClientsConfMode, chooseIds, dropPrivileges, type PasswdEntry } from "../src/main/daemon/privileges.js";

function recorder(): { log: FanOutLogger; lines: string[] } {
  const lines: string[] = [];
  const log = new FanOutLogger([{ level: "DEBUG", write: (l: LogLevel, m: string) => lines.push(`${l}: ${m}`) }]);
  return { log, lines };
}

test("the ids come from the first candidate whose user and group names both exist as users", () => {
  const db: Record<string, PasswdEntry> = { mandos: { uid: 120, gid: 130 }, nobody: { uid: 65534, gid: 65534 } };
  assert.deepEqual(chooseIds((n) => db[n]), { uid: 120, gid: 130 });
  assert.deepEqual(chooseIds((n) => ({ _mandos: { uid: 5, gid: 6 }, ...db })[n]), { uid: 5, gid: 6 });
  // nobody:nogroup needs a *user* named nogroup, as with the reference's pwd.getpwnam(group).
  assert.deepEqual(chooseIds((n) => (n === "nobody" ? { uid: 99, gid: 99 } : undefined)), { uid: NOBODY_ID, gid: NOBODY_ID });
});

test("EPERM when not root is a warning, other failures are fatal", () => {
  const { log, lines } = recorder();
  const eperm = Object.assign(new Error("x"), { code: "EPERM" });
  const proc = { getuid: () => 1000, setgid: () => { throw eperm; }, setuid: () => {} };
  assert.equal(dropPrivileges(log, () => undefined, proc), undefined);
  assert.match(lines[0] ?? "", /^WARNING: Failed to setuid\/setgid to 65534:65534: Operation not permitted$/);
  const einval = Object.assign(new Error("x"), { code: "EINVAL" });
  assert.throws(() => dropPrivileges(log, () => undefined, { ...proc, setgid: () => {}, setuid: () => { throw einval; } }), { code: "MANDOS_SETUID" });
});

test("as root, the process and its earlier worker threads end up as the dropped user", { skip: process.getuid?.() !== 0 ? "needs root" : false }, () => {
  const privileges = new URL("../src/main/daemon/privileges.js", import.meta.url).href;
  const log = new URL("../src/main/daemon/log.js", import.meta.url).href;
  const script = `
    import { Worker } from "node:worker_threads";
    import { once } from "node:events";
    import { dropPrivileges } from ${JSON.stringify(privileges)};
    import { silentLogger } from ${JSON.stringify(log)};
    const w = new Worker("import('node:worker_threads').then(({ parentPort }) => parentPort.on('message', () => parentPort.postMessage([process.getuid(), process.getgid()])));", { eval: true });
    await once(w, "online");
    const ids = dropPrivileges(silentLogger, (n) => n === "nobody" || n === "nogroup" ? { uid: 65534, gid: 65534 } : undefined);
    w.postMessage("ids?");
    const [fromWorker] = await once(w, "message");
    console.log(JSON.stringify({ ids, main: [process.getuid(), process.getgid(), process.getgroups()], worker: fromWorker }));
    await w.terminate();
  `;
  const out = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 20000 })) as {
    ids: PasswdEntry; main: [number, number, number[]]; worker: [number, number];
  };
  assert.deepEqual(out.ids, { uid: 65534, gid: 65534 });
  assert.deepEqual(out.main, [65534, 65534, [65534]]);
  assert.deepEqual(out.worker, [65534, 65534]);
});

test("a clients.conf readable by others draws a loud warning", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-conf-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "clients.conf");
  writeFileSync(path, "[foo]\n");
  chmodSync(path, 0o640);
  const { log, lines } = recorder();
  assert.equal(checkClientsConfMode(path, log), true);
  chmodSync(path, 0o644);
  assert.equal(checkClientsConfMode(path, log), false);
  assert.match(lines.join("\n"), /^WARNING: .*clients\.conf is readable by all users \(mode 644\)/);
});
