import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnDetached } from "../src/main/daemon/daemonize.js";
import { DaemonStartError } from "../src/main/daemon/errors.js";

const daemonize = new URL("../src/main/daemon/daemonize.js", import.meta.url).href;

/** A child that imports our child-side API, runs `body`, then stays up or exits. */
function childArgs(body: string): string[] {
  return ["--input-type=module", "-e", `import * as d from ${JSON.stringify(daemonize)};\n${body}`];
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

test("resolves only after the child is ready, and the child runs in its own session at /", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-detach-"));
  const marker = join(dir, "listening");
  let pid = 0;
  t.after(() => {
    if (pid !== 0 && alive(pid)) process.kill(pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  pid = await spawnDetached({
    command: process.execPath,
    args: childArgs(`
      import { writeFileSync } from "node:fs";
      setTimeout(() => { writeFileSync(${JSON.stringify(marker)}, process.cwd()); d.notifyReady(); }, 200);
      setInterval(() => {}, 1000);`),
  });
  assert.ok(existsSync(marker), "the listener was up before spawnDetached resolved");
  assert.equal(readFileSync(marker, "utf8"), "/");
  assert.ok(alive(pid));
  // Field 6 of /proc/PID/stat is the session id: setsid() makes it the pid.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const session = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]);
  assert.equal(session, pid);
});

test("fails with the child's own message when it cannot start", async () => {
  await assert.rejects(spawnDetached({ command: process.execPath, args: childArgs(`d.notifyFailed("Address already in use"); process.exit(1);`) }),
    (err: unknown) => err instanceof DaemonStartError && err.code === "MANDOS_DAEMON_START" && err.message === "Address already in use");
});

test("fails when the child dies without a word", async () => {
  await assert.rejects(spawnDetached({ command: process.execPath, args: childArgs(`process.exit(3);`) }),
    { code: "MANDOS_DAEMON_START", message: "daemon exited before it was ready (exit code 3)" });
});

test("the parent-side daemonize exits 1 and prints the child's error", async () => {
  const script = `import * as d from ${JSON.stringify(daemonize)};
    if (d.isDaemonChild()) { d.notifyFailed("cannot bind"); process.exit(1); }
    await d.daemonize();`;
  const { spawnSync } = await import("node:child_process");
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 20000 });
  assert.equal(r.status, 1);
  assert.equal(r.stderr, "mandos: cannot bind\n");
});

test("warnings the child sends before it is ready reach the parent's stderr, and it still starts", async () => {
  const script = `import * as d from ${JSON.stringify(daemonize)};
    if (d.isDaemonChild()) {
      d.notifyWarning("the datagram addon does not load; until then, no syslog");
      d.notifyWarning("two\\nlines");
      d.notifyReady();
      setTimeout(() => process.exit(0), 200);
    } else await d.daemonize();`;
  const { spawnSync } = await import("node:child_process");
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 20000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "mandos: the datagram addon does not load; until then, no syslog\nmandos: two lines\n");
});
