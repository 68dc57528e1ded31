// Dropping root after the listener is bound, as the reference's main() does:
// the first of _mandos:_mandos, mandos:mandos, nobody:nogroup whose *user*
// entries both exist (the reference looks the group name up in the passwd
// database too, so nobody:nogroup usually falls through), else 65534:65534;
// setgid then setuid; EPERM (not root) is a warning, anything else fatal.
// process.setuid/setgid act on every thread (glibc setxid broadcast), so
// worker threads started earlier run unprivileged too.

import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";
import { reasonInWords } from "../config/os-error.js";
import type { Logger } from "./log.js";
import { PrivilegeError } from "./errors.js";

export const CANDIDATES: readonly (readonly [user: string, group: string])[] = [
  ["_mandos", "_mandos"],
  ["mandos", "mandos"],
  ["nobody", "nogroup"],
];
/** The reference's fallback when no candidate resolves. */
export const NOBODY_ID = 65534;

export interface PasswdEntry { uid: number; gid: number }
export type PasswdLookup = (name: string) => PasswdEntry | undefined;

/** getpwnam(3) through getent(1), so NSS sources count as they do for Python's pwd. */
export const getentPasswd: PasswdLookup = (name) => {
  try {
    const line = execFileSync("getent", ["passwd", name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const fields = line.trim().split(":");
    const uid = Number(fields[2]);
    const gid = Number(fields[3]);
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
};

export function chooseIds(lookup: PasswdLookup = getentPasswd): PasswdEntry {
  for (const [user, group] of CANDIDATES) {
    const u = lookup(user);
    const g = lookup(group);
    if (u !== undefined && g !== undefined) return { uid: u.uid, gid: g.gid };
  }
  return { uid: NOBODY_ID, gid: NOBODY_ID };
}

export interface ProcessIds {
  setgid(id: number): void;
  setuid(id: number): void;
  setgroups?(groups: number[]): void;
  getuid(): number;
}

/** Returns the ids switched to, or undefined when not permitted (not root). */
export function dropPrivileges(log: Logger, lookup: PasswdLookup = getentPasswd,
  proc: ProcessIds = process as unknown as ProcessIds): PasswdEntry | undefined {
  const { uid, gid } = chooseIds(lookup);
  try {
    // Unlike Python's os.setgid, also shed root's supplementary groups.
    if (proc.getuid() === 0) proc.setgroups?.([gid]);
    proc.setgid(gid);
    proc.setuid(uid);
    log.debug(`Did setuid/setgid to ${uid}:${gid}`);
    return { uid, gid };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    log.warning(`Failed to setuid/setgid to ${uid}:${gid}: ${reasonInWords(err)}`);
    if (code !== "EPERM") throw new PrivilegeError(`setuid/setgid to ${uid}:${gid} failed`, { cause: err });
    return undefined;
  }
}

/** Warn loudly when clients.conf (which holds secrets) is readable by others. */
export function checkClientsConfMode(path: string, log: Logger): boolean {
  try {
    const mode = statSync(path).mode;
    if ((mode & 0o004) !== 0) {
      log.warning(`${path} is readable by all users (mode ${(mode & 0o777).toString(8)}); it holds client secrets: chmod o-r it`);
      return false;
    }
  } catch {
    // Missing file: the configuration loader reports that.
  }
  return true;
}
