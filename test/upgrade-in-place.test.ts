// Upgrading in place (src/build.ts, docs/OPERATION.md "Upgrades"): `npm
// install -g` of another tarball replaces the files under a running
// server. The server keeps running its own build and says so: the stamp
// of the files installed now is read at each SIGHUP (and every minute),
// named by --version and in the metrics; the pieces it starts later
// (handshake workers, the checker host, serve threads) check their files'
// stamp against the server's and, if it differs, do not run mixed with it,
// while the real mandos-client still gets its secret. And going back: a
// state file of a later version stops the start rather than be lost.
//
// Each test runs a copy of this checkout's built server from a scratch
// directory. "Another build" is a copy whose stamp says another build; a
// piece restarted after an install is the same code reading the same
// stamp, so to have every late piece load another build's files without
// waiting for one to die, the server's copy has its `dist/src/workers`
// pointing into the other copy (Node loads a module from its real path).

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BuildStamp } from "../src/build.js";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { eventually } from "./helpers/wait.js";
import { REPO, run, runMandosClient, startServer, type RunningServer } from "./helpers/server.js";

const skip = missing(MANDOS_CLIENT);
const OTHER: BuildStamp = { version: "0.1.0", build: "bbbbbbbbbbbb" };

/** A copy of the built server under `dir`, stamped `stamp`: what `npm install -g` lays out, but the dependencies linked. */
function installCopy(dir: string, stamp: BuildStamp): void {
  mkdirSync(join(dir, "dist"), { recursive: true });
  cpSync(join(REPO, "bin"), join(dir, "bin"), { recursive: true });
  cpSync(join(REPO, "dist", "src"), join(dir, "dist", "src"), { recursive: true });
  cpSync(join(REPO, "package.json"), join(dir, "package.json"));
  symlinkSync(join(REPO, "node_modules"), join(dir, "node_modules"));
  symlinkSync(join(REPO, "build"), join(dir, "build"));
  stampCopy(dir, stamp);
}

/** Stamps the copy `stamp`, written beside and renamed over, as an install replaces a file. */
function stampCopy(dir: string, stamp: BuildStamp): void {
  writeFileSync(join(dir, "dist", "src", "build.json.tmp"), `${JSON.stringify(stamp)}\n`);
  renameSync(join(dir, "dist", "src", "build.json.tmp"), join(dir, "dist", "src", "build.json"));
}

/** A copy stamped "aaaaaaaaaaaa" whose src/workers are those of a copy stamped OTHER. */
function copyWithOtherWorkers(root: string): string {
  const copy = join(root, "mandos-ts");
  const other = join(root, "mandos-ts-other");
  installCopy(copy, { version: "0.1.0", build: "aaaaaaaaaaaa" });
  installCopy(other, OTHER);
  rmSync(join(copy, "dist", "src", "workers"), { recursive: true });
  symlinkSync(join(other, "dist", "src", "workers"), join(copy, "dist", "src", "workers"));
  return copy;
}

/**
 * A scratch root readable by the user the server drops to, holding the
 * example's configuration (its one client checked every second, the
 * checker writing its parent's PID into out/ppid) and `fillers` more
 * clients checked once a day (a hundred clients in all get a checker host).
 */
function scratch(t: TestContext, fillers = 0): { root: string; conf: string; state: string; out: string; stopFirst: (server: RunningServer) => void } {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-upgrade-"));
  // The servers first: after hooks run in the order given, and one still
  // running would make its state directory again as it saves at its stop.
  const servers: RunningServer[] = [];
  t.after(async () => {
    for (const server of servers) await server.stop();
    rmSync(root, { recursive: true, force: true });
  });
  chmodSync(root, 0o755);
  const conf = join(root, "conf");
  const state = join(root, "state");
  const out = join(root, "out");
  for (const d of [conf, state, out]) mkdirSync(d);
  chmodSync(out, 0o777);
  cpSync(join(REPO, "example", "mandos.conf"), join(conf, "mandos.conf"));
  const checker = `echo $PPID > ${out}/ppid`;
  const example = readFileSync(join(REPO, "example", "clients.conf"), "utf8")
    .replace(/^interval = .*$/m, "interval = 1s")
    .replace(/^checker = .*$/m, `checker = ${checker.replaceAll("%", "%%")}`);
  const filler = (i: number): string =>
    `[filler-${i}]\nkey_id = ${i.toString(16).padStart(64, "0")}\nsecret = ${Buffer.from(`filler ${i}`).toString("base64")}\nchecker = true\ninterval = 1d\n`;
  writeFileSync(join(conf, "clients.conf"), [example, ...Array.from({ length: fillers }, (_, i) => filler(i + 1))].join("\n"), { mode: 0o600 });
  return { root, conf, state, out, stopFirst: (server) => void servers.push(server) };
}

async function secretServed(server: RunningServer): Promise<void> {
  const got = await runMandosClient(join(REPO, "example", "client"), "::1", server.port, 30_000);
  assert.equal(got.stdout.toString(), readFileSync(join(REPO, "example", "client", "password"), "utf8"), got.stderr);
}

/** The sample lines of one metric in the server's /metrics. */
async function metric(port: number, name: string): Promise<string[]> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

test("another build installed under a running server: said at SIGHUP, in --version and the metrics; the server goes on serving its own", { skip }, async (t) => {
  // A hundred clients: the server runs a checker host (clients/checker-host.ts).
  const { root, conf, state, out, stopFirst } = scratch(t, 99);
  const mine: BuildStamp = { version: "0.1.0", build: "aaaaaaaaaaaa" };
  const copy = join(root, "mandos-ts");
  installCopy(copy, mine);
  const server = await startServer(["--configdir", conf, "--statedir", state, "--no-restore", "--port", "0", "--address", "::1", "--metrics", ":0"], {}, { bin: join(copy, "bin", "mandos") });
  stopFirst(server);
  const metricsPort = Number(/Serving \/metrics and \/health on "127\.0\.0\.1", port (\d+)/.exec(server.log())?.[1]);
  assert.deepEqual(await metric(metricsPort, "mandos_build_info"), ['mandos_build_info{version="0.1.0",build="aaaaaaaaaaaa"} 1']);
  assert.deepEqual(await metric(metricsPort, "mandos_restart_needed"), ["mandos_restart_needed 0"]);
  // The checker host has loaded (it reads its files as it starts): a checker ran in it.
  const ppid = join(out, "ppid");
  await eventually(() => existsSync(ppid) && Number(readFileSync(ppid, "utf8")) === checkerHostOf(server), { what: "a checker ran in the checker host" });

  // npm install -g of another tarball.
  stampCopy(copy, OTHER);
  const version = await run(join(copy, "bin", "mandos"), ["--version"], 30_000);
  assert.equal(version.stdout.toString(), "mandos 1.8.16 (mandos-ts 0.1.0, build bbbbbbbbbbbb)\n", "--version names the build installed");
  // The page may be a second old (observe/metrics-page.ts).
  await eventually(async () => (await metric(metricsPort, "mandos_restart_needed"))[0] === "mandos_restart_needed 1", { what: "mandos_restart_needed 1" });
  assert.deepEqual(await metric(metricsPort, "mandos_build_info"), ['mandos_build_info{version="0.1.0",build="aaaaaaaaaaaa"} 1'], "the build it runs");
  server.process.kill("SIGHUP");
  await server.waitForLog(/The installed mandos-ts is 0\.1\.0 \(build bbbbbbbbbbbb\), not this server's 0\.1\.0 \(build aaaaaaaaaaaa\): restart mandos to run it/);
  await secretServed(server);
  // Said once a change: a second SIGHUP with the same files says nothing more.
  server.process.kill("SIGHUP");
  server.process.kill("SIGHUP");
  await secretServed(server);
  // The checker host dies (say, killed); the one started again on the next
  // checker loads the new build's files, says so and ends; the server
  // starts the checkers itself.
  const host = checkerHostOf(server);
  assert.ok(host !== undefined, "a checker host runs");
  process.kill(host, "SIGKILL");
  await server.waitForLog(/the checker host did not start: the installed mandos-ts is 0\.1\.0 \(build bbbbbbbbbbbb\), not this server's 0\.1\.0 \(build aaaaaaaaaaaa\): restart mandos to run it; checkers start in the server process/);
  rmSync(ppid, { force: true });
  await eventually(() => existsSync(ppid), { what: "a checker ran" });
  assert.equal(Number(readFileSync(ppid, "utf8")), server.process.pid, "the server started the checker");

  // The way back: the server's own build installed again.
  stampCopy(copy, mine);
  server.process.kill("SIGHUP");
  await server.waitForLog(/The installed mandos-ts is this server's build again/);
  assert.deepEqual(await metric(metricsPort, "mandos_restart_needed"), ["mandos_restart_needed 0"]);
  assert.equal(server.log().match(/The installed mandos-ts is 0\.1\.0/g)?.length, 1, server.log());
});

test("handshake workers and a checker host of another build do not run: the server does their work, says so, and serves the real client", { skip }, async (t) => {
  // A hundred clients: the server starts a checker host (clients/checker-host.ts).
  const { root, conf, state, out, stopFirst } = scratch(t, 99);
  const copy = copyWithOtherWorkers(root);
  const says = "the installed mandos-ts is 0.1.0 (build bbbbbbbbbbbb), not this server's 0.1.0 (build aaaaaaaaaaaa): restart mandos to run it";

  const server = await startServer(["--configdir", conf, "--statedir", state, "--no-restore", "--port", "0", "--address", "::1", "--workers", "1", "--serve-threads", "0", "--metrics", ":0"], {}, { bin: join(copy, "bin", "mandos") });
  stopFirst(server);
  await server.waitForLog(new RegExp(`A handshake worker did not start: ${escape(says)}; handshakes run on the main thread$`, "m"));
  await server.waitForLog(new RegExp(`the checker host did not start: ${escape(says)}; checkers start in the server process`));
  await secretServed(server);
  await secretServed(server);
  // The checker ran, and the server started it (no host between).
  await server.waitForLog(/Checker for demo succeeded/);
  assert.equal(Number(readFileSync(join(out, "ppid"), "utf8")), server.process.pid);
  assert.equal(server.log().match(/A handshake worker did not start/g)?.length, 1, "said once");
  const metricsPort = Number(/Serving \/metrics and \/health on "127\.0\.0\.1", port (\d+)/.exec(server.log())?.[1]);
  assert.deepEqual(await metric(metricsPort, "mandos_handshake_workers"), ["mandos_handshake_workers 0"], "no worker thread serves");
  assert.deepEqual(await metric(metricsPort, "mandos_restart_needed"), ["mandos_restart_needed 0"], "what is installed is its build; its workers' files are not");
});

test("serve threads of another build: the server does not start, and says why", { skip }, async (t) => {
  const { root, conf, state } = scratch(t);
  const copy = copyWithOtherWorkers(root);
  const r = await run(process.execPath, [join(copy, "bin", "mandos"), "--debug", "--no-dbus", "--no-zeroconf", "--configdir", conf, "--statedir", state, "--no-restore", "--port", "0", "--address", "::1", "--serve-threads", "2"], 60_000);
  assert.notEqual(r.code, 0, "it did not serve");
  assert.notEqual(r.code, null, "it ended by itself");
  assert.match(r.stderr, /the installed mandos-ts is 0\.1\.0 \(build bbbbbbbbbbbb\), not this server's 0\.1\.0 \(build aaaaaaaaaaaa\): restart mandos to run it/);
});

test("going back to an earlier mandos-ts: a state file of a later version stops the start, untouched; --no-restore starts from clients.conf", { skip }, async (t) => {
  const { conf, state, stopFirst } = scratch(t);
  const file = join(state, "clients.json");
  const later = '{"format":"mandos-ts-state","version":2,"saved":"2027-01-01T00:00:00.000Z","clients":{"demo":{"enabled":false}}}\n';
  writeFileSync(file, later, { mode: 0o600 });
  const args = ["--debug", "--no-dbus", "--no-zeroconf", "--configdir", conf, "--statedir", state, "--port", "0", "--address", "::1"];
  const r = await run(process.execPath, [join(REPO, "bin", "mandos"), ...args], 60_000);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`mandos: ${escape(file)} is of a later mandos-ts \\(state version 2; this one reads version 1\\): run that version, or start with --no-restore`));
  assert.equal(readFileSync(file, "utf8"), later, "the file is as it was");
  const server = await startServer(["--configdir", conf, "--statedir", state, "--port", "0", "--address", "::1", "--no-restore"]);
  stopFirst(server);
  await secretServed(server);
});

/** The PID of the server's checker host, if one runs. */
function checkerHostOf(server: RunningServer): number | undefined {
  const pid = server.process.pid!;
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  return children.find((child) => {
    try {
      return readFileSync(`/proc/${child}/cmdline`, "utf8").includes("workers/checker-host.js");
    } catch {
      return false; // ended meanwhile
    }
  });
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
