// An operating-system error in words, as the reference prints it (Python's
// OSError.strerror, which is glibc's strerror): "No such file or directory",
// not "ENOENT". libuv words differ from glibc's for a few codes (EISDIR is
// "illegal operation on a directory" there), so the usual file errors are
// spelled out here; any other code falls back to libuv's words.

const STRERROR: Readonly<Record<string, string>> = {
  EACCES: "Permission denied",
  EADDRINUSE: "Address already in use",
  EADDRNOTAVAIL: "Cannot assign requested address",
  EAFNOSUPPORT: "Address family not supported by protocol",
  EAGAIN: "Resource temporarily unavailable",
  EBADF: "Bad file descriptor",
  EBUSY: "Device or resource busy",
  ECONNREFUSED: "Connection refused",
  EDQUOT: "Disk quota exceeded",
  EEXIST: "File exists",
  EINVAL: "Invalid argument",
  EIO: "Input/output error",
  EISDIR: "Is a directory",
  ELOOP: "Too many levels of symbolic links",
  EMFILE: "Too many open files",
  ENAMETOOLONG: "File name too long",
  ENFILE: "Too many open files in system",
  ENOENT: "No such file or directory",
  ENOSPC: "No space left on device",
  ENOTDIR: "Not a directory",
  ENOTSOCK: "Socket operation on non-socket",
  EOPNOTSUPP: "Operation not supported",
  EPERM: "Operation not permitted",
  EPROTOTYPE: "Protocol wrong type for socket",
  EROFS: "Read-only file system",
  EXDEV: "Invalid cross-device link",
};

/** strerror(3)'s words for an errno name ("ENOENT"), or the name itself when unknown. */
export function strerror(code: string): string {
  return STRERROR[code] ?? code;
}

/**
 * reasonInWords with the errno name after it, where the words do not hold
 * it already: "Permission denied (EACCES)".
 */
export function reasonWithCode(error: unknown): string {
  const words = reasonInWords(error);
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === undefined || words.includes(code) ? words : `${words} (${code})`;
}

/** The reason an error gives, in words: strerror for system errors, else the message. */
export function reasonInWords(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== undefined && STRERROR[code] !== undefined) return STRERROR[code];
  // libuv: "ENOENT: no such file or directory, open '/x'".
  const libuv = /^E[A-Z0-9]+: ([^,]+)/.exec(error.message);
  if (libuv?.[1] !== undefined) return libuv[1].charAt(0).toUpperCase() + libuv[1].slice(1);
  return error.message;
}
