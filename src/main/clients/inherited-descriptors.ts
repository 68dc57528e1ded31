// Keeps the descriptors the server inherited from its checkers. The
// reference starts each checker with subprocess.Popen(..., close_fds=True):
// a checker gets its standard streams and nothing else of the server's.
// Node's spawn (libuv) passes on every descriptor not marked close-on-exec;
// Node marks all it opens itself, and of those it inherited only the run
// from 3 up to the first closed number. One above a gap (a shell's
// `exec 20<FILE; mandos`, a supervisor's pipe, --socket FD's listening
// socket) would reach every checker, and every command the checker runs.
//
// So the server marks them close-on-exec at start-up (keepFromChildren,
// with the addon's fcntl): it keeps them, as the reference keeps its own
// (a lock a wrapper holds through one stays held), and nothing it starts
// gets them. Without the addon it cannot mark them; then its checkers start
// in the checker host, which closes them in itself before it starts any
// (closeInheritable), and the server still keeps them.
//
// Linux: /proc/self/fdinfo/N's `flags:` line is the file's open flags in
// octal, O_CLOEXEC among them when descriptor N is close-on-exec (proc(5)).
// Elsewhere nothing is found, and nothing is done.

import { closeSync, readdirSync, readFileSync } from "node:fs";

/** O_CLOEXEC in fdinfo's `flags:` (asm-generic/fcntl.h, which x86, ARM and most Linux architectures use). */
const O_CLOEXEC = 0o2000000;

/** Descriptors above the standard streams that are not close-on-exec, lowest first. `proc` is for tests. */
export function inheritableDescriptors(proc = "/proc/self"): number[] {
  let names: string[];
  try {
    names = readdirSync(`${proc}/fdinfo`);
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd <= 2) continue;
    let info: string;
    try {
      info = readFileSync(`${proc}/fdinfo/${name}`, "utf8");
    } catch {
      continue; // closed since (the listing's own descriptor)
    }
    const flags = /^flags:\s*([0-7]+)\s*$/m.exec(info)?.[1];
    if (flags !== undefined && (parseInt(flags, 8) & O_CLOEXEC) === 0) found.push(fd);
  }
  return found.sort((a, b) => a - b);
}

/**
 * The server, at start-up: marks each inheritable descriptor close-on-exec
 * with `mark` (unix-datagram.ts's markCloseOnExec). Returns those it could
 * not mark (no addon), which its children would still get.
 */
export function keepFromChildren(mark: (fd: number) => boolean, proc?: string): number[] {
  return inheritableDescriptors(proc).filter((fd) => !mark(fd));
}

/**
 * The checker host, before it starts a checker: closes each inheritable
 * descriptor but those in `keep` (its channel to the server). Returns
 * those it closed.
 */
export function closeInheritable(keep: readonly number[] = []): number[] {
  const closed: number[] = [];
  for (const fd of inheritableDescriptors()) {
    if (keep.includes(fd)) continue;
    try {
      closeSync(fd);
      closed.push(fd);
    } catch {
      // closed already
    }
  }
  return closed;
}
