// The state directory: made at start-up when it is missing, as Debian's
// package makes /var/lib/mandos (mode 0700, owned by the user the server
// runs as after dropping root), and checked once the server runs as that
// user. Where state cannot be kept, the server says so once, at start, with
// the directory and the reason in words, and does not try again every
// second.

import { accessSync, chownSync, constants, mkdirSync, statSync } from "node:fs";
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
    mkdirSync(dir, { recursive: true, mode: 0o700 });
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
