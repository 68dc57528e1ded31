// Pid file, as the reference keeps it: /run/mandos.pid (or /var/run/mandos.pid
// when /run is not a directory), opened before privileges are dropped so that
// root may create it, written with the daemon's pid once it runs in the
// background, mode 0644 from the default umask. Only when not --foreground.
// Unlike the reference we remove it at clean exit.

import { closeSync, openSync, statSync, unlinkSync, writeSync } from "node:fs";
import { PidFileError } from "./errors.js";
import { pyRepr } from "../python/repr.js";
import { reasonInWords } from "../config/os-error.js";

export function defaultPidFilePath(runDir = "/run", varRunDir = "/var/run"): string {
  try {
    if (statSync(`${runDir}/.`).isDirectory()) return `${runDir}/mandos.pid`;
  } catch {
    // fall through: no /run
  }
  return `${varRunDir}/mandos.pid`;
}

/** An opened (truncated) pid file; write the pid later, after dropping privileges. */
export class PidFile {
  readonly path: string;
  #fd: number | undefined;
  #written = false;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.#fd = fd;
  }

  /** Open for writing now (as root), like codecs.open(pidfilename, "w"). */
  static open(path = defaultPidFilePath()): PidFile {
    try {
      return new PidFile(path, openSync(path, "w", 0o644));
    } catch (err) {
      // The reference logs the OSError's traceback after this line; ours says the reason on it.
      throw new PidFileError(`Could not open file ${pyRepr(path)}: ${reasonInWords(err)}`, { cause: err });
    }
  }

  /** Write `PID\n` and close. */
  write(pid = process.pid): void {
    if (this.#fd === undefined) return;
    try {
      writeSync(this.#fd, `${pid}\n`);
      this.#written = true;
    } catch (err) {
      throw new PidFileError(`Could not write to file ${pyRepr(this.path)} with PID ${pid}: ${reasonInWords(err)}`, { cause: err });
    } finally {
      closeSync(this.#fd);
      this.#fd = undefined;
    }
  }

  /** Remove at clean exit; ignores a file already gone or not ours to remove. */
  remove(): void {
    if (this.#fd !== undefined) {
      closeSync(this.#fd);
      this.#fd = undefined;
    }
    try {
      unlinkSync(this.path);
    } catch {
      // After dropping privileges /run may refuse us; the reference never removes it at all.
    }
    this.#written = false;
  }

  get written(): boolean {
    return this.#written;
  }
}
