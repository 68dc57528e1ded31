// Unix datagrams out: syslog (/dev/log), the audit log's syslog copy and
// systemd's $NOTIFY_SOCKET all need sendto(2) on an AF_UNIX SOCK_DGRAM
// socket, which Node's core does not have. Our own addon supplies it
// (src/native/datagram.c, built by node-gyp at `npm ci`, docs/OPERATION.md,
// "Logging"): Node-API only, so a build keeps loading after an upgrade of
// Node.js. If it does not load (never built: no compiler at install), the
// server serves on without those datagrams; the failed load is said once,
// on standard error, with what to do, and the callers go on without it.
// The addon's other calls are here too: malloc_trim (releaseFreePages),
// the process's name (nameProcess) and FD_CLOEXEC (markCloseOnExec);
// SO_BINDTODEVICE's is serve/device-socket.ts's.

import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { getSystemErrorName } from "node:util";
import { strerror } from "../config/os-error.js";
import { notifyWarning } from "./daemonize.js";

/** src/native/datagram.c's calls; errors other than open()'s come back as errno numbers. */
export interface DatagramAddon {
  open(): number;
  sendTo(fd: number, path: Buffer, data: Buffer): number;
  close(fd: number): number;
  /**
   * malloc_trim(0): true if pages went back to the kernel. Absent from a
   * build of the addon older than the call (one not rebuilt since).
   */
  trimHeap?(): boolean;
  /** prctl(PR_SET_NAME): 0 or an errno. Absent from a build older than the call. */
  setProcessName?(name: string): number;
  /** fcntl(F_SETFD, FD_CLOEXEC): 0 or an errno. Absent from a build older than the call. */
  closeOnExec?(fd: number): number;
  /**
   * A TCP socket bound to `address` (numeric) and `port` on interface
   * `device` (SO_BINDTODEVICE), not yet listening: its descriptor, or minus
   * an errno. Absent from a build older than the call.
   */
  bindOnDevice?(address: string, port: number, device: string): number;
}

/** A non-blocking unix datagram socket that is never connected. */
export interface DatagramSocket {
  /**
   * Sends one datagram to the socket at `path` ("\0name" for an abstract
   * one). Undefined once it is queued; otherwise why not, in strerror's
   * words (a full receiver: "Resource temporarily unavailable", and the
   * datagram is dropped). Never throws, never blocks.
   */
  send(data: Buffer | string, path: string): string | undefined;
  close(): void;
}

/** Why the addon did not load, said in full for an operator. */
export interface AddonUnavailable {
  readonly unavailable: string;
}

/** The installation: where `npm rebuild` must run, and where node-gyp puts the addon. */
const INSTALL_DIR = fileURLToPath(new URL("../../../../", import.meta.url)).replace(/\/$/, "");
const ADDON = `${INSTALL_DIR}/build/Release/mandos_datagram.node`;

const require = createRequire(import.meta.url);

let loaded: DatagramAddon | AddonUnavailable | undefined;

/**
 * Why a load failed, in one line: the loader's first line (Node's "Cannot
 * find module" for an addon never built), and the command that fixes it.
 */
export function describeLoadFailure(error: unknown, dir: string = INSTALL_DIR, version = process.version): string {
  const text = error instanceof Error ? error.message : String(error);
  const why = text.split("\n")[0]!.trim();
  return `the datagram addon does not load on Node.js ${version} (${why}); ` +
    `run "npm rebuild" in ${dir} (it needs a C compiler: Debian's build-essential)`;
}

/** The addon, or why it does not load; tried once a process. `path` is for tests. */
export function datagramAddon(path = ADDON): DatagramAddon | AddonUnavailable {
  if (path !== ADDON) return load(path);
  loaded ??= load(path);
  return loaded;
}

function load(path: string): DatagramAddon | AddonUnavailable {
  try {
    return require(path) as DatagramAddon;
  } catch (error) {
    return { unavailable: describeLoadFailure(error) };
  }
}

/**
 * Gives the kernel back the pages left free inside malloc's arenas
 * (malloc_trim(0), through the addon): each thread's arena keeps what it
 * once grew to, ~10 MiB free but resident in a reboot wave (docs/
 * BENCHMARK.md, "Free pages in malloc's arenas"). Walks every arena's free
 * chunks, holding each arena's lock meanwhile, so it is for after a full
 * collection, not for every connection. False, and nothing done, without
 * the addon (the failed load is said by whoever needed its datagrams) or
 * with a build older than the call.
 */
export function releaseFreePages(): boolean {
  const addon = datagramAddon();
  if ("unavailable" in addon || typeof addon.trimHeap !== "function") return false;
  return addon.trimHeap();
}

/**
 * Names the process `name` in /proc/PID/comm (the main thread's name), as
 * the reference's is: Debian's init script stops and reloads it with
 * `start-stop-daemon --name mandos`, which found "node" and nothing to
 * stop. The command line stays as it is. By the addon's prctl, or where
 * it is absent (never built) by writing /proc/self/comm, which Linux lets
 * a thread do for its own group: without it the init script could not
 * stop the server. False if neither could.
 */
export function nameProcess(name: string): boolean {
  const addon = datagramAddon();
  if (!("unavailable" in addon) && typeof addon.setProcessName === "function" && addon.setProcessName(name) === 0) return true;
  try {
    writeFileSync("/proc/self/comm", name);
    return true;
  } catch {
    return false;
  }
}

/**
 * Marks descriptor `fd` close-on-exec (FD_CLOEXEC): this process keeps it,
 * the processes it starts do not get it (src/main/clients/
 * inherited-descriptors.ts). False, and nothing done, without the addon
 * (or with a build older than the call), or if fcntl(2) refuses.
 */
export function markCloseOnExec(fd: number): boolean {
  const addon = datagramAddon();
  if ("unavailable" in addon || typeof addon.closeOnExec !== "function") return false;
  return addon.closeOnExec(fd) === 0;
}

/** An errno from the addon in strerror's words. */
function inWords(errno: number): string {
  return strerror(getSystemErrorName(-errno));
}

/** A socket of `addon`'s; null if the system refuses one (out of descriptors), said by `refused`. */
export function openDatagramSocket(addon: DatagramAddon, refused: (why: string) => void = () => undefined): DatagramSocket | null {
  let fd: number;
  try {
    fd = addon.open();
  } catch (error) {
    const code = Number((error as { code?: unknown }).code);
    refused(Number.isInteger(code) ? inWords(code) : String(error));
    return null;
  }
  let lastPath = "";
  let lastPathBytes = Buffer.alloc(0);
  return {
    send(data, path) {
      if (fd < 0) return "the socket is closed";
      if (path !== lastPath) {
        lastPath = path;
        lastPathBytes = Buffer.from(path, "utf8");
      }
      const errno = addon.sendTo(fd, lastPathBytes, typeof data === "string" ? Buffer.from(data, "utf8") : data);
      return errno === 0 ? undefined : inWords(errno);
    },
    close() {
      if (fd >= 0) addon.close(fd);
      fd = -1;
    },
  };
}

/** What the server already said it goes without, this process. */
const said = new Set<string>();

/**
 * A datagram socket, or null after saying on `stderr` why not and what the
 * server goes without (`losing`, e.g. "syslog"): the addon's failure once a
 * process, each loss once.
 */
export function datagramSocketOrSay(losing: string, stderr: NodeJS.WritableStream = process.stderr): DatagramSocket | null {
  const addon = datagramAddon();
  const say = (text: string): void => {
    stderr.write(`Mandos [${process.pid}]: ${text}\n`);
    // A detached daemon's stderr is /dev/null: whoever started it hears it through the parent.
    notifyWarning(text);
  };
  if ("unavailable" in addon) {
    if (!said.has(losing)) {
      say(said.size === 0 ? `${addon.unavailable}; until then, no ${losing}` : `the datagram addon does not load (see above), so also no ${losing}`);
      said.add(losing);
    }
    return null;
  }
  return openDatagramSocket(addon, (why) => say(`cannot open a unix datagram socket (${why}), so no ${losing}`));
}
