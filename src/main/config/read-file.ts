// Reading a configuration file as ConfigParser.read() does: a file that
// cannot be opened is silently skipped (Python catches OSError there), but
// one that is not valid UTF-8 is an error. Opened without blocking, and
// read only if it is a regular file (or a character device: /dev/null):
// a FIFO or a socket in its place, which would hold the main thread (and
// every connection) for ever at a SIGHUP, is refused as unreadable.

import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from "node:fs";
import { ConfigError } from "./errors.js";

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The text of a configuration file's bytes, or the line (from 1) of its
 * first byte that is not UTF-8. Lines are cut at the newline byte, which no
 * multi-byte UTF-8 sequence contains.
 */
export function decodeConfigText(bytes: Uint8Array): string | { readonly badLine: number } {
  try {
    return UTF8.decode(bytes);
  } catch {
    let start = 0;
    for (let line = 1; ; line++) {
      const end = bytes.indexOf(0x0a, start);
      try {
        UTF8.decode(bytes.subarray(start, end < 0 ? bytes.length : end));
      } catch {
        return { badLine: line };
      }
      if (end < 0) return { badLine: line };
      start = end + 1;
    }
  }
}

/** Why a configuration file was skipped: the error opening or reading it (missing, no permission). */
export interface ConfigUnreadable {
  readonly unreadable: NodeJS.ErrnoException;
}

/**
 * The error for a file that is not one a server should read or write
 * (a FIFO, a socket, a block device); null when it is a regular file or a
 * character device. Its message is the reason in words (reasonInWords).
 */
export function notARegularFile(path: string, st: Stats): NodeJS.ErrnoException | null {
  if (st.isFile() || st.isCharacterDevice()) return null;
  if (st.isDirectory()) return Object.assign(new Error(`EISDIR: illegal operation on a directory, read '${path}'`), { code: "EISDIR", path });
  const kind = st.isFIFO() ? "a FIFO" : st.isSocket() ? "a socket" : st.isBlockDevice() ? "a block device" : "not a file";
  return Object.assign(new Error(`${kind}, not a regular file`), { path });
}

/** All of `path`'s bytes, opened with O_NONBLOCK and read only if notARegularFile allows it; throws the errno error. */
export function readRegularFile(path: string): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const wrong = notARegularFile(path, fstatSync(fd));
    if (wrong !== null) throw wrong;
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The text of `path`, or why it cannot be read. */
export function readConfigText(path: string): string | ConfigUnreadable {
  let bytes: Buffer;
  try {
    bytes = readRegularFile(path);
  } catch (error) {
    return { unreadable: error as NodeJS.ErrnoException };
  }
  const text = decodeConfigText(bytes);
  if (typeof text !== "string") throw new ConfigError("CONFIG_UNREADABLE", { file: path, line: text.badLine }, "not valid UTF-8");
  return text;
}
