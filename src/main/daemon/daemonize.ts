// Detaching, as the reference's daemon() does it (fork, setsid, fork
// again; chdir "/"; /dev/null opened read-write on 0, 1 and 2). Node cannot
// fork(), so the parent spawns a small intermediate in a new session
// (setsid via detached), which spawns the server's own command line and
// exits at once: the server is then in a session whose leader is gone, and
// can never acquire a controlling terminal (credentials(7)). The parent
// waits on a readiness pipe (fd 3 of the server, or the next number free
// when --socket's descriptor, kept at its number, is 3): it exits 0 once
// the server says its listener is up, non-zero with the server's message
// when it cannot start. The server learns the fd from MANDOS_READY_FD.
// Before either, the server may send warnings meant for whoever started it
// (its own stderr is /dev/null): the parent prints them.

import { spawn } from "node:child_process";
import { closeSync, constants, openSync, writeSync } from "node:fs";
import { DaemonStartError } from "./errors.js";
import { inheritedIgnoresEnv } from "./inherited-signals.js";

export const READY_FD_ENV = "MANDOS_READY_FD";

/**
 * The intermediate (CommonJS, for `node -e`): argv is the descriptors to
 * pass on at their numbers (comma-separated), the command, its arguments.
 * It starts the server with its own 0, 1, 2 and those, and exits; the
 * server, in its session but not its leader, is adopted by init. Exit 1
 * when the command cannot be started (the parent reports that).
 */
const INTERMEDIATE = `"use strict";
const [fds, command, ...args] = process.argv.slice(1);
const stdio = [0, 1, 2];
for (const fd of fds.split(",").filter(Boolean).map(Number)) { while (stdio.length < fd) stdio.push("ignore"); stdio[fd] = fd; }
let child;
try { child = require("node:child_process").spawn(command, args, { stdio }); } catch { process.exit(1); }
child.on("error", () => process.exit(1));
if (child.pid !== undefined) process.exit(0);`;

export interface DetachOptions {
  /** Program and arguments; default: this process's own command line. */
  command?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /**
   * Descriptors the child keeps at the same numbers (`--socket FD`: a
   * listening socket its starter passed; the reference's fork keeps it
   * the same way). The readiness pipe takes the first number from 3 up
   * that none of them has.
   */
  keepFds?: readonly number[];
}

/**
 * Start the detached child and resolve with its pid once it is ready;
 * `warn` gets each warning it sends meanwhile (notifyWarning).
 */
export function spawnDetached(options: DetachOptions = {}, warn: (message: string) => void = () => undefined): Promise<number> {
  const command = options.command ?? process.execPath;
  const args = options.args ?? [...process.execArgv, ...process.argv.slice(1)];
  const keep = new Set((options.keepFds ?? []).filter((fd) => Number.isInteger(fd) && fd > 2));
  let readyFd = 3;
  while (keep.has(readyFd)) readyFd++;
  // The reference's daemon() opens /dev/null read-write (O_NOCTTY) for all
  // three; libuv's "ignore" would make standard input read-only.
  const devNull = openSync("/dev/null", constants.O_RDWR | constants.O_NOCTTY);
  const stdio: Array<"ignore" | "pipe" | number> = [devNull, devNull, devNull];
  for (let fd = 3; fd <= Math.max(readyFd, ...keep); fd++) stdio.push(fd === readyFd ? "pipe" : keep.has(fd) ? fd : "ignore");
  const passed = [readyFd, ...keep].sort((a, b) => a - b).join(",");
  let child;
  try {
    child = spawn(process.execPath, ["--input-type=commonjs", "-e", INTERMEDIATE, passed, command, ...args], {
      detached: true,
      cwd: options.cwd ?? "/",
      stdio,
      // The reference's forks keep what it inherited ignored; so does the server.
      env: { ...(options.env ?? process.env), ...inheritedIgnoresEnv(), [READY_FD_ENV]: String(readyFd) },
    });
  } finally {
    closeSync(devNull);
  }
  return new Promise((resolve, reject) => {
    let said = "";
    let pending = "";
    let exit: string | undefined;
    let eof = false;
    const settle = (): void => {
      if (!eof) return;
      if (said.startsWith("READY ")) {
        resolve(Number(said.slice(6).trim()));
      } else if (said.startsWith("FAILED ")) {
        reject(new DaemonStartError(said.slice(7).trim()));
      } else if (exit !== undefined) {
        // The intermediate's exit: 0 once the server was started, whose own
        // exit status nobody here can read (it is init's child).
        reject(new DaemonStartError(exit === "exit code 0" ? "daemon exited before it was ready" : `cannot start daemon (${exit})`));
      }
    };
    child.on("error", (err) => reject(new DaemonStartError(`cannot start daemon: ${err.message}`)));
    child.on("exit", (code, signal) => {
      exit = signal === null ? `exit code ${code}` : `signal ${signal}`;
      settle();
    });
    const pipe = child.stdio[readyFd];
    if (pipe === null || pipe === undefined || !("on" in pipe)) {
      reject(new DaemonStartError("no readiness pipe"));
      return;
    }
    pipe.on("data", (chunk: Buffer) => {
      pending += chunk.toString("utf8");
      // Whole lines: warnings are passed on as they come, the rest is the verdict.
      for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
        const line = pending.slice(0, nl + 1);
        pending = pending.slice(nl + 1);
        if (line.startsWith("WARN ")) warn(line.slice(5).trim());
        else said += line;
      }
    });
    pipe.on("end", () => {
      said += pending;
      eof = true;
      if (said === "" && exit === undefined) return; // wait for exit to say why
      settle();
    });
  });
}

/** Parent side: detach and exit 0 when ready, 1 with the child's error otherwise. */
export async function daemonize(options: DetachOptions = {}, stderr: NodeJS.WritableStream = process.stderr): Promise<never> {
  try {
    await spawnDetached(options, (message) => void stderr.write(`mandos: ${message}\n`));
    process.exit(0);
  } catch (err) {
    stderr.write(`mandos: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

/** True in the child that daemonize() started. */
export function isDaemonChild(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[READY_FD_ENV] !== undefined;
}

function tell(line: string): void {
  const fd = Number(process.env[READY_FD_ENV]);
  if (!Number.isInteger(fd)) return;
  delete process.env[READY_FD_ENV];
  try {
    writeSync(fd, line);
    closeSync(fd);
  } catch {
    // The parent is gone; nothing to tell.
  }
}

/**
 * Child side, before notifyReady: a line for whoever started us (a
 * warning, or how far a long start has come), which the parent prints on
 * its standard error. No-op when not daemonised.
 */
export function notifyWarning(message: string): void {
  const fd = Number(process.env[READY_FD_ENV]);
  if (!Number.isInteger(fd)) return;
  try {
    writeSync(fd, `WARN ${message.replace(/\n/g, " ")}\n`);
  } catch {
    // The parent is gone; nothing to tell.
  }
}

/** Child side: the listener is up. No-op when not daemonised. */
export function notifyReady(): void { tell(`READY ${process.pid}\n`); }

/** Child side: start-up failed; the parent prints `message` and exits 1. */
export function notifyFailed(message: string): void { tell(`FAILED ${message.replace(/\n/g, " ")}\n`); }
