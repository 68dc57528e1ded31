// Whether a process runs, by its pid: for files and locks a process left
// behind (a state save's temporary file, an enrollment's lock), which are
// stale once it is gone, and when it started: a pid used again after a
// reboot names another process, which started after the file was written.
// A writer that records its processIdentity (the enrollment lock) is known
// without any wall-clock time, which a clock step would move.

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

/** Process `pid`'s start time in clock ticks since boot, from /proc; null where that cannot be read (gone meanwhile, or no /proc). */
function startTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After the command name, which may hold spaces and parentheses: state is field 3, starttime field 22.
    const ticks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

/**
 * When process `pid` started (ms since the epoch), from /proc; null where
 * that cannot be read. Accurate to the clock tick (10 ms) and to the boot
 * time's second; /proc's boot time moves with a step of the wall clock,
 * so after one this is off by the step (processIdentity is not).
 */
export function processStartedAt(pid: number): number | null {
  const ticks = startTicks(pid);
  try {
    const boot = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1];
    return ticks === null || boot === undefined ? null : Number(boot) * 1000 + (ticks * 1000) / USER_HZ;
  } catch {
    return null;
  }
}

/** This boot's id (changes at every boot); null without /proc. */
function bootId(): string | null {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return null;
  }
}

/**
 * Which process `pid` is, as a file that names its writer records it: its
 * start in clock ticks since boot and the boot's id (`"1234567 3f0c…"`).
 * No wall-clock time in it, so a step of the clock does not change it, and
 * a pid used again (in this boot or the next) gives another. null where
 * /proc cannot say.
 */
export function processIdentity(pid: number): string | null {
  const ticks = startTicks(pid);
  const boot = bootId();
  return ticks === null || boot === null ? null : `${ticks} ${boot}`;
}

/**
 * Whether the writer recorded as `pid` and `identity` (processIdentity's,
 * taken by the writer itself) is gone: its boot is over, or the pid runs
 * no process, or another one. One whose identity cannot be read now is
 * taken as running.
 */
export function writerGoneById(pid: number, identity: string): boolean {
  const boot = bootId();
  if (boot !== null && !identity.endsWith(` ${boot}`)) return true;
  if (!processRuns(pid)) return true;
  const now = processIdentity(pid);
  return now !== null && now !== identity;
}
