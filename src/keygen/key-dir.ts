// A client's key directory as mandos-keygen lays it out (mandos-keygen(8)
// FILES), and writing into it as Debian's script does: every file mode
// 0600 (the script runs under umask 077), and an old file kept as a
// numbered backup (`cp --backup=numbered`: NAME.~1~, NAME.~2~, ...).

import { existsSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

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

/** Writes `path` (mode 0600), first moving an existing file to its next numbered backup. */
export function replaceKeyFile(path: string, contents: string): void {
  if (existsSync(path)) renameSync(path, nextBackup(path));
  writeFileSync(path, contents, { mode: KEY_FILE_MODE, flag: "wx" });
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
