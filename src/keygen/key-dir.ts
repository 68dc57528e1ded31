// A client's key directory as mandos-keygen lays it out (mandos-keygen(8)
// FILES), and writing into it as Debian's script does: every file mode
// 0600 (the script runs under umask 077), and an old file kept as a
// numbered backup (`cp --backup=numbered`: NAME.~1~, NAME.~2~, ...). A key
// set is written all or none (replaceKeyFiles): each file first to a
// temporary beside it, synced, and only once all are whole are the old
// files moved to their backups and the new ones renamed into place, so
// that a full disk leaves the old set as it was, never an empty key file.

import { closeSync, existsSync, fsyncSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { reasonInWords } from "../main/config/os-error.js";
import { KeygenFileError } from "./errors.js";

export interface KeyDirPaths {
  readonly secretKey: string;
  readonly publicKey: string;
  readonly tlsPrivateKey: string;
  readonly tlsPublicKey: string;
}

export function keyDirPaths(dir: string): KeyDirPaths {
  return {
    secretKey: join(dir, "seckey.txt"),
    publicKey: join(dir, "pubkey.txt"),
    tlsPrivateKey: join(dir, "tls-privkey.pem"),
    tlsPublicKey: join(dir, "tls-pubkey.pem"),
  };
}

/** The directory Debian's script uses when --dir is not given. */
export function defaultKeyDir(): string {
  return existsSync("/etc/keys/mandos") ? "/etc/keys/mandos" : "/etc/mandos/keys";
}

const KEY_FILE_MODE = 0o600;

/** One file of a key set: where, and what. */
export interface KeyFile {
  readonly path: string;
  readonly contents: string;
}

/**
 * Writes every file (mode 0600), each existing one first moved to its next
 * numbered backup, all or none: a failure (ENOSPC, EIO, EACCES) leaves
 * every old file where it was and no new or temporary file, and is thrown
 * as a KeygenFileError naming the key file, not the temporary.
 */
export function replaceKeyFiles(files: readonly KeyFile[]): void {
  const written: { readonly file: KeyFile; readonly temporary: string }[] = [];
  try {
    for (const file of files) {
      const temporary = join(dirname(file.path), `.${basename(file.path)}.${randomBytes(4).toString("hex")}.tmp`);
      written.push({ file, temporary });
      writeWhole(temporary, file.contents, file.path);
    }
  } catch (error) {
    for (const { temporary } of written) removeQuietly(temporary);
    throw error;
  }
  // Renames only from here, which need no room: undone in turn should one fail.
  const done: { readonly path: string; readonly backup: string | null }[] = [];
  try {
    for (const { file, temporary } of written) {
      const backup = existsSync(file.path) ? nextBackup(file.path) : null;
      if (backup !== null) renameOrSay(file.path, backup, file.path);
      done.push({ path: file.path, backup });
      renameOrSay(temporary, file.path, file.path);
    }
  } catch (error) {
    for (const { path, backup } of done.reverse()) {
      try {
        if (backup !== null) renameSync(backup, path);
        else removeQuietly(path);
      } catch {
        // Said by the error thrown; the backup is still there under its name.
      }
    }
    for (const { temporary } of written) removeQuietly(temporary);
    throw error;
  }
}

/** `contents` into a new file at `path`, mode 0600, synced; an error names `shown`. */
function writeWhole(path: string, contents: string, shown: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, "wx", KEY_FILE_MODE);
    const bytes = Buffer.from(contents, "utf8");
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
  } catch (error) {
    throw new KeygenFileError("KEYGEN_FILE_ERROR", shown, reasonInWords(error), { cause: error });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function renameOrSay(from: string, to: string, shown: string): void {
  try {
    renameSync(from, to);
  } catch (error) {
    throw new KeygenFileError("KEYGEN_FILE_ERROR", shown, reasonInWords(error), { cause: error });
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // not there
  }
}

function nextBackup(path: string): string {
  const prefix = `${basename(path)}.~`;
  let highest = 0;
  for (const entry of readdirSync(dirname(path))) {
    const m = entry.startsWith(prefix) ? /^(\d+)~$/.exec(entry.slice(prefix.length)) : null;
    if (m) highest = Math.max(highest, Number(m[1]));
  }
  return `${path}.~${highest + 1}~`;
}
