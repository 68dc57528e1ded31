// Signals left ignored by whoever starts the server stay ignored, as in the
// reference: a script's background job (`mandos --foreground &`) starts with
// SIGINT and SIGQUIT ignored, and a Ctrl-C in that terminal must not stop
// it. Node resets them to their defaults before any script runs; bin/mandos
// run as a program hands them over (src/main/daemon/inherited-signals.ts).
// The reference (/usr/sbin/mandos) is run the same way as the oracle.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseIgnoredMask } from "../src/main/daemon/inherited-signals.js";
import { MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { startPrivateBus } from "./helpers/private-bus.js";
import { BIN_MANDOS } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

interface Ended { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly log: string }

/**
 * True once no signal waits for the process to take it: it has been
 * delivered (to Node's handler, which queued it for the event loop in the
 * order delivered) or discarded as ignored.
 */
function nonePending(pid: number): boolean {
  try {
    return /^ShdPnd:\s+0+$/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return true; // gone
  }
}

/**
 * `program` in the foreground under `sh -c`, with `ignore` ignored by a
 * trap before the exec (as a non-interactive shell starts a background
 * job); once it listens, `signals` are sent to it one by one, each taken
 * before the next is sent, then SIGTERM, or, when `endsItself`, nothing
 * more: the last one is to end it. (A SIGTERM sent while it is ending
 * anyway may come after Node has closed its signal handlers, and kill it.)
 */
async function signalled(program: string, port: number, ignore: string, signals: readonly NodeJS.Signals[], env: NodeJS.ProcessEnv, endsItself = false): Promise<Ended> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-sigign-"));
  chmodSync(root, 0o755);
  const conf = join(root, "conf");
  const state = join(root, "state");
  mkdirSync(conf, { mode: 0o755 });
  mkdirSync(state, { mode: 0o777 });
  chmodSync(state, 0o777);
  writeFileSync(join(conf, "clients.conf"), "", { mode: 0o644 });
  const args = ["--foreground", "--debug", "--no-zeroconf", "--no-dbus", "--address", "::1", "--port", String(port), "--configdir", conf, "--statedir", state];
  const child = spawn("sh", ["-c", `trap '' ${ignore}; exec "$0" "$@"`, program, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let log = "";
  const ended = new Promise<Ended>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal, log })));
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    await new Promise<void>((resolve) => {
      const onData = (d: Buffer): void => {
        log += d.toString("utf8");
        if (/Now listening on address/.test(log)) resolve();
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      void ended.then(() => resolve());
    });
    assert.match(log, /Now listening on address/, `${program} did not start:\n${log}`);
    for (const signal of signals) {
      child.kill(signal);
      await eventually(() => nonePending(child.pid!), { what: `${program} took ${signal}` });
    }
    if (!endsItself) child.kill("SIGTERM");
    return await ended;
  } finally {
    clearTimeout(killer);
    rmSync(root, { recursive: true, force: true });
  }
}

test("the ignored-signal mask from /proc's SigIgn: the signals kept ignored, and nothing from garbage", () => {
  // SIGINT, SIGQUIT, SIGPIPE, SIGXFSZ: what the reference shows as a background job.
  assert.deepEqual([...parseIgnoredMask("0000000001001006")].sort(), ["SIGINT", "SIGQUIT"]);
  // SIGHUP (nohup) and SIGTERM are handled whatever was inherited, as the reference's GLib does.
  assert.deepEqual([...parseIgnoredMask("4001")], []);
  assert.deepEqual([...parseIgnoredMask("800")], ["SIGUSR2"]);
  for (const garbage of [undefined, "", "xyz", "0x6", "-6"]) assert.deepEqual([...parseIgnoredMask(garbage)], [], String(garbage));
});

const skip = missing(MANDOS_REFERENCE) || (process.getuid?.() !== 0 ? "needs root (the reference's privilege drop)" : false);

test("started with SIGINT and SIGQUIT ignored, both stay ignored; SIGTERM still stops it, as the reference", { skip, timeout: 180_000 }, async (t) => {
  const bus = await startPrivateBus();
  t.after(() => bus.stop());
  const env = { DBUS_SYSTEM_BUS_ADDRESS: bus.address };
  const reference = await signalled(MANDOS_REFERENCE, 21520, "INT QUIT", ["SIGINT", "SIGQUIT"], env);
  const ours = await signalled(BIN_MANDOS, 21521, "INT QUIT", ["SIGINT", "SIGQUIT"], env);
  for (const [who, ended] of [["reference", reference], ["ours", ours]] as const) {
    assert.deepEqual([ended.code, ended.signal], [0, null], `${who}:\n${ended.log}`);
    assert.doesNotMatch(ended.log, /KeyboardInterrupt/, who);
    assert.match(ended.log, /Server exiting/, who);
  }
  // Not ignored by whoever started it, SIGINT alone stops it, as a
  // KeyboardInterrupt, with no SIGTERM after it.
  const control = await signalled(BIN_MANDOS, 21522, "QUIT", ["SIGINT"], env, true);
  assert.deepEqual([control.code, control.signal], [0, null], control.log);
  assert.match(control.log, /Server received KeyboardInterrupt/);
});
