// Without systemd: the Debian mandos package's own sysvinit script
// (/etc/init.d/mandos, unchanged) starts, reports, restarts and stops our
// server once scripts/install-service.sh has written /etc/default/mandos.
// The script runs $DAEMON (/usr/sbin/mandos, the Python server, unless
// that file says otherwise), finds the server by its pid file and the
// process name "mandos", and keeps /run/mandos.pid. It runs here in a
// private mount namespace whose /etc/default and /run are the test's own,
// so neither this machine's files nor a server it runs are touched.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { oneClientConfig } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { BIN_MANDOS, REPO, run, runMandosClient, type ProcessResult } from "./helpers/server.js";
import { accepting, eventually, freePort } from "./helpers/wait.js";
import { alive } from "./helpers/process.js";

const INIT_SCRIPT = "/etc/init.d/mandos";

const skip = process.getuid?.() !== 0 ? "needs root (a mount namespace, the privilege drop)"
  : missing(INIT_SCRIPT, MANDOS_REFERENCE, MANDOS_CLIENT, "/usr/bin/unshare", "/usr/bin/nsenter");

test("Debian's /etc/init.d/mandos starts, restarts and stops our server", { skip, timeout: 180_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-sysvinit-"));
  chmodSync(root, 0o755);
  const { client, conf } = oneClientConfig(root);
  chmodSync(join(conf, "clients.conf"), 0o644);
  const state = join(root, "state");
  mkdirSync(state, { mode: 0o777 });
  chmodSync(state, 0o777);
  const port = await freePort();

  // /etc/default/mandos as install-service.sh leaves it (with our mandos
  // as DAEMON), and the test's own settings after it.
  const dest = join(root, "dest");
  const installed = await run("sh", [join(REPO, "scripts/install-service.sh")], 60_000, { DESTDIR: dest, MANDOS_BIN: BIN_MANDOS });
  assert.equal(installed.code, 0, installed.stderr);
  const defaults = join(dest, "etc/default/mandos");
  appendFileSync(defaults, `DAEMON_ARGS="--no-dbus --no-zeroconf --address ::1 --port ${port} --statedir ${state}"\nCONFIGDIR=${conf}\n`);

  // A namespace kept alive by a sleeping holder; each step enters it.
  const holder = spawn("unshare", ["--mount", "--propagation", "private", "sh", "-c",
    `mount -t tmpfs tmpfs /etc/default && cp '${defaults}' /etc/default/mandos && mount -t tmpfs tmpfs /run && echo ready && exec sleep 600`],
  { stdio: ["ignore", "pipe", "pipe"] });
  let holderOut = "";
  holder.stdout.on("data", (chunk: Buffer) => { holderOut += chunk.toString(); });
  holder.stderr.on("data", (chunk: Buffer) => { holderOut += chunk.toString(); });
  const inside = (args: readonly string[]): Promise<ProcessResult> => run("nsenter", ["-t", String(holder.pid), "-m", "--", ...args], 90_000);
  const pidFile = async (): Promise<number | undefined> => {
    const read = await inside(["cat", "/run/mandos.pid"]);
    const pid = Number(read.stdout.toString().trim());
    return read.code === 0 && Number.isInteger(pid) && pid > 0 ? pid : undefined;
  };
  const started: number[] = [];
  t.after(async () => {
    // Also one the pid file names that a failed step never saw.
    const last = holder.exitCode === null ? await pidFile() : undefined;
    for (const pid of [...started, ...(last === undefined ? [] : [last])]) if (alive(pid)) process.kill(pid, "SIGKILL");
    holder.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  });
  await eventually(() => holderOut.includes("ready") || holder.exitCode !== null, { what: "the mount namespace" });
  assert.equal(holderOut.trim(), "ready");

  const serves = async (): Promise<void> => {
    const served = await runMandosClient(client.dir, "::1", port);
    assert.equal(served.code, 0, served.stderr);
    assert.equal(served.stdout.toString(), client.password);
  };
  const ours = (pid: number): void => {
    // node running this checkout's bin/mandos, named "mandos": not python3.
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    assert.ok(argv.includes(BIN_MANDOS), argv.join(" "));
    assert.match(readFileSync(`/proc/${pid}/comm`, "utf8"), /^mandos\n$/);
    assert.doesNotMatch(argv[0]!, /python/);
  };

  const start = await inside([INIT_SCRIPT, "start"]);
  assert.equal(start.code, 0, start.stderr);
  const first = await eventually(pidFile, { what: "/run/mandos.pid" });
  started.push(first);
  ours(first);
  await serves();

  const status = await inside([INIT_SCRIPT, "status"]);
  assert.equal(status.code, 0, status.stdout.toString() + status.stderr);
  assert.match(status.stdout.toString(), /mandos is running/);

  // A second start finds the port taken: the first keeps serving, and the
  // pid file still names it (it is opened only once the listener is up).
  await inside([INIT_SCRIPT, "start"]);
  assert.equal(await pidFile(), first);
  assert.ok(alive(first));
  await serves();

  const restart = await inside([INIT_SCRIPT, "restart"]);
  assert.equal(restart.code, 0, restart.stderr);
  assert.match(restart.stdout.toString(), /Restarting .*: mandos\.$/m);
  assert.equal(alive(first), false, "the first server stopped");
  const second = await eventually(pidFile, { what: "/run/mandos.pid after the restart" });
  started.push(second);
  assert.notEqual(second, first);
  ours(second);
  await serves();

  const stop = await inside([INIT_SCRIPT, "stop"]);
  assert.equal(stop.code, 0, stop.stderr);
  await eventually(() => !alive(second), { what: "the server to exit" });
  assert.equal(await accepting("::1", port), false);
  assert.equal((await inside(["test", "-e", "/run/mandos.pid"])).code, 1, "the init script removed the pid file");
  const stopped = await inside([INIT_SCRIPT, "status"]);
  assert.equal(stopped.code, 3, stopped.stdout.toString());
  assert.ok(existsSync(join(state, "clients.json")), "the state was saved");
});
