// The lock one enrollment holds beside clients.conf from reading it to the
// rename of the new one: `.NAME.enroll-lock`, made with O_EXCL and holding
// the holder's pid and which process that is (its start since boot and the
// boot's id: process-runs.ts, processIdentity; no wall-clock time, which
// an NTP step during an enrollment would move). Two enrollments at once
// would each read the old file and the second rename would drop the
// first's machines.
//
// A lock whose holder is gone (killed, a power cut) is taken over. Two
// enrollments that find the same stale lock must not both take it: if the
// second removed the lock by its name after the first had made a new one,
// both would go on. So a takeover removes only the file it judged stale
// (its inode and change time), and only one enrollment may remove a given
// stale file: the one that makes its `.takeover-INODE-CTIME` marker
// (O_EXCL). Between that enrollment's look and its removal the name cannot
// point to another file: only a takeover removes a stale lock, and the
// others wait for the marker.

import { closeSync, fstatSync, openSync, readSync, rmSync, statSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { processIdentity, writerGoneById, writerGoneSince } from "../main/daemon/process-runs.js";
import { fileSystemError, KeygenError } from "./errors.js";

/**
 * How long an enrollment waits for another's lock: the other holds it only
 * from reading clients.conf to its rename (the encryption is done before),
 * well under a second even for 10,000 machines.
 */
export const ENROLL_LOCK_WAIT_MS = 30_000;
const ENROLL_LOCK_POLL_MS = 50;
/** How old a lock without a whole pid must be to be stale. */
export const UNWRITTEN_LOCK_STALE_MS = 5_000;

/** The lock beside clients.conf `path`. */
export function enrollLockPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.enroll-lock`);
}

/** A lock file as one look saw it: which file, and whose. */
export interface LockSeen {
  readonly ino: bigint;
  readonly ctimeNs: bigint;
  /** The holder's pid; null while the holder has not written it yet. */
  readonly pid: number | null;
  /** The holder is gone: not running, or its pid now names another process (or, in an earlier release's lock, one started after it was written). */
  readonly stale: boolean;
}

/** Looks at the lock `lock`; null when there is none. */
export function lookAtLock(lock: string): LockSeen | null {
  let fd: number;
  try {
    fd = openSync(lock, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw fileSystemError(error, lock) ?? error;
  }
  try {
    const stat = fstatSync(fd, { bigint: true });
    const bytes = Buffer.alloc(128);
    const text = bytes.subarray(0, readSync(fd, bytes, 0, bytes.length, 0)).toString("latin1");
    // "PID TICKS BOOT-ID\n"; an earlier release's lock holds the pid alone.
    // Whole only with its newline: a lock read mid-write is not stale.
    const m = /^(\d+)(?: (\d+ [0-9a-f-]+))?\n$/.exec(text);
    const number = Number(m?.[1]);
    const pid = m !== null && Number.isSafeInteger(number) && number > 0 ? number : null;
    const identity = m?.[2];
    const writtenAtMs = Number(stat.mtimeNs / 1_000_000n);
    const stale = pid === null
      // No whole pid: its holder was killed between the create and the
      // write (or a power cut came: the lock is not synced). The two are
      // microseconds apart, so such a lock that old is stale.
      ? Date.now() - writtenAtMs > UNWRITTEN_LOCK_STALE_MS
      : identity !== undefined ? writerGoneById(pid, identity)
      : writerGoneSince(pid, writtenAtMs);
    return { ino: stat.ino, ctimeNs: stat.ctimeNs, pid, stale };
  } finally {
    closeSync(fd);
  }
}

/** The file whose O_EXCL making wins the takeover of the stale lock `seen`. */
function takeoverMarker(lock: string, seen: LockSeen): string {
  return `${lock}.takeover-${seen.ino}-${seen.ctimeNs}`;
}

/**
 * Removes the stale lock `seen` if this enrollment wins its takeover;
 * returns false when another one is taking it over (wait, then look again).
 * A lock that is no longer the file seen is left alone.
 */
export function takeOverStaleLock(lock: string, seen: LockSeen): boolean {
  const marker = takeoverMarker(lock, seen);
  let fd: number;
  try {
    fd = openSync(marker, "wx", 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw fileSystemError(error, marker) ?? error;
  }
  closeSync(fd);
  try {
    const now = statSync(lock, { bigint: true, throwIfNoEntry: false });
    if (now !== undefined && now.ino === seen.ino && now.ctimeNs === seen.ctimeNs) rmSync(lock, { force: true });
    return true;
  } finally {
    rmSync(marker, { force: true });
  }
}

/**
 * Runs `change` holding the lock beside clients.conf `path`. A stale lock
 * is taken over; one held past ENROLL_LOCK_WAIT_MS is an error naming it.
 */
export async function withEnrollLock<T>(path: string, change: () => T): Promise<T> {
  const lock = enrollLockPath(path);
  const deadline = Date.now() + ENROLL_LOCK_WAIT_MS;
  for (let tries = 0; ; tries++) {
    let fd: number;
    try {
      fd = openSync(lock, "wx", 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw fileSystemError(error, lock) ?? error;
      const seen = lookAtLock(lock);
      if (seen === null || (seen.stale && takeOverStaleLock(lock, seen))) continue;
      if (Date.now() >= deadline || tries > ENROLL_LOCK_WAIT_MS / ENROLL_LOCK_POLL_MS) {
        throw new KeygenError("ENROLL_LOCKED", seen.stale
          // A takeover killed between its marker and the lock's removal.
          ? `${lock} was left by pid ${seen.pid}, which is gone, and a takeover of it did not finish; waited ${ENROLL_LOCK_WAIT_MS / 1000} s: remove it and ${takeoverMarker(lock, seen)}`
          : `Another enrollment holds ${lock} (pid ${seen.pid ?? "unknown"}); waited ${ENROLL_LOCK_WAIT_MS / 1000} s`);
      }
      await new Promise((resolve) => setTimeout(resolve, ENROLL_LOCK_POLL_MS));
      continue;
    }
    try {
      try {
        const identity = processIdentity(process.pid);
        writeSync(fd, `${process.pid}${identity === null ? "" : ` ${identity}`}\n`);
      } finally {
        closeSync(fd);
      }
    } catch (error) {
      rmSync(lock, { force: true });
      throw fileSystemError(error, lock) ?? error;
    }
    try {
      return change();
    } finally {
      rmSync(lock, { force: true });
    }
  }
}
