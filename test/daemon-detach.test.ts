// Detaching (src/main/daemon/daemonize.ts): the parent waits for the child's readiness,
// the child's session, directory and standard streams, and every way a start can fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnDetached } from "../src/main/daemon/daemonize.js";
import { DaemonStartError } from "../src/main/daemon/errors.js";
import { alive } from "./helpers/process.js";

const daemonize = new URL("../src/main/daemon/daemonize.js", import.meta.url).href;

/** A child that imports our child-side API, runs `body`, then stays up or exits. */
function childArgs(body: string): string[] {
  return ["--input-type=module", "-e", `import * as d from ${JSON.stringify(daemonize)};\n${body}`];
}

/** Fields 4-6 of /proc/PID/stat: parent, process group, session. */
function ids(pid: number): { ppid: number; pgrp: number; session: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const [ppid, pgrp, session] = stat.slice(stat.lastIndexOf(")") + 2).split(" ").slice(1, 4).map(Number);
  return { ppid: ppid!, pgrp: pgrp!, session: session! };
}

// As the reference's daemon() leaves it (fork, setsid, fork again): in a
// new session whose leader has exited, so that opening a terminal can never
// make it the server's controlling terminal; the pid it reports is the
// server's own.
test("resolves only after the child is ready; the child runs at / in a new session it does not lead, adopted", async (t) => {
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
      setTimeout(() => { writeFileSync(${JSON.stringify(marker)}, process.pid + " " + process.cwd()); d.notifyReady(); }, 200);
      setInterval(() => {}, 1000);`),
  });
  assert.ok(existsSync(marker), "the listener was up before spawnDetached resolved");
  assert.equal(readFileSync(marker, "utf8"), `${pid} /`);
  assert.ok(alive(pid));
  const server = ids(pid);
  assert.notEqual(server.session, pid, "not a session leader");
  assert.notEqual(server.session, ids(process.pid).session, "in a session of its own");
  assert.equal(server.pgrp, server.session, "in its session's first process group, as after the reference's second fork");
  assert.notEqual(server.ppid, server.session, "its parent, the session's leader, has gone");
});

// The reference's daemon() opens os.devnull O_RDWR and dup2()s it onto all
// three (libuv's "ignore" gave a read-only standard input).
test("the child's standard input, output and error are /dev/null opened read-write", async (t) => {
  let pid = 0;
  t.after(() => {
    if (pid !== 0 && alive(pid)) process.kill(pid, "SIGKILL");
  });
  pid = await spawnDetached({ command: process.execPath, args: childArgs(`d.notifyReady(); setInterval(() => {}, 1000);`) });
  for (const fd of [0, 1, 2]) {
    assert.equal(readlinkSync(`/proc/${pid}/fd/${fd}`), "/dev/null");
    const flags = /^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))?.[1];
    assert.equal(Number.parseInt(flags ?? "", 8) & 0o3, 0o2, `fd ${fd} is O_RDWR (flags ${flags})`);
  }
});

test("fails with the child's own message when it cannot start", async () => {
  await assert.rejects(spawnDetached({ command: process.execPath, args: childArgs(`d.notifyFailed("Address already in use"); process.exit(1);`) }),
    (err: unknown) => err instanceof DaemonStartError && err.code === "MANDOS_DAEMON_START" && err.message === "Address already in use");
});

test("fails when the child dies without a word", async () => {
  await assert.rejects(spawnDetached({ command: process.execPath, args: childArgs(`process.exit(3);`) }),
    { code: "MANDOS_DAEMON_START", message: "daemon exited before it was ready" });
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

test("fails, saying so, when the server's command cannot be started at all", async () => {
  await assert.rejects(spawnDetached({ command: "/nonexistent/mandos", args: [] }),
    { code: "MANDOS_DAEMON_START", message: "cannot start daemon (exit code 1)" });
});
