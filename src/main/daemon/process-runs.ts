// Whether a process runs, by its pid: for files and locks a process left
// behind (a state save's temporary file, an enrollment's lock), which are
// stale once it is gone, and when it started: a pid used again after a
// reboot names another process, which started after the file was written.

import { readFileSync, statSync } from "node:fs";

/** Whether process `pid` runs; one of another user's (EPERM) counts as running. */
export function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Whether process `pid`, which wrote a file last modified at `writtenAtMs`,
 * is gone: it does not run, or its pid now names a process started after
 * the file was written (after a reboot, say; a second of slack for the
 * boot time's rounding).
 */
export function writerGoneSince(pid: number, writtenAtMs: number): boolean {
  if (!processRuns(pid)) return true;
  const started = processStartedAt(pid);
  return started !== null && started > writtenAtMs + 1_000;
}

/** writerGoneSince for `file`'s modification time; a file that cannot be looked at counts only a pid that does not run. */
export function writerGone(pid: number, file: string): boolean {
  let writtenAtMs: number;
  try {
    writtenAtMs = statSync(file).mtimeMs;
  } catch {
    return !processRuns(pid);
  }
  return writerGoneSince(pid, writtenAtMs);
}

/** Linux's USER_HZ, the unit of /proc/PID/stat's start time (100 on every architecture Node runs on). */
const USER_HZ = 100;

/**
 * When process `pid` started (ms since the epoch), from /proc; null where
 * that cannot be read (gone meanwhile, or no /proc). Accurate to the
 * clock tick (10 ms) and to the boot time's second.
 */
export function processStartedAt(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After the command name, which may hold spaces and parentheses: state is field 3, starttime field 22.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[19]);
    const boot = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1];
    if (!Number.isFinite(ticks) || boot === undefined) return null;
    return Number(boot) * 1000 + (ticks * 1000) / USER_HZ;
  } catch {
    return null;
  }
}
