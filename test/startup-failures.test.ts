// The real bin/mandos refuses to start on bad input as the reference does:
// it exits 1 promptly (not hanging on an open syslog socket or a detached
// child left behind), and its message names the file, line and key, without
// the secret.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { createServer } from "node:net";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually } from "./helpers/wait.js";

const BIN = new URL("../../bin/mandos", import.meta.url).pathname;
const SECRET_TEXT = "c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhaw";

/** Pids of processes whose command line mentions `marker`. */
function processesMentioning(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(marker)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function setUp(clientsConf: string, mandosConf = "[DEFAULT]\n"): { root: string; conf: string; state: string } {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-startfail-"));
  const conf = join(root, "conf");
  const state = join(root, "state");
  mkdirSync(conf);
  mkdirSync(state);
  writeFileSync(join(conf, "mandos.conf"), mandosConf);
  writeFileSync(join(conf, "clients.conf"), clientsConf, { mode: 0o600 });
  return { root, conf, state };
}

/** bin/mandos on ::1 (port 0 unless `extra` names one), killed if it is still running after 20 s. */
function run(conf: string, state: string, ...extra: string[]): SpawnSyncReturns<string> {
  const port = extra.includes("--port") ? [] : ["--port", "0"];
  return spawnSync(BIN, ["--configdir", conf, "--statedir", state, "--no-zeroconf", "--no-dbus", ...port, "--address", "::1", ...extra],
    { encoding: "utf8", timeout: 20_000, killSignal: "SIGKILL" });
}

const DUPLICATE = `[host1]\nkey_id = ${"ab".repeat(32)}\nsecret = ${SECRET_TEXT}\nsecret = ${SECRET_TEXT}\n`;

for (const mode of ["--foreground", "detached"] as const) {
  test(`a duplicate option in clients.conf: exit 1 at once, ${mode}, naming file, line and key`, async (t) => {
    const { root, conf, state } = setUp(DUPLICATE);
    t.after(() => {
      for (const pid of processesMentioning(root)) process.kill(pid, "SIGKILL");
      rmSync(root, { recursive: true, force: true });
    });
    const r = run(conf, state, ...(mode === "detached" ? [] : [mode]));
    assert.equal(r.signal, null, "the server hung instead of exiting");
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${join(conf, "clients.conf").replace(/[.]/g, "\\.")}:4 \\[host1\\] key "secret"`));
    assert.ok(!r.stderr.includes(SECRET_TEXT), "the error message carries the secret");
    // A detached child reports its failure and then exits: give it 5 s.
    await eventually(() => processesMentioning(root).length === 0, { what: "no server process left behind", timeoutMs: 5_000, context: () => processesMentioning(root).join("\n") });
  });
}

// As the reference: clients.conf is read after daemon()'s chdir("/"), so a
// relative secfile of a detached server is taken from "/", though it is
// there in the directory the server was started in.
test("a relative secfile, detached: taken from /, so not found; exit 1 naming the path tried", async (t) => {
  const { root, conf, state } = setUp(`[host1]\nkey_id = ${"ab".repeat(32)}\nsecfile = mandos-ts-secfile-test/pw\n`);
  t.after(() => {
    for (const pid of processesMentioning(root)) process.kill(pid, "SIGKILL");
    rmSync(root, { recursive: true, force: true });
  });
  mkdirSync(join(root, "mandos-ts-secfile-test"));
  writeFileSync(join(root, "mandos-ts-secfile-test", "pw"), "pw");
  const r = spawnSync(BIN, ["--configdir", conf, "--statedir", state, "--no-zeroconf", "--no-dbus", "--port", "0", "--address", "::1"],
    { encoding: "utf8", timeout: 20_000, killSignal: "SIGKILL", cwd: root });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /clients\.conf:3 \[host1\] key "secfile": cannot read secfile "\/mandos-ts-secfile-test\/pw"/);
  await eventually(() => processesMentioning(root).length === 0, { what: "no server process left behind", timeoutMs: 5_000 });
});

test("a malformed mandos.conf line: exit 1 naming file, line and key", (t) => {
  const { root, conf, state } = setUp("", "[DEFAULT]\nport = 1\nport = 2\n");
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const r = run(conf, state, "--foreground");
  assert.equal(r.signal, null, "the server hung instead of exiting");
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /mandos\.conf:3 \[DEFAULT\] key "port"/);
});

// Values mandos.conf parses but the server checks only when it merges
// them with the command line: the error names the file, line and key,
// or the option, as a parse error does.
for (const [key, value, detail] of [
  ["debuglevel", "bogus", /unknown debug level "bogus"/],
  ["priority", "NORMAL:+FOO", /bad priority string: .*"\+FOO"/],
  ["metrics", "bogus", /not HOST:PORT/],
  ["etcd_key", "k.pem", /needs etcd_cert/],
] as const) {
  test(`a bad ${key} in mandos.conf: exit 1 naming file, line and key; on the command line, the option`, (t) => {
    const { root, conf, state } = setUp("", `[DEFAULT]\n# a comment\netcd = http://[::1]:1\n${key} = ${value}\n`);
    t.after(() => rmSync(root, { recursive: true, force: true }));
    const fromFile = run(conf, state, "--foreground");
    assert.equal(fromFile.status, 1, fromFile.stderr);
    assert.ok(fromFile.stderr.startsWith(`mandos: ${join(conf, "mandos.conf")}:4 [DEFAULT] key "${key}": `), fromFile.stderr);
    assert.match(fromFile.stderr, detail);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\netcd = http://[::1]:1\n");
    const fromLine = run(conf, state, "--foreground", `--${key}`, value);
    assert.equal(fromLine.status, 1, fromLine.stderr);
    assert.ok(fromLine.stderr.startsWith(`mandos: --${key}: `), fromLine.stderr);
    assert.match(fromLine.stderr, detail);
  });
}

// (A NUL cannot be given on a command line: from the file only.)
test("a NUL in mandos.conf's servicename, which Avahi's D-Bus API cannot carry: exit 1 naming file, line and key", (t) => {
  const { root, conf, state } = setUp("", "[DEFAULT]\nservicename = Man\0dos\n");
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const r = run(conf, state, "--foreground");
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stderr, `mandos: ${join(conf, "mandos.conf")}:2 [DEFAULT] key "servicename": a NUL character, which D-Bus cannot carry\n`);
});

test("--check reads mandos.conf and clients.conf as a start does: the first error of each, file, line and key, fails it", (t) => {
  const { root, conf } = setUp(`[DEFAULT]\n\n[host1]\nkey_id = ${"ab".repeat(32)}\nsecret = ${SECRET_TEXT}\nsecret = ${SECRET_TEXT}\n`, "[DEFAULT]\n# c\npriority = NORMAL:+FOO\n");
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const check = (): SpawnSyncReturns<string> => spawnSync(BIN, ["--check", "--configdir", conf], { encoding: "utf8", timeout: 60_000 });
  const broken = check();
  assert.equal(broken.status, 1, broken.stdout + broken.stderr);
  assert.match(broken.stdout, new RegExp(`^FAILED: settings: ${join(conf, "mandos.conf").replace(/[.]/g, "\\.")}:3 \\[DEFAULT\\] key "priority": bad priority string`, "m"));
  assert.match(broken.stdout, new RegExp(`^FAILED: clients.conf: ${join(conf, "clients.conf").replace(/[.]/g, "\\.")}:6 \\[host1\\] key "secret"`, "m"));
  assert.ok(!broken.stdout.includes(SECRET_TEXT), "the check prints the secret");
  writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
  writeFileSync(join(conf, "clients.conf"), `[host1]\nkey_id = ${"ab".repeat(32)}\nsecret = c2VjcmV0\n`);
  const fixed = check();
  assert.equal(fixed.status, 0, fixed.stdout + fixed.stderr);
  assert.match(fixed.stdout, /^ok: settings: /m);
  assert.match(fixed.stdout, /^ok: clients\.conf: .* 1 client$/m);
  // Without mandos.conf, the defaults, and why the file was not read.
  rmSync(join(conf, "mandos.conf"));
  assert.match(check().stdout, new RegExp(`^ok: settings: the defaults \\(${join(conf, "mandos.conf").replace(/[.]/g, "\\.")} cannot be read: No such file or directory\\) and`, "m"));
});

// Neither stops a start since 2026-12-07 (each is tried again while the
// server serves), so --check is where such a mistake shows before it.
test("--check tries the audit log and the metrics address as the server's user: warnings, not failures; nothing made", async (t) => {
  const { root, conf } = setUp("", "[DEFAULT]\n");
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
  t.after(() => squatter.close());
  const port = (squatter.address() as { port: number }).port;
  // mkdtemp's 0700 would keep the server's user out of the whole tree (EACCES, not the ENOENT looked for).
  chmodSync(root, 0o755);
  const audit = join(root, "logs", "audit.jsonl");
  writeFileSync(join(conf, "mandos.conf"), `[DEFAULT]\naudit_log = ${audit}\nmetrics = 127.0.0.1:${port}\n`);
  const check = (): SpawnSyncReturns<string> => spawnSync(BIN, ["--check", "--configdir", conf, "--no-restore"], { encoding: "utf8", timeout: 60_000 });
  const held = check();
  assert.equal(held.status, 0, held.stdout + held.stderr);
  assert.match(held.stdout, new RegExp(`^WARNING: audit log: ${audit.replace(/[.]/g, "\\.")} cannot be opened by \\d+:\\d+: No such file or directory \\(ENOENT\\); a start serves without it`, "m"));
  assert.match(held.stdout, new RegExp(`^WARNING: metrics: \\d+:\\d+ cannot listen on "127\\.0\\.0\\.1", port ${port}: Address already in use \\(EADDRINUSE\\) \\(held now: `, "m"));
  await new Promise<void>((resolve) => squatter.close(() => resolve()));
  mkdirSync(join(root, "logs"), { mode: 0o777 });
  chmodSync(join(root, "logs"), 0o777);
  const fine = check();
  assert.equal(fine.status, 0, fine.stdout + fine.stderr);
  assert.match(fine.stdout, new RegExp(`^ok: audit log: ${audit.replace(/[.]/g, "\\.")} can be opened for appending by \\d+:\\d+$`, "m"));
  assert.match(fine.stdout, new RegExp(`^ok: metrics: \\d+:\\d+ can listen on "127\\.0\\.0\\.1", port ${port}$`, "m"));
  assert.deepEqual(readdirSync(join(root, "logs")), [], "the check made no audit file");
});

// Found by session 56's configuration fuzz: --check run from the
// configuration directory read a relative secfile from there and said ok;
// the service, started from "/", refused to start on it.
test("--check reads a relative secfile where a start reads it, and says so; a client without keys is a warning, not a failure", (t) => {
  const { root, conf } = setUp("", "[DEFAULT]\n");
  t.after(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(join(conf, "secret.bin"), "secret");
  writeFileSync(join(conf, "clients.conf"), `[host1]\nkey_id = ${"ab".repeat(32)}\nsecfile = secret.bin\n\n[newhost]\nkey_id =\nfingerprint =\nsecret =\n`);
  const check = (...args: string[]): SpawnSyncReturns<string> => spawnSync(BIN, ["--check", "--configdir", conf, ...args], { encoding: "utf8", timeout: 60_000, cwd: conf });
  const detached = check();
  assert.equal(detached.status, 1, detached.stdout + detached.stderr);
  assert.match(detached.stdout, /^FAILED: clients\.conf: .*clients\.conf:3 \[host1\] key "secfile": cannot read secfile "\/secret\.bin"/m);
  const foreground = check("--foreground");
  assert.equal(foreground.status, 0, foreground.stdout + foreground.stderr);
  assert.match(foreground.stdout, /^ok: clients\.conf: .* 2 clients$/m);
  assert.ok(foreground.stdout.includes(`WARNING: clients.conf: ${join(conf, "clients.conf")}:3 [host1]: secfile "secret.bin" is relative: a start reads it from its working directory, "/" when it detaches or runs under systemd; checked as ${join(conf, "secret.bin")}\n`), foreground.stdout);
  assert.ok(foreground.stdout.includes("WARNING: clients.conf: Client newhost has neither key_id nor fingerprint: no peer can match it, it is never served\n"), foreground.stdout);
});

test("a bad priority string: exit 1 naming the bad token", (t) => {
  const { root, conf, state } = setUp("");
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const r = run(conf, state, "--foreground", "--priority", "SECURE128:+NO-SUCH-THING");
  assert.equal(r.signal, null, "the server hung instead of exiting");
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /bad priority string: .*NO-SUCH-THING/);
});

test("a port already taken: exit 1 saying it could not listen", async (t) => {
  const { root, conf, state } = setUp("");
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "::1", resolve));
  t.after(() => {
    blocker.close();
    rmSync(root, { recursive: true, force: true });
  });
  const port = (blocker.address() as { port: number }).port;
  const r = run(conf, state, "--foreground", "--port", String(port));
  assert.equal(r.signal, null, "the server hung instead of exiting");
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /could not listen: .*(EADDRINUSE|in use)/i);
});
