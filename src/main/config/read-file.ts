// Reading a configuration file as ConfigParser.read() does: a file that
// cannot be opened is silently skipped (Python catches OSError there), but
// one that is not valid UTF-8 is an error.

import { readFileSync } from "node:fs";
import { ConfigError } from "./errors.js";

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** The text of `path`, or undefined when it cannot be read (missing, no permission). */
export function readConfigText(path: string): string | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    return undefined;
  }
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new ConfigError("CONFIG_UNREADABLE", { file: path, line: 0 }, "file is not valid UTF-8");
  }
}
