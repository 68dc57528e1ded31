// The state file as bin/mandos starts and stops with it (docs/STATE.md),
// from an audit against the reference: a damaged clients.json, or one
// value in it out of range, stops the start with a clear error instead of a
// fresh start that brought back clients disabled or removed at run time
// (or a crash, at every start, a moment after listening); temporary files
// that an interrupted save left are removed; a checker's success waits for
// a routine save instead of rewriting the file each second; a final save
// that fails is said, and is a failure exit; "No clients defined" counts
// the clients restored, as the reference's does.

import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO, run, startServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";
import { NOT_STARTED } from "../src/main/state/state-file.js";

interface Setup {
  readonly root: string;
  readonly conf: string;
  readonly state: string;
  readonly statePath: string;
}

/** A configuration of clients `names` (keys and secrets made up: no client connects), its state directory, removed after `body`. */
async function withSetup(names: readonly string[], extra: string, body: (s: Setup) => Promise<void>): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-state-start-"));
  try {
    const conf = join(root, "conf");
    const state = join(root, "state");
    mkdirSync(conf);
    mkdirSync(state);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    const sections = names.map((name, i) => `[${name}]\nkey_id = ${String(i + 1).padStart(64, "a")}\nsecret = c2VjcmV0LW9mLSR7bmFtZX0=\nhost = ${name}.example\n`);
    writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n${extra}\n${sections.join("\n")}`);
    await body({ root, conf, state, statePath: join(state, "clients.json") });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const serverArgs = (s: Setup, ...more: string[]): string[] => ["--configdir", s.conf, "--statedir", s.state, "--port", "0", "--address", "::1", ...more];

/** Starts and stops a server once, so that clients.json is as ours writes it. */
async function savedOnce(s: Setup): Promise<Record<string, unknown>> {
  const server = await startServer(serverArgs(s));
  await eventually(() => existsSync(s.statePath), { what: "clients.json saved" });
  assert.equal(await server.stop(), 0);
  return JSON.parse(readFileSync(s.statePath, "utf8")) as Record<string, unknown>;
}

/** Runs bin/mandos in the foreground without D-Bus: its exit code and standard error. */
async function startOnce(s: Setup, ...more: string[]): Promise<{ code: number | null; stderr: string }> {
  return run(process.execPath, [`${REPO}bin/mandos`, "--foreground", "--no-dbus", "--no-zeroconf", ...serverArgs(s, ...more)], 20_000);
}

test("a damaged clients.json stops the start, naming it, and is left as it was; --check fails on it; --no-restore starts from clients.conf", () =>
  withSetup(["alpha"], "", async (s) => {
    await savedOnce(s);
    const damaged = readFileSync(s.statePath, "utf8").slice(0, 100);
    writeFileSync(s.statePath, damaged);
    const start = await startOnce(s);
    assert.equal(start.code, 1, start.stderr);
    assert.ok(start.stderr.includes(`Could not load persistent state from ${s.statePath}: not valid JSON; ${NOT_STARTED} (the file is then replaced)`), start.stderr);
    assert.equal(readFileSync(s.statePath, "utf8"), damaged);
    const check = await run(process.execPath, [`${REPO}bin/mandos`, "--check", ...serverArgs(s)]);
    assert.notEqual(check.code, 0);
    assert.match(check.stdout.toString("utf8"), /^FAILED: state: Could not load persistent state from .*clients\.json: not valid JSON;/m);
    const fresh = await startServer(serverArgs(s, "--no-restore"));
    try {
      await fresh.waitForLog(/WARNING: Not restoring state \(--no-restore\): .*clients\.json is not read, and the first save replaces it/);
      await eventually(() => readFileSync(s.statePath, "utf8") !== damaged, { what: "the file replaced" });
    } finally {
      assert.equal(await fresh.stop(), 0);
    }
  }));

test("a value out of range stops the start with the client and value named, where it once crashed after listening, at every start", () =>
  withSetup(["alpha", "bravo"], "", async (s) => {
    const state = await savedOnce(s);
    const check = await run(process.execPath, [`${REPO}bin/mandos`, "--check", ...serverArgs(s)]);
    assert.match(check.stdout.toString("utf8"), /^ok: state: .*clients\.json restores 2 clients$/m);
    const clients = state.clients as Record<string, { runtime: Record<string, unknown> }>;
    delete clients.bravo!.runtime.created;
    writeFileSync(s.statePath, JSON.stringify(state));
    const start = await startOnce(s);
    assert.equal(start.code, 1, start.stderr);
    assert.match(start.stderr, /Could not load persistent state from .*clients\.json: client "bravo": runtime\.created is missing or not a valid value; not started/);
    assert.doesNotMatch(start.stderr, /Now listening|RangeError/);
  }));

/** The names of the steps of a start's "Serving N clients ... after the process started:" line. */
function startSteps(line: string): string[] {
  const steps = line.slice(line.indexOf("started: ") + "started: ".length);
  return [...steps.matchAll(/(?:^|, )([^,]+?) \d+ ms/g)].map((m) => m[1]!);
}

test("a start says in one DEBUG line, once serving, where its time went: each step, from the process's start", () =>
  withSetup(["alpha", "bravo"], "", async (s) => {
    await savedOnce(s);
    const server = await startServer(serverArgs(s));
    try {
      await server.waitForLog(/DEBUG: Starting main loop/);
      const lines = server.log().split("\n").filter((l) => l.includes("after the process started: "));
      assert.equal(lines.length, 1, server.log());
      const line = lines[0]!;
      assert.match(line, /DEBUG: Serving 2 clients \d+ ms after the process started: loading \d+ ms, /);
      assert.deepEqual(startSteps(line), [
        "loading", "settings", "clients.conf", "state file", "restore", "registry", "modules and garbage collection",
        "handshake workers and listening socket", "privileges and state directory", "metrics and audit log", "checkers and expiry timers",
      ]);
      // Said once serving: after "Now listening", just before the reference's "Starting main loop".
      const log = server.log();
      assert.ok(log.indexOf("Now listening") < log.indexOf(line), log);
      assert.ok(log.indexOf(line) < log.indexOf("Starting main loop"), log);
    } finally {
      assert.equal(await server.stop(), 0);
    }
  }));

test("temporary files that an interrupted save left are removed at start, and said; one of a running process is left", () =>
  withSetup(["alpha"], "", async (s) => {
    // 99999999 is past any pid Linux gives (4,194,304 at most).
    const stale = ".clients.json.99999999.0badf00d.tmp";
    const live = `.clients.json.${process.pid}.0123abcd.tmp`;
    // This test's pid too, but written before it started: the pid used again (after a reboot, say).
    const reused = `.clients.json.${process.pid}.0000beef.tmp`;
    const other = ".clients.json.99999999.notours.tmp";
    for (const name of [stale, live, reused, other]) writeFileSync(join(s.state, name), "{}");
    utimesSync(join(s.state, reused), new Date("2000-01-01"), new Date("2000-01-01"));
    const server = await startServer(serverArgs(s));
    try {
      const line = await server.waitForLog(new RegExp(`INFO: Removed 2 temporary state files that an interrupted save left in ${s.state}: .*`));
      assert.deepEqual(line.slice(line.lastIndexOf(": ") + 2).split(", ").sort(), [stale, reused].sort());
      assert.deepEqual(readdirSync(s.state).filter((n) => n.endsWith(".tmp")).sort(), [live, other].sort());
    } finally {
      assert.equal(await server.stop(), 0);
    }
  }));

test("a checker's success waits for a routine save: the file is not rewritten at each one", () =>
  withSetup(["alpha"], "interval = PT1S\n", async (s) => {
    const server = await startServer(serverArgs(s));
    try {
      // The first success changes the checker status (-2, never ran, to 0): saved within a second, as it should be.
      const saved = (): { clients: { alpha: { runtime: { last_checker_status: number } } } } | null => {
        try {
          return JSON.parse(readFileSync(s.statePath, "utf8")) as { clients: { alpha: { runtime: { last_checker_status: number } } } };
        } catch {
          return null;
        }
      };
      await eventually(() => saved()?.clients.alpha.runtime.last_checker_status === 0, { what: "the first success saved" });
      const first = statSync(s.statePath, { bigint: true }).mtimeNs;
      const succeeded = (): number => server.log().match(/Checker for alpha succeeded/g)?.length ?? 0;
      const before = succeeded();
      // Seconds of successes, one a second: each was once saved a second later.
      await eventually(() => succeeded() >= before + 4, { what: "four checker successes", timeoutMs: 20_000 });
      await new Promise((r) => setTimeout(r, 1_500));
      assert.equal(statSync(s.statePath, { bigint: true }).mtimeNs, first, "the file was rewritten for a checker's success");
    } finally {
      assert.equal(await server.stop(), 0);
    }
    // At the stop, the last success is saved.
    const saved = JSON.parse(readFileSync(s.statePath, "utf8")) as { clients: { alpha: { runtime: { last_checked_ok: string | null } } } };
    assert.notEqual(saved.clients.alpha.runtime.last_checked_ok, null);
  }));

test("a final save that fails is said at ERROR, and the exit is a failure", { skip: process.getuid?.() !== 0 ? "needs root: the server drops to another user, whom the state directory is then closed to" : false }, () =>
  withSetup(["alpha"], "", async (s) => {
    const server = await startServer(serverArgs(s));
    let code: number | null;
    try {
      await eventually(() => existsSync(s.statePath), { what: "the first save" });
      // Closed to the user the server runs as (the test's helper opened it to everyone).
      chmodSync(s.state, 0o555);
    } finally {
      code = await server.stop();
      chmodSync(s.state, 0o755);
    }
    assert.ok(server.log().includes(`ERROR: Could not save persistent state as the server stops: Permission denied (${s.statePath}); the changes since the last save are lost`), server.log());
    assert.equal(code, 1);
  }));

test("'No clients defined' counts the clients restored: all removed at run time is none, as the reference says", () =>
  withSetup(["alpha"], "", async (s) => {
    const state = await savedOnce(s);
    // As a save after mandos-ctl --remove alpha writes it.
    state.clients = {};
    state.removed = ["alpha"];
    writeFileSync(s.statePath, JSON.stringify(state), { mode: 0o600 });
    const server = await startServer(serverArgs(s));
    try {
      await server.waitForLog(/WARNING: No clients defined/);
      assert.doesNotMatch(server.log(), /Could not read/);
    } finally {
      await server.stop();
    }
  }));

test("clients.conf that cannot be read stops the start, naming it and the errno, and the saved state is left as it was; --check fails on it", () =>
  withSetup(["alpha"], "", async (s) => {
    await savedOnce(s);
    const saved = readFileSync(s.statePath, "utf8");
    const clientsConf = join(s.conf, "clients.conf");
    // A directory in its place (EISDIR), as config management may leave it.
    renameSync(clientsConf, `${clientsConf}.aside`);
    mkdirSync(clientsConf);
    const start = await startOnce(s);
    assert.equal(start.code, 1, start.stderr);
    assert.ok(start.stderr.includes(`Could not read ${clientsConf}: Is a directory (EISDIR); not started`), start.stderr);
    assert.doesNotMatch(start.stderr, /Now listening/);
    assert.equal(readFileSync(s.statePath, "utf8"), saved);
    const check = await run(process.execPath, [`${REPO}bin/mandos`, "--check", ...serverArgs(s)]);
    assert.notEqual(check.code, 0);
    assert.match(check.stdout.toString("utf8"), /^FAILED: clients\.conf: Could not read .*clients\.conf: Is a directory \(EISDIR\); not started/m);
  }));

test("a missing clients.conf stops the start while the state holds clients (one removed at run time counts), and starts with none on a fresh install", () =>
  withSetup(["alpha", "bravo"], "", async (s) => {
    const state = await savedOnce(s);
    // bravo removed at run time (mandos-ctl --remove): it must stay removed when clients.conf is back.
    delete (state.clients as Record<string, unknown>).bravo;
    state.removed = ["bravo"];
    writeFileSync(s.statePath, JSON.stringify(state), { mode: 0o600 });
    const saved = readFileSync(s.statePath, "utf8");
    const clientsConf = join(s.conf, "clients.conf");
    renameSync(clientsConf, `${clientsConf}.aside`);
    const start = await startOnce(s);
    assert.equal(start.code, 1, start.stderr);
    assert.ok(start.stderr.includes(`Could not read ${clientsConf}: No such file or directory (ENOENT); not started, since ${s.statePath} holds 2 clients`), start.stderr);
    assert.equal(readFileSync(s.statePath, "utf8"), saved);
    const check = await run(process.execPath, [`${REPO}bin/mandos`, "--check", ...serverArgs(s)]);
    assert.notEqual(check.code, 0);
    assert.match(check.stdout.toString("utf8"), /^FAILED: state: Could not read .*clients\.conf: No such file or directory \(ENOENT\); not started, since .* holds 2 clients/m);
    // A fresh install: nothing saved (neither ours nor the Python server's file), no clients.conf yet.
    rmSync(s.statePath);
    rmSync(join(s.state, "clients.pickle"));
    const fresh = await startServer(serverArgs(s));
    try {
      await fresh.waitForLog(/WARNING: No clients defined/);
    } finally {
      assert.equal(await fresh.stop(), 0);
    }
  }));

test("a --statedir that is a file stops the start saying so, not as a state file in it that cannot be read", () =>
  withSetup(["alpha"], "", async (s) => {
    rmSync(s.state, { recursive: true });
    writeFileSync(s.state, "not a directory\n");
    const start = await startOnce(s);
    assert.equal(start.code, 1, start.stderr);
    assert.ok(start.stderr.includes(`the state directory ${s.state} is not a directory; not started`), start.stderr);
    assert.doesNotMatch(start.stderr, /clients\.pickle/);
  }));

/** `text` matched as it is in a RegExp. */
const inPattern = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Runs the server in a mount namespace of its own, where `dir` is a read-only bind mount of itself (a file system not yet remounted read-write early in boot). */
const readOnlyIn = (dir: string): string[] => ["unshare", "--mount", "--propagation", "private", "sh", "-c", `mount --bind '${dir}' '${dir}' && mount -o remount,bind,ro '${dir}' && exec "$@"`, "sh"];
const needsMounts = process.getuid?.() !== 0 ? "needs root: a mount namespace, and a read-only bind mount in it" : false;

test("a state directory read-only at start is tried again every 10 s, and saved to once it is writable; /health recovers", { skip: needsMounts }, () =>
  withSetup(["alpha"], "", async (s) => {
    const server = await startServer(serverArgs(s, "--metrics", "127.0.0.1:0"), {}, { wrap: readOnlyIn(s.state) });
    let code: number | null;
    try {
      const port = Number(/Serving \/metrics and \/health on "127\.0\.0\.1", port (\d+)/.exec(server.log())?.[1]);
      const health = async (): Promise<string> => {
        const res = await fetch(`http://127.0.0.1:${port}/health`);
        return `${res.status} ${await res.text()}`;
      };
      await server.waitForLog(new RegExp(`WARNING: Cannot keep persistent state in ${s.state}: Read-only file system; state is not saved until it can be, tried again every 10 s`));
      await server.waitForLog(new RegExp(`WARNING: Could not save persistent state: Read-only file system \\(${inPattern(s.statePath)}\\)`));
      assert.match(await health(), /^503 .*state/);
      // As the boot remounts it read-write.
      const remount = await run("nsenter", ["-t", String(server.process.pid), "-m", "mount", "-o", "remount,bind,rw", s.state]);
      assert.equal(remount.code, 0, remount.stderr);
      await server.waitForLog(/INFO: Saved persistent state to .*clients\.json again, after \d+ failed saves?/, 30_000);
      assert.ok(existsSync(s.statePath));
      assert.match(await health(), /^200 /);
    } finally {
      code = await server.stop();
    }
    assert.equal(code, 0, server.log());
  }));

test("a state directory that cannot be made from start to stop: the real errno, not ENOENT, and the stop fails at ERROR with exit 1", { skip: needsMounts }, () =>
  withSetup(["alpha"], "", async (s) => {
    // Missing, under a read-only parent: Node's mkdir -p says ENOENT there.
    const statedir = join(s.state, "var", "lib", "mandos");
    const server = await startServer(["--configdir", s.conf, "--statedir", statedir, "--port", "0", "--address", "::1"], {}, { wrap: readOnlyIn(s.state) });
    let code: number | null;
    try {
      await server.waitForLog(new RegExp(`WARNING: Cannot keep persistent state in ${statedir}: Read-only file system;`));
      await server.waitForLog(new RegExp(`WARNING: Could not save persistent state: Read-only file system \\(${inPattern(join(statedir, "clients.json"))}\\)`));
    } finally {
      code = await server.stop();
    }
    assert.ok(server.log().includes(`ERROR: Could not save persistent state as the server stops: Read-only file system (${join(statedir, "clients.json")}); the changes since the last save are lost`), server.log());
    assert.equal(code, 1);
  }));
