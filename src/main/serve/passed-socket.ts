// `--socket FD`: is the descriptor one we can serve on? Node's listen({ fd })
// says "listen EINVAL" for a closed descriptor, a file and a datagram socket
// alike, and takes a UNIX-domain socket, whose every connection we then
// reset. The reference fails at start with the kernel's word for each
// (EBADF, ENOTSOCK, EOPNOTSUPP from listen(2)), exit 1; we say the same
// words, and refuse a UNIX-domain socket too (the reference listens on it
// and serves no one: its peers have no IP address).

import { fstatSync } from "node:fs";
import { strerror } from "../config/os-error.js";

export const OPEN_FDS_ENV = "MANDOS_OPEN_FDS";
/** The descriptors bin/mandos's shell line looks at: 3 to this. */
const OPEN_FDS_CHECKED_UP_TO = 63;

/**
 * Descriptors 3-63 open when bin/mandos's shell line ran, before node:
 * Node opens its own (epoll, eventfds, pipes) from 3 up before any script,
 * so a --socket number its starter left closed is Node's by the time we
 * look, and fstat cannot tell. Undefined if not known (`node bin/mandos`).
 */
let openAtStart: ReadonlySet<number> | undefined;

/** Once, first thing (process-guards.ts): reads and removes MANDOS_OPEN_FDS (checkers are not to see it). */
export function takeOpenFdsAtStart(env: NodeJS.ProcessEnv = process.env): void {
  const list = env[OPEN_FDS_ENV];
  delete env[OPEN_FDS_ENV];
  if (list !== undefined && openAtStart === undefined) openAtStart = new Set(list.split(" ").filter(Boolean).map(Number));
}

/** A passed socket that cannot be served on; `code` is the errno name, the message says it in the reference's words. */
export class PassedSocketError extends Error {
  readonly code: "EBADF" | "ENOTSOCK" | "EINVAL" | "EOPNOTSUPP" | "EAFNOSUPPORT";

  constructor(code: PassedSocketError["code"], message: string) {
    super(message);
    this.name = "PassedSocketError";
    this.code = code;
  }
}

/** The refusal of `fd`, in the reference's words (glibc's strerror, config/os-error.ts). */
export function passedSocketError(fd: number, code: PassedSocketError["code"], why?: string): PassedSocketError {
  return new PassedSocketError(code, `--socket ${fd}: ${strerror(code)}${why ? ` (${why})` : ""}`);
}

/**
 * Checks before listening: the descriptor is open and a socket, and no
 * address or port is asked for besides. The reference binds a passed socket
 * to --address/--port when either is set; the socket is bound already (that
 * is what --socket is for), and bind(2) fails with EINVAL. Null if fine.
 */
export function checkPassedSocket(fd: number, address: string, port: number): PassedSocketError | null {
  if (openAtStart !== undefined && fd >= 3 && fd <= OPEN_FDS_CHECKED_UP_TO && !openAtStart.has(fd)) return passedSocketError(fd, "EBADF");
  let isSocket: boolean;
  try {
    isSocket = fstatSync(fd).isSocket();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EBADF") return passedSocketError(fd, "EBADF");
    throw error;
  }
  if (!isSocket) return passedSocketError(fd, "ENOTSOCK");
  if (address !== "" || port !== 0) return passedSocketError(fd, "EINVAL", "with --address or --port: the socket is bound already");
  return null;
}
