// Whether the listening socket still listens. Linux says nothing when a
// listening socket is destroyed under its owner (`ss -K`, the kernel's
// SOCK_DESTROY; a netns torn down): epoll reports no event, Node emits
// neither 'error' nor 'close', `server.listening` stays true, and nothing
// is accepted again. So we look: the descriptor's socket inode
// (/proc/self/fd/N) must be among the listening sockets in
// /proc/self/net/tcp6 or tcp. The kernel lists listening sockets first
// (tcp_seq_start walks the listening hash before the established one), so
// a look reads only that head, not a line per connection.
//
// By descriptor number, this serves every mode alike: a Listener's own
// socket, --socket's inherited one, and serve threads' shared one (one
// number for the process, serve-threads.ts).

import { closeSync, openSync, readlinkSync, readSync } from "node:fs";

/** How often the server looks (main.ts); /health and the watchdog see a loss within it. */
export const LISTEN_CHECK_MS = 1_000;
/** /proc/net/tcp's state column for TCP_LISTEN. */
const TCP_LISTEN = "0A";
/** A bound on one look: 64 reads of 64 KiB, far more listening sockets than a host has. */
const READ_CHUNK = 64 * 1024;
const MAX_READS = 64;

/**
 * Null while the socket on `fd` listens (or when this cannot be known: no
 * /proc); else why not, for the log and /health.
 */
export function listeningSocketLost(fd: number, proc = "/proc/self"): string | null {
  let link: string;
  try {
    link = readlinkSync(`${proc}/fd/${fd}`);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // No /proc (or not ours to read): nothing to say.
    if (code !== "ENOENT") return null;
    return `descriptor ${fd} is closed`;
  }
  const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
  if (inode === undefined) return `descriptor ${fd} is no longer a socket (${link})`;
  let looked = false;
  for (const table of ["net/tcp6", "net/tcp"]) {
    const found = listensIn(`${proc}/${table}`, inode);
    if (found === true) return null;
    if (found === false) looked = true;
  }
  return looked ? "the listening socket was closed under the server (no longer in the kernel's listening sockets)" : null;
}

/** Whether `inode` is a listening socket in `path`; undefined when it cannot be read. */
function listensIn(path: string, inode: string): boolean | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return undefined;
  }
  try {
    const buffer = Buffer.alloc(READ_CHUNK);
    let rest = "";
    let header = true;
    for (let reads = 0; reads < MAX_READS; reads++) {
      const n = readSync(fd, buffer, 0, READ_CHUNK, null);
      if (n === 0) return false;
      const lines = (rest + buffer.toString("latin1", 0, n)).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) {
        if (header) {
          header = false;
          continue;
        }
        const fields = line.trim().split(/\s+/);
        // Past the listening sockets: ours was not among them.
        if (fields[3] !== TCP_LISTEN) return false;
        if (fields[9] === inode) return true;
      }
    }
    return false;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
