// The checker host (src/main/clients/checker-host.ts): checkers run as
// children of a helper process, not of the server; exit codes and kills
// come back as from an in-process checker; a host that dies reports its
// checkers killed and is started again; one that cannot start leaves the
// checkers to the server; checkers due before allow() (privileges not
// yet dropped) wait for it; with enough clients the host starts when
// checkers are allowed, before the first is due; and a small installation
// starts its checkers in the server, without a host. Real /bin/sh processes throughout, and
// the real server at the end: with enough clients its checkers run in the
// host, with few in the server, as the user it drops to either way.

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CHECKER_HOST_MIN_CLIENTS, CheckerHost } from "../src/main/clients/checker-host.js";
import type { Logger } from "../src/main/daemon/log.js";
import { REPO, startServer } from "./helpers/server.js";
import { describeBuild, installedBuild, type BuildStamp } from "../src/build.js";
import { alive } from "./helpers/process.js";

function collect(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const add = (level: string) => (m: string): void => void lines.push(`${level}: ${m}`);
  return { lines, debug: add("DEBUG"), info: add("INFO"), warning: add("WARNING"), error: add("ERROR"), critical: add("CRITICAL") };
}

type Outcome = { code: number | null; signal: number | null };

/** Starts `command` on the host; resolves with its outcome. */
function run(host: CheckerHost, command: string): { outcome: Promise<Outcome>; kill: () => void } {
  let kill = (): void => {};
  const outcome = new Promise<Outcome>((resolve) => {
    kill = host.spawner(command, (code, signal) => resolve({ code, signal })).kill;
  });
  return { outcome, kill };
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

/** A host (allowed unless told otherwise) and a scratch directory, both gone after the test. */
function setUp(t: TestContext, options: { allow?: boolean; script?: string; worthIt?: () => boolean; build?: BuildStamp } = {}): { host: CheckerHost; dir: string; log: Logger & { lines: string[] } } {
  const dir = mkdtempSync(join(tmpdir(), "checker-host-"));
  const log = collect();
  const host = new CheckerHost({
    logger: log,
    ...(options.script === undefined ? {} : { script: options.script }),
    ...(options.worthIt === undefined ? {} : { worthIt: options.worthIt }),
    ...(options.build === undefined ? {} : { build: options.build }),
  });
  t.after(() => {
    host.close();
    rmSync(dir, { recursive: true, force: true });
  });
  if (options.allow !== false) host.allow();
  return { host, dir, log };
}

test("checkers run as children of the host, with their exit codes", async (t) => {
  const { host, dir } = setUp(t);
  const parent = join(dir, "ppid");
  assert.deepEqual(await run(host, `echo $PPID > ${parent}; exit 3`).outcome, { code: 3, signal: null });
  const ppid = Number(readFileSync(parent, "utf8"));
  assert.notEqual(ppid, process.pid);
  assert.equal(ppid, host.pid);
  // Many at once, each with its own code.
  const codes = await Promise.all(Array.from({ length: 40 }, (_, i) => run(host, `exit ${i}`).outcome));
  assert.deepEqual(codes.map((o) => o.code), Array.from({ length: 40 }, (_, i) => i));
  assert.deepEqual(await run(host, "/nonexistent/checker").outcome, { code: 127, signal: null });
});

test("kill() ends the checker's whole process group, reported as SIGTERM", async (t) => {
  const { host, dir } = setUp(t);
  const pidFile = join(dir, "sleeper");
  const checker = run(host, `sleep 30 & echo $! > ${pidFile}; wait`);
  await until("the checker's child runs", () => {
    try {
      return readFileSync(pidFile, "utf8").trim().length > 0;
    } catch {
      return false;
    }
  });
  const sleeper = Number(readFileSync(pidFile, "utf8"));
  assert.ok(alive(sleeper));
  checker.kill();
  assert.deepEqual(await checker.outcome, { code: null, signal: 15 });
  await until("the checker's child is gone", () => !alive(sleeper));
});

test("a host that dies reports its checkers killed, and the next checker starts a new host", async (t) => {
  const { host, log, dir } = setUp(t);
  const started = join(dir, "started");
  const long = run(host, `touch ${started}; sleep 30`);
  // The host is ready and runs the checker (not a fixed sleep: a loaded machine starts it later).
  await until("the checker runs in the host", () => existsSync(started));
  const first = host.pid!;
  process.kill(first, "SIGKILL");
  assert.deepEqual(await long.outcome, { code: null, signal: 9 });
  assert.ok(log.lines.some((l) => l.startsWith("WARNING: The checker host ended")), log.lines.join("\n"));
  assert.deepEqual(await run(host, "exit 0").outcome, { code: 0, signal: null });
  assert.ok(host.pid !== undefined && host.pid !== first);
});

test("a host of the server's build runs the checkers; they see nothing of the build it was given", async (t) => {
  const { host, dir } = setUp(t, { build: installedBuild() });
  const seen = join(dir, "seen");
  assert.deepEqual(await run(host, `echo "$PPID \${MANDOS_CHECKER_HOST_BUILD-unset}" > ${seen}`).outcome, { code: 0, signal: null });
  assert.equal(readFileSync(seen, "utf8"), `${host.pid} unset\n`);
});

test("a host whose files are another build than the server's says so and ends; checkers then start in the server", async (t) => {
  // The server's build as the host is told it; the host's files are this checkout's.
  const server = { version: "0.1.0", build: "0123456789ab" };
  assert.notEqual(installedBuild().build, server.build);
  const { host, dir, log } = setUp(t, { build: server });
  const first = host.pid!;
  // A checker sent to it before it said so: its outcome unknown, as from a host that died.
  assert.deepEqual(await run(host, "exit 0").outcome, { code: null, signal: 9 });
  assert.deepEqual(log.lines, [
    `WARNING: the checker host did not start: the installed mandos-ts is ${describeBuild(installedBuild())}, not this server's 0.1.0 (build 0123456789ab): restart mandos to run it; checkers start in the server process`,
  ]);
  await until("that host ends", () => !alive(first));
  const parent = join(dir, "ppid");
  assert.deepEqual(await run(host, `echo $PPID > ${parent}; exit 4`).outcome, { code: 4, signal: null });
  assert.equal(Number(readFileSync(parent, "utf8")), process.pid);
  assert.equal(host.pid, undefined, "no host is started again");
});

test("the host ignores the signals that stop the server; it ends when the server closes it", async () => {
  const host = new CheckerHost({ logger: collect() });
  host.allow();
  assert.deepEqual(await run(host, "exit 0").outcome, { code: 0, signal: null });
  const pid = host.pid!;
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.kill(pid, signal);
  await sleep(200);
  assert.ok(alive(pid), "the host survived SIGTERM, SIGINT and SIGHUP");
  host.close();
  await until("the host ends", () => !alive(pid));
});

test("a host that cannot start leaves the checkers to the server, with a warning", async (t) => {
  const broken = join(mkdtempSync(join(tmpdir(), "checker-host-")), "broken-host.js");
  t.after(() => rmSync(dirname(broken), { recursive: true, force: true }));
  writeFileSync(broken, "process.exit(5);\n");
  const { host, dir, log } = setUp(t, { script: broken });
  // The first checker went to the host that never came up.
  assert.deepEqual(await run(host, "exit 0").outcome, { code: null, signal: 9 });
  assert.ok(log.lines.some((l) => l.includes("the checker host ended before it was ready") && l.includes("checkers start in the server process")), log.lines.join("\n"));
  const parent = join(dir, "ppid");
  assert.deepEqual(await run(host, `echo $PPID > ${parent}; exit 4`).outcome, { code: 4, signal: null });
  assert.equal(Number(readFileSync(parent, "utf8")), process.pid);
});

test("checkers due before allow() wait for it, then run in the host; one killed meanwhile never runs", async (t) => {
  const { host, dir } = setUp(t, { allow: false });
  const parent = join(dir, "ppid");
  const ran = join(dir, "ran");
  let settled = false;
  const waiting = run(host, `echo $PPID > ${parent}; exit 2`);
  void waiting.outcome.then(() => (settled = true));
  const killed = run(host, `touch ${ran}`);
  killed.kill();
  assert.deepEqual(await killed.outcome, { code: null, signal: 15 });
  await sleep(200);
  assert.equal(settled, false, "a checker ran before allow()");
  assert.equal(host.pid, undefined);
  host.allow();
  assert.deepEqual(await waiting.outcome, { code: 2, signal: null });
  assert.equal(Number(readFileSync(parent, "utf8")), host.pid);
  assert.throws(() => readFileSync(ran), { code: "ENOENT" });
});

test("worth a host when checkers are allowed: it starts then, before any checker is due; not worth it: none starts", async (t) => {
  const worth = setUp(t, { allow: false });
  const few = setUp(t, { allow: false, worthIt: () => false });
  worth.host.allow();
  few.host.allow();
  const pid = worth.host.pid;
  assert.ok(pid !== undefined, "no host started");
  assert.ok(alive(pid));
  assert.equal(few.host.pid, undefined, "a host started for a few clients");
  // The first checker goes to that host, not to a new one.
  const parent = join(worth.dir, "ppid");
  assert.deepEqual(await run(worth.host, `echo $PPID > ${parent}`).outcome, { code: 0, signal: null });
  assert.equal(Number(readFileSync(parent, "utf8")), pid);
});

test("not worth a host (few clients): checkers start in the server; once it is, in a host that then stays", async (t) => {
  let worth = false;
  const { host, dir, log } = setUp(t, { worthIt: () => worth });
  const parent = join(dir, "ppid");
  assert.deepEqual(await run(host, `echo $PPID > ${parent}; exit 3`).outcome, { code: 3, signal: null });
  assert.equal(Number(readFileSync(parent, "utf8")), process.pid);
  assert.equal(host.pid, undefined, "a host was started");
  worth = true;
  assert.deepEqual(await run(host, `echo $PPID > ${parent}`).outcome, { code: 0, signal: null });
  const hostPid = host.pid;
  assert.ok(hostPid !== undefined);
  assert.equal(Number(readFileSync(parent, "utf8")), hostPid);
  worth = false;
  assert.deepEqual(await run(host, `echo $PPID > ${parent}`).outcome, { code: 0, signal: null });
  assert.equal(Number(readFileSync(parent, "utf8")), hostPid, "a running host was left for the server");
  assert.deepEqual(log.lines, []);
});

test("the host starts without the server's NODE_OPTIONS, and its checkers get them back", async (t) => {
  const { host, dir } = setUp(t, { allow: false });
  const marker = join(dir, "preloaded");
  const preload = join(dir, "preload.cjs");
  writeFileSync(preload, `require("node:fs").appendFileSync(${JSON.stringify(marker)}, process.pid + "\\n");\n`);
  const saved = process.env.NODE_OPTIONS;
  const options = `--require ${preload}`;
  // Set while the host starts (when checkers are allowed), then put back.
  process.env.NODE_OPTIONS = options;
  host.allow();
  const seen = join(dir, "seen");
  const checker = run(host, `printf '%s' "$NODE_OPTIONS" > ${seen}; printf '%s' "\${MANDOS_CHECKER_HOST_NODE_OPTIONS-unset}" >> ${seen}`);
  if (saved === undefined) delete process.env.NODE_OPTIONS;
  else process.env.NODE_OPTIONS = saved;
  assert.deepEqual(await checker.outcome, { code: 0, signal: null });
  assert.equal(readFileSync(seen, "utf8"), `${options}unset`, "the checker sees the server's NODE_OPTIONS, and nothing of ours");
  assert.throws(() => readFileSync(marker), { code: "ENOENT" }, "the server's preload ran in the host");
});

/**
 * The example's configuration with its one client checked every second,
 * the checker writing its uid and parent PID into `out`, and `fillers`
 * more clients that check once a day; the server on it.
 */
async function serverWithChecker(t: TestContext, fillers: number): Promise<{ server: Awaited<ReturnType<typeof startServer>>; out: string }> {
  const root = mkdtempSync(join(tmpdir(), "checker-host-server-"));
  const conf = join(root, "conf");
  const out = join(root, "out");
  mkdirSync(conf);
  mkdirSync(out);
  chmodSync(root, 0o755);
  chmodSync(out, 0o777);
  copyFileSync(join(REPO, "example", "mandos.conf"), join(conf, "mandos.conf"));
  const example = readFileSync(join(REPO, "example", "clients.conf"), "utf8");
  // The first checker runs within one interval of the start.
  const checker = `id -u > ${out}/uid; echo $PPID > ${out}/ppid`;
  const filler = (i: number): string =>
    `[filler-${i}]\nkey_id = ${i.toString(16).padStart(64, "0")}\nsecret = ${Buffer.from(`filler ${i}`).toString("base64")}\nchecker = true\ninterval = 1d\n`;
  const clients = example.replace(/^interval = .*$/m, "interval = 1s").replace(/^checker = .*$/m, `checker = ${checker.replaceAll("%", "%%")}`);
  writeFileSync(join(conf, "clients.conf"), [clients, ...Array.from({ length: fillers }, (_, i) => filler(i + 1))].join("\n"), { mode: 0o600 });
  const server = await startServer(["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::1"]);
  t.after(async () => {
    await server.stop();
    rmSync(root, { recursive: true, force: true });
  });
  await server.waitForLog(/Checker for demo succeeded/, 20_000);
  return { server, out };
}

function checkerUid(out: string): void {
  const uid = Number(readFileSync(join(out, "uid"), "utf8"));
  if (process.getuid?.() === 0) assert.notEqual(uid, 0, "the checker ran as root");
  else assert.equal(uid, process.getuid?.());
}

test(`with ${CHECKER_HOST_MIN_CLIENTS} clients the server's checkers run in the checker host, as the user the server drops to`, async (t) => {
  const { server, out } = await serverWithChecker(t, CHECKER_HOST_MIN_CLIENTS - 1);
  const ppid = Number(readFileSync(join(out, "ppid"), "utf8"));
  assert.notEqual(ppid, server.process.pid);
  assert.match(readFileSync(`/proc/${ppid}/cmdline`, "utf8"), /workers\/checker-host\.js/);
  assert.equal(readFileSync(`/proc/${ppid}/status`, "utf8").match(/^PPid:\s+(\d+)/m)?.[1], String(server.process.pid));
  checkerUid(out);
});

test(`with fewer than ${CHECKER_HOST_MIN_CLIENTS} clients the server starts its checkers itself, as the user it drops to; no host runs`, async (t) => {
  const { server, out } = await serverWithChecker(t, CHECKER_HOST_MIN_CLIENTS - 2);
  assert.equal(Number(readFileSync(join(out, "ppid"), "utf8")), server.process.pid);
  checkerUid(out);
  const children = readFileSync(`/proc/${server.process.pid}/task/${server.process.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
  for (const child of children) assert.doesNotMatch(readFileSync(`/proc/${child}/cmdline`, "utf8"), /workers\/checker-host\.js/);
});
