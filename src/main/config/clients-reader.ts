// Reading clients.conf again on SIGHUP, after the server has dropped root.
//
// Debian installs /etc/mandos/clients.conf root:root 0600 (it holds the
// secrets) and the server runs as _mandos, which cannot open it. So a
// server started as root keeps one small reader running as root from
// before the drop: a shell loop that, for each newline it is sent, answers
// with the file in base64 on one line and then a status line
// (`0 ` on success, `RC MESSAGE` with base64's error otherwise). It reads
// that one path and nothing else, takes no other input, and dies with the
// server (end of its standard input). Each read is bounded (coreutils
// timeout, PRIVILEGED_READ_BOUND_S): a FIFO, a terminal or a hung mount in
// the file's place is an answer ("not read within N s"), not a reader stuck
// for good, which refused every later reload and, once the server had
// dropped root and could no longer kill it, outlived the server as a root
// orphan. What it gives away, clients.conf, the
// server holds in memory already. Without root (tests, a server run by hand)
// the file is read directly. docs/OPERATION.md, "Reloading clients.conf".
//
// Every failure comes back as a reason in words: a reload must never take
// "could not read" for "no clients".

import { spawn, type ChildProcessByStdio } from "node:child_process";
import { statSync } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { reasonInWords } from "./os-error.js";
import { readRegularFile } from "./read-file.js";

/** clients.conf's bytes, as a reload reads them (decoded as UTF-8 in the parse's thread). */
export type ClientsFileRead =
  | { readonly ok: true; readonly bytes: Buffer }
  | { readonly ok: false; readonly reason: string };

export interface ClientsFileReader {
  /** "privileged": through the reader kept as root; "direct": as this process. */
  readonly how: "privileged" | "direct";
  read(): Promise<ClientsFileRead>;
  close(): void;
}

/** How long a reload waits for the privileged reader (a hung NFS mount, say). */
const PRIVILEGED_READ_TIMEOUT_MS = 10_000;
/**
 * How long the privileged reader lets one read take before it ends it
 * (TERM, then KILL a second later) and answers that it could not: within
 * PRIVILEGED_READ_TIMEOUT_MS, so that it has answered before a reload gives up.
 */
export const PRIVILEGED_READ_BOUND_S = 8;

/** Reads the whole file now, as this process; never throws. */
export function readClientsBytes(path: string): ClientsFileRead {
  try {
    return { ok: true, bytes: readRegularFile(path) };
  } catch (error) {
    return { ok: false, reason: reasonInWords(error) };
  }
}

export function directReader(path: string): ClientsFileReader {
  return { how: "direct", read: () => Promise.resolve(readClientsBytes(path)), close: () => {} };
}

// $1 is the path, $2 the bound in seconds. Standard output of base64 goes
// straight to ours (fd 3), its standard error is captured for the status
// line; timeout's 124 (TERM) or 137 (KILL) is a read that did not end.
const READER_SCRIPT = `
while IFS= read -r _; do
  { err=$(timeout -k 1 "$2" base64 -w 0 -- "$1" 2>&1 >&3); rc=$?; } 3>&1
  case $rc in 124|137) err="$1: not read within $2 s (a FIFO, a terminal or a hung mount in its place?)" ;; esac
  printf '\\n%s %s\\n' "$rc" "$(printf '%s' "$err" | tr '\\n' ' ')"
done
`;

/**
 * Starts the reader as the current user; call it while still root, before
 * dropping privileges. Should the reader die, reads fall back to direct.
 * `boundS`: PRIVILEGED_READ_BOUND_S unless a test says.
 */
export function startPrivilegedReader(path: string, boundS = PRIVILEGED_READ_BOUND_S): ClientsFileReader {
  const child: ChildProcessByStdio<Writable, Readable, null> = spawn("/bin/sh", ["-c", READER_SCRIPT, "mandos-clients-reader", path, String(boundS)], {
    stdio: ["pipe", "pipe", "ignore"],
    env: { PATH: "/usr/bin:/bin", LC_ALL: "C" },
  });
  let alive = true;
  // The answer being read: its data line decoded as it comes, one chunk
  // (64 KiB) at a time, whole base64 groups of 4 characters, the rest
  // carried to the next; then its status line. A clients.conf of 30 MB
  // (40 MB of base64) joined and decoded at once held the main thread for
  // 100-300 ms; joined and searched at every chunk, 11 s.
  let decoded: Buffer[] = [];
  let carry = "";
  let inData = true;
  let status: Buffer[] = [];
  const waiting: ((answer: ClientsFileRead | undefined) => void)[] = [];
  child.on("error", () => (alive = false));
  child.stdin.on("error", () => (alive = false));
  child.on("exit", () => {
    alive = false;
    for (const settle of waiting.splice(0)) settle(undefined);
  });
  const take = (base64: Buffer): void => {
    const text = carry + base64.toString("latin1");
    const whole = text.length - (text.length % 4);
    if (whole > 0) decoded.push(Buffer.from(text.slice(0, whole), "base64"));
    carry = text.slice(whole);
  };
  const answered = (statusLine: Buffer): void => {
    if (carry !== "") decoded.push(Buffer.from(carry, "base64"));
    const bytes = Buffer.concat(decoded);
    for (const piece of decoded) piece.fill(0);
    decoded = [];
    carry = "";
    const status = statusLine.toString("utf8");
    const space = status.indexOf(" ");
    const rc = status.slice(0, space);
    const message = status.slice(space + 1).trim();
    // base64: /etc/mandos/clients.conf: Permission denied
    const reason = message.slice(message.lastIndexOf(": ") + 2) || `reader exited ${rc}`;
    waiting.shift()?.(rc === "0" ? { ok: true, bytes } : { ok: false, reason });
  };
  child.stdout.on("data", (chunk: Buffer) => {
    let start = 0;
    for (;;) {
      const end = chunk.indexOf(0x0a, start);
      const piece = chunk.subarray(start, end < 0 ? chunk.length : end);
      if (inData) take(piece);
      else if (piece.length > 0) status.push(piece);
      if (end < 0) return;
      start = end + 1;
      if (inData) {
        inData = false;
      } else {
        answered(Buffer.concat(status));
        status = [];
        inData = true;
      }
    }
  });
  child.unref();
  (child.stdout as Readable & { unref?: () => void }).unref?.();

  return {
    how: "privileged",
    read(): Promise<ClientsFileRead> {
      if (!alive) return Promise.resolve(readClientsBytes(path));
      return new Promise((resolve) => {
        let settled = false;
        const timer = setTimeout(() => settle({ ok: false, reason: "the privileged reader did not answer" }), PRIVILEGED_READ_TIMEOUT_MS);
        function settle(answer: ClientsFileRead | undefined): void {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(answer ?? readClientsBytes(path));
        }
        waiting.push(settle);
        child.stdin.write("\n");
      });
    },
    /**
     * Ends the reader's standard input: it exits at once, or once the read
     * under way ends (within its bound). Not killed: a server that has
     * dropped root cannot, and one that could would only race the bound.
     */
    close(): void {
      alive = false;
      child.stdin.end();
    },
  };
}

/** The reader for this process: privileged when running as root (before the drop), else direct. */
export function clientsFileReader(path: string): ClientsFileReader {
  return process.getuid?.() === 0 ? startPrivilegedReader(path) : directReader(path);
}

export interface ReloadReadiness {
  /** False when a SIGHUP would be refused for want of permission. */
  readonly ok: boolean;
  readonly message: string;
}

/** Whether uid:gid (no supplementary groups, as after the drop) may read a file of this mode and owner. */
function mayRead(st: { mode: number; uid: number; gid: number }, uid: number, gid: number): boolean {
  if (uid === 0) return true;
  if (st.uid === uid) return (st.mode & 0o400) !== 0;
  if (st.gid === gid) return (st.mode & 0o040) !== 0;
  return (st.mode & 0o004) !== 0;
}

/**
 * For `mandos --check`: will a SIGHUP be able to read clients.conf? As
 * root the server keeps a reader as root; otherwise the user it runs as
 * must be able to read the file (mode bits only; ACLs are not consulted).
 */
export function reloadReadiness(path: string, runsAs: { uid: number; gid: number }, startedAsRoot: boolean): ReloadReadiness {
  let st: { mode: number; uid: number; gid: number };
  try {
    st = statSync(path);
  } catch (error) {
    return { ok: false, message: `${path}: ${reasonInWords(error)}: the server would start with no clients` };
  }
  const direct = mayRead(st, runsAs.uid, runsAs.gid);
  if (startedAsRoot) {
    return {
      ok: true,
      message: `${path} is re-read on SIGHUP by a reader kept as root` +
        (direct ? "" : ` (the server itself runs as ${runsAs.uid}:${runsAs.gid}, which cannot read it)`),
    };
  }
  if (direct) return { ok: true, message: `${path} is readable by ${runsAs.uid}:${runsAs.gid}, which re-reads it on SIGHUP` };
  return {
    ok: false,
    message: `${path} is not readable by ${runsAs.uid}:${runsAs.gid}, so a SIGHUP would be refused: ` +
      `start the server as root (it then keeps a reader as root), or run: chgrp ${runsAs.gid} ${path} && chmod 0640 ${path}`,
  };
}
