// A SIGHUP in the server's first moments (a `systemctl reload` just after
// a start) must not kill it: it is held from the first module bin/mandos
// loads (src/main/daemon/early-hangup.ts) and applied once the server
// listens. Before, the first holder went in only after main.js's whole
// module graph had loaded and run, some 0.4 s after exec, and a SIGHUP
// until then ended the server ("Hangup", nothing logged).
//
// Timers alone cannot aim at that window on a busy machine, so the test
// watches /proc/PID/status. It starts bin/mandos as installed (its shell
// line, then node) with SIGQUIT ignored, as a script's background job:
// process-guards.ts keeps an inherited ignore with a listener of its own,
// so the node process catches SIGQUIT from the moment that first module
// runs, and it must catch SIGHUP by then too (before the fix, SIGHUP came
// some 50 ms of module evaluation later, on a busy machine). A SIGHUP sent
// then, or a little later, is survived and reloads clients.conf once the
// server listens. (SIGUSR1 cannot be the mark: Node's inspector catches it
// during Node's own start.) That start, between Node's reset of every
// signal to its default and the first line of JavaScript, stays out of
// reach (docs/OPERATION.md, "Signals").

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { BIN_MANDOS } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const SIGHUP_BIT = 1n << BigInt(constants.signals.SIGHUP - 1);
const SIGQUIT_BIT = 1n << BigInt(constants.signals.SIGQUIT - 1);

/** SigCgt (the signals the process catches) once it is node, not bin/mandos's shell; null before. */
function caughtByNode(pid: number): bigint | null {
  try {
    if (readlinkSync(`/proc/${pid}/exe`) !== process.execPath) return null;
    const line = /^SigCgt:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return line === null ? null : BigInt(`0x${line[1]!}`);
  } catch {
    return null;
  }
}

interface Outcome { readonly hupCaughtWithQuit: boolean; readonly log: string; readonly alive: boolean }

/** bin/mandos run as installed, SIGQUIT ignored; SIGHUP `delayMs` after its node process catches SIGQUIT. */
async function hangUpEarly(delayMs: number): Promise<Outcome> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-early-hup-"));
  chmodSync(root, 0o755); // run as root, the server reads clients.conf at SIGHUP as _mandos
  const conf = join(root, "conf");
  const state = join(root, "state");
  mkdirSync(conf, { mode: 0o755 });
  mkdirSync(state);
  chmodSync(state, 0o777);
  writeFileSync(join(conf, "clients.conf"), "", { mode: 0o644 });
  const args = ["--debug", "--no-zeroconf", "--no-dbus", "--address", "::1", "--port", "0", "--configdir", conf, "--statedir", state];
  const child = spawn("sh", ["-c", `trap '' QUIT; exec "$0" "$@"`, BIN_MANDOS, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout.on("data", (d: Buffer) => void (log += d.toString("utf8")));
  child.stderr.on("data", (d: Buffer) => void (log += d.toString("utf8")));
  let exited = false;
  child.on("exit", () => void (exited = true));
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    const pid = child.pid!;
    // A tight loop: the window before the fix was tens of milliseconds.
    let caught: bigint | null = null;
    const deadline = Date.now() + 30_000;
    while (!exited && Date.now() < deadline) {
      caught = caughtByNode(pid);
      if (caught !== null && (caught & SIGQUIT_BIT) !== 0n) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.ok(caught !== null && (caught & SIGQUIT_BIT) !== 0n, `never saw the server catch SIGQUIT; log:\n${log}`);
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    child.kill("SIGHUP");
    await eventually(() => exited || /Reloaded clients\.conf: /.test(log), { what: "the reload, or the end", timeoutMs: 30_000 });
    return { hupCaughtWithQuit: (caught & SIGHUP_BIT) !== 0n, log, alive: !exited };
  } finally {
    if (!exited) {
      const ended = new Promise((resolve) => child.on("exit", resolve));
      child.kill("SIGTERM");
      await ended;
    }
    clearTimeout(killer);
    rmSync(root, { recursive: true, force: true });
  }
}

for (const delayMs of [0, 5, 30]) {
  test(`a SIGHUP ${delayMs} ms after the first module ran is held: the server lives, listens and reloads once`, async () => {
    const outcome = await hangUpEarly(delayMs);
    assert.ok(outcome.alive, `killed by the SIGHUP; log:\n${outcome.log}`);
    assert.ok(outcome.hupCaughtWithQuit, "SIGHUP was not caught yet when the first module had run");
    assert.match(outcome.log, /Now listening on address/);
    assert.equal(outcome.log.match(/Reloaded clients\.conf: /g)?.length, 1, outcome.log);
    // Listening came first: the reload was held, then applied.
    assert.ok(outcome.log.indexOf("Now listening") < outcome.log.indexOf("Reloaded clients.conf"), outcome.log);
  });
}
