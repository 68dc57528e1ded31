// How a checker command becomes a process: `/bin/sh -c command` in its own
// process group, cwd "/", no standard streams, as the reference's
// subprocess.Popen(command, shell=True, cwd="/", close_fds=True). Kept
// apart from checker.ts so that the checker host (../../workers/
// checker-host.ts) runs the same code with nothing else loaded.

import { spawn as spawnProcess } from "node:child_process";
import { constants } from "node:os";
import type { CheckerProcess } from "./record.js";

/**
 * Runs a checker command; calls back once with the exit code or the
 * signal, or, when the shell could not be started at all (fork failing
 * with EAGAIN under a process limit), with 127 and the errno code.
 */
export type CheckerSpawner = (command: string, done: (code: number | null, signal: number | null, startError?: string) => void) => CheckerProcess;

/**
 * How long a killed checker has to end after SIGTERM before its process
 * group gets SIGKILL: a checker that ignores SIGTERM (a cleanup trap that
 * loops) would otherwise run for ever, once per disable or stop.
 */
export const CHECKER_KILL_GRACE_MS = 5_000;

/** Where a checker's standard output and error go: nowhere, unless --debug (showCheckerOutput). */
let checkerOutput: "ignore" | "inherit" = "ignore";

/**
 * With --debug, checkers write to the server's own standard output and
 * error, as the reference's do (it sends them to /dev/null only when not
 * debugging): how an admin sees why fping fails.
 */
export function showCheckerOutput(show: boolean): void {
  checkerOutput = show ? "inherit" : "ignore";
}

/**
 * A signal's number, as the reference's subprocess.call returns it (its
 * negation): every signal, so that LastCheckerSignal and CheckerCompleted's
 * wait status name the one that ended the checker (SIGUSR1 is 10, not 15).
 */
function signalNumber(name: string): number {
  return (constants.signals as Record<string, number | undefined>)[name] ?? 15;
}

/** `/bin/sh -c command` in its own process group (so kill() reaches the whole pipeline), cwd "/". */
export const shellSpawner: CheckerSpawner = (command, done) => {
  const child = spawnProcess("/bin/sh", ["-c", command], { cwd: "/", stdio: ["ignore", checkerOutput, checkerOutput], detached: true });
  let finished = false;
  const finish = (code: number | null, signal: number | null, startError?: string): void => {
    if (finished) return;
    finished = true;
    done(code, signal, startError);
  };
  child.on("error", (error: NodeJS.ErrnoException) => finish(127, null, error.code ?? error.message));
  child.on("exit", (code, signal) => finish(code, signal ? signalNumber(signal) : null));
  const signalGroup = (name: NodeJS.Signals): void => {
    // Only while the shell is not yet reaped: its pid, the group's id, cannot be anyone else's then.
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, name);
    } catch {
      child.kill(name);
    }
  };
  return {
    kill() {
      signalGroup("SIGTERM");
      setTimeout(signalGroup, CHECKER_KILL_GRACE_MS, "SIGKILL").unref();
    },
  };
};
