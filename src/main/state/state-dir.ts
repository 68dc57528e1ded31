// The state directory: made at start-up when it is missing, as Debian's
// package makes /var/lib/mandos (mode 0700, owned by the user the server
// runs as after dropping root), and checked once the server runs as that
// user. Where state cannot be kept at start (a file system still read-only
// early in boot, EACCES, a parent missing), the server says so once and
// saves anyway: each save makes the directory again if it is missing
// (ensureStateDir), and a failing save is tried again every SAVE_RETRY_MS,
// as one that starts failing later is, so that the state is kept once the
// fault is gone.

import { accessSync, chownSync, constants, mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { reasonInWords } from "../config/os-error.js";

export type StateDirCheck = { readonly ok: true; readonly created: boolean } | { readonly ok: false; readonly reason: string };

/**
 * Before dropping privileges: creates `dir` (and missing parents) when it
 * does not exist, mode 0700, and hands it to `owner` when running as root.
 */
export function prepareStateDir(dir: string, owner: { uid: number; gid: number } | undefined): StateDirCheck {
  try {
    if (statSync(dir).isDirectory()) return { ok: true, created: false };
    return { ok: false, reason: "Not a directory" };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") return { ok: false, reason: reasonInWords(error) };
  }
  try {
    makeDirectories(dir);
    if (owner !== undefined) chownSync(dir, owner.uid, owner.gid);
    return { ok: true, created: true };
  } catch (error) {
    return { ok: false, reason: reasonInWords(error) };
  }
}

/** After dropping privileges: can this process write its state there? */
export function checkStateDirWritable(dir: string): StateDirCheck {
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
    return { ok: true, created: false };
  } catch (error) {
    return { ok: false, reason: reasonInWords(error) };
  }
}

/**
 * Before each save: makes `dir` (mode 0700, as the user the server runs
 * as) if it is missing; throws the error that keeps it from being made,
 * or ENOTDIR when something else is in its place, for the save to fail
 * with, and be tried again, with the real reason.
 */
export function ensureStateDir(dir: string): void {
  let isDirectory: boolean;
  try {
    isDirectory = statSync(dir).isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    makeDirectories(dir);
    return;
  }
  if (!isDirectory) throw Object.assign(new Error(`ENOTDIR: not a directory, '${dir}'`), { code: "ENOTDIR", path: dir });
}

/**
 * Why a start cannot restore from `dir`: something that is not a directory
 * in its place (said so, not as a file in it that cannot be read); null
 * when it is a directory or missing.
 */
export function stateDirNotDirectory(dir: string): string | null {
  try {
    return statSync(dir).isDirectory() ? null : `the state directory ${dir} is not a directory`;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "ENOTDIR" ? `the state directory ${dir} is not a directory: a part of its path is not one` : null;
  }
}

/**
 * mkdir -p, mode 0700. Node's mkdirSync(recursive) says ENOENT when a
 * missing parent cannot be made (on a read-only file system, say): made
 * one level at a time here, the error is the real one (EROFS, EACCES).
 */
function makeDirectories(dir: string): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST" && statSync(dir).isDirectory()) return;
    const parent = dirname(dir);
    if (code !== "ENOENT" || parent === dir) throw error;
  }
  makeDirectories(dirname(dir));
  mkdirSync(dir, { mode: 0o700 });
}
