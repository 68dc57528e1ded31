// The real bin/mandos without --foreground: the parent returns once the
// detached server listens, and /run/mandos.pid names a live process that
// has dropped root. And bin/mandos as installed runs with its exec line's
// V8 heap caps (docs/OPERATION.md, "Memory"), the detached server too.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultPidFilePath } from "../src/main/daemon/pidfile.js";
import { alive } from "./helpers/process.js";

const BIN = new URL("../../bin/mandos", import.meta.url).pathname;
const PID_FILE = defaultPidFilePath();
/** Debian's init script stops and reloads the server with it (dpkg's). */
const START_STOP_DAEMON = "/usr/sbin/start-stop-daemon";

/** The pid in an existing pid file when that process lives (a stale file, left by a server that could not remove it, is overwritten). */
function runningServer(): number | null {
  if (!existsSync(PID_FILE)) return null;
  const pid = Number(readFileSync(PID_FILE, "utf8").trim());
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
}

const other = process.getuid?.() === 0 ? runningServer() : null;
const skip = process.getuid?.() !== 0 ? "needs root (privilege drop, /run)" : other !== null ? `${PID_FILE} names process ${other}: another server runs` : false;

test("a daemonised bin/mandos writes a pid file naming a live process owned by the dropped user", { skip }, (t) => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-daemon-"));
  let pid = 0;
  t.after(() => {
    if (pid > 0 && alive(pid)) process.kill(pid, "SIGKILL");
    rmSync(PID_FILE, { force: true });
    rmSync(root, { recursive: true, force: true });
  });
  const conf = join(root, "conf");
  mkdirSync(conf);
  mkdirSync(join(root, "state"));
  writeFileSync(join(conf, "clients.conf"), "");
  // Relative directories mean what they meant where mandos was started.
  const r = spawnSync(BIN, ["--configdir", "conf", "--statedir", "state", "--port", "0", "--address", "::1", "--no-zeroconf", "--no-dbus"],
    { cwd: root, encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  pid = Number(readFileSync(PID_FILE, "utf8").trim());
  assert.ok(Number.isInteger(pid) && pid > 0);
  assert.ok(alive(pid));
  assert.equal(readlinkSync(`/proc/${pid}/cwd`), "/");
  // As the reference's daemon() leaves it: in a session it does not lead
  // (it forks twice), standard input, output and error /dev/null read-write.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const session = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]);
  assert.notEqual(session, pid, "the detached server is not a session leader");
  for (const fd of [0, 1, 2]) {
    assert.equal(readlinkSync(`/proc/${pid}/fd/${fd}`), "/dev/null");
    const flags = /^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))?.[1];
    assert.equal(Number.parseInt(flags ?? "", 8) & 0o3, 0o2, `fd ${fd} is O_RDWR (flags ${flags})`);
  }
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const uid = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
  const gid = /^Gid:\s+(\d+)\s+(\d+)/m.exec(status);
  assert.notEqual(uid?.[1], "0", "real uid dropped");
  assert.notEqual(uid?.[2], "0", "effective uid dropped");
  assert.notEqual(gid?.[2], "0", "effective gid dropped");
  // The detached server is started with the parent's node flags (the exec line's).
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  for (const flag of ["--max-old-space-size=1024", "--max-semi-space-size=2", "--heap-growing-percent=30", "--no-memory-reducer"]) assert.ok(argv.includes(flag), `${flag} in ${argv.join(" ")}`);
  // Named "mandos", as the reference's process is (its command line above
  // unchanged): Debian's init script stops it with start-stop-daemon
  // --name mandos, which found "node" and nothing to stop.
  assert.equal(readFileSync(`/proc/${pid}/comm`, "utf8"), "mandos\n");
  if (existsSync(START_STOP_DAEMON)) {
    const stopped = spawnSync(START_STOP_DAEMON, ["--stop", "--quiet", "--pidfile", PID_FILE, "--name", "mandos", "--retry", "10"], { encoding: "utf8", timeout: 30_000 });
    assert.equal(stopped.status, 0, `start-stop-daemon found nothing to stop: ${stopped.stderr}`);
    assert.equal(alive(pid), false);
  }
});

test("bin/mandos, run as installed, caps V8's heap at 1 GiB of old generation and 2 MiB semi-spaces, growing 1.3 times between full collections, without the memory reducer", (t) => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-heap-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const preload = join(root, "heap.cjs");
  writeFileSync(preload, 'process.stdout.write("HEAP " + require("node:v8").getHeapStatistics().heap_size_limit + " " + process.execArgv.join(" ") + "\\n");\n');
  const r = spawnSync(BIN, ["--version"], { env: { ...process.env, NODE_OPTIONS: `--require ${preload}` }, encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const limit = /^HEAP (\d+) (.*)$/m.exec(r.stdout);
  assert.ok(limit, r.stdout);
  // V8's limit is the old generation's plus the young generation's: three
  // semi-spaces in Node 20's V8 (6 MiB with 2 MiB each; 48 with the default
  // 16, and ~4 GiB of old generation by default on this machine).
  const mib = Number(limit[1]) / 2 ** 20;
  assert.ok(mib >= 1024 && mib <= 1024 + 8, `heap limit ${mib} MiB`);
  // V8 shows no growth factor and no memory reducer; the flags reach it as
  // node's own (not NODE_OPTIONS, which refuses them). Without the second,
  // V8's idle collection after a wave throws the compiled code away.
  for (const flag of ["--heap-growing-percent=30", "--no-memory-reducer"]) assert.ok(limit[2]!.split(" ").includes(flag), `${flag} in ${limit[2]}`);
});

// Below Node.js 18.20 our modules fail with a page of trace (Node 16:
// "Unknown file extension" for bin/mandos itself) or run where they were
// never tested: bin/mandos says so in one line before it starts node. The
// nodes here are stand-ins that only answer --version; the real ones each
// release runs on are test/runtimes.test.ts's.
test("bin/mandos refuses a Node.js older than 18.20, or none, in one line", (t) => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-oldnode-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const withNode = (version: string | null): ReturnType<typeof spawnSync> => {
    const dir = join(root, version ?? "none");
    mkdirSync(dir);
    if (version !== null) writeFileSync(join(dir, "node"), `#!/bin/sh\n[ "$1" = --version ] && echo ${version} && exit 0\necho "node ${version} ran: $*"\n`, { mode: 0o755 });
    return spawnSync("/bin/sh", [BIN, "--version"], { env: { PATH: dir }, encoding: "utf8", timeout: 30_000 });
  };
  for (const version of ["v16.20.2", "v18.19.1", "v12.22.12", "v8.17.0"]) {
    const r = withNode(version);
    assert.equal(r.status, 1, `${version}: ${String(r.stdout)}`);
    assert.equal(r.stderr, `mandos: mandos-ts needs Node.js 18.20 or later; the node on PATH is ${version}\n`);
    assert.equal(r.stdout, "", "node never ran");
  }
  const none = withNode(null);
  assert.equal(none.status, 1);
  assert.equal(none.stderr, "mandos: mandos-ts needs Node.js 18.20 or later; the node on PATH is not there\n");
  for (const version of ["v18.20.4", "v20.9.0", "v26.1.0", "v100.0.0"]) {
    const r = withNode(version);
    assert.equal(r.stderr, "", version);
    assert.match(String(r.stdout), new RegExp(`^node ${version.replace(/\./g, "\\.")} ran: .*${BIN} --version$`, "m"));
  }
});
