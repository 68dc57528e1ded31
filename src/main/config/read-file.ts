// Reading a configuration file as ConfigParser.read() does: a file that
// cannot be opened is silently skipped (Python catches OSError there), but
// one that is not valid UTF-8 is an error.

import { readFileSync } from "node:fs";
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

/** The text of `path`, or why it cannot be read. */
export function readConfigText(path: string): string | ConfigUnreadable {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    return { unreadable: error as NodeJS.ErrnoException };
  }
  const text = decodeConfigText(bytes);
  if (typeof text !== "string") throw new ConfigError("CONFIG_UNREADABLE", { file: path, line: text.badLine }, "not valid UTF-8");
  return text;
}
