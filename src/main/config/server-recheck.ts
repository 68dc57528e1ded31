// At SIGHUP: mandos.conf read again and compared with what the server runs
// with, never applied. The reference quits at SIGHUP and systemd starts it
// again with the new file; ours stays up and re-reads clients.conf only
// (clients/reload.ts), so an admin who edited mandos.conf and reloaded must
// be told that a restart is needed, and which settings it would change.
// A file the server can no longer read is said once, with why and what to
// do, until it reads again: the weekly logrotate reload would repeat it.

import { reasonInWords } from "./os-error.js";
import { SERVER_OPTION_NAMES, loadServerConfig, type ServerConfig, type ServerConfigFile } from "./server-config.js";
import { givenInFile, mergeSettings, type ServerFileSettings } from "./server-settings.js";
import type { CommandLine } from "./cli.js";
import type { Logger } from "../daemon/log.js";

/** The defaults mergeSettings fills in; the same at start and at each check. */
type MergeDefaults = Parameters<typeof mergeSettings>[2];

export class ServerConfigRecheck {
  /** mandos.conf, absolute: the server may have moved to "/". */
  readonly #path: string;
  readonly #cli: CommandLine;
  readonly #defaults: MergeDefaults;
  /** The file's values the server runs with (set and not empty). */
  readonly #running: ServerFileSettings;
  readonly #foundAtStart: boolean;
  /** Why the file could not be read, as last said; undefined while it reads. */
  #unreadableSaid: string | undefined;

  /** `started`: the file the server started with. */
  constructor(path: string, cli: CommandLine, defaults: MergeDefaults, started: ServerConfigFile) {
    this.#path = path;
    this.#cli = cli;
    this.#defaults = defaults;
    this.#running = givenInFile(started);
    this.#foundAtStart = started.found;
  }

  /**
   * Reads the file again and logs one warning if it now differs (naming
   * the options) or cannot be used (naming file, line and key); nothing
   * when it is as at start.
   */
  check(logger: Logger): void {
    let now: ServerConfigFile;
    try {
      now = loadServerConfig(this.#path);
      // What the start would refuse: a bad value, checked after parsing.
      mergeSettings(this.#cli, givenInFile(now), this.#defaults, now);
    } catch (error) {
      logger.warning(`${error instanceof Error ? error.message : String(error)}; mandos.conf is not applied at SIGHUP, and the server would not start with it`);
      return;
    }
    // Not every setting changed back to its default: the file is gone or not ours to read.
    if (this.#foundAtStart && !now.found) {
      const why = { code: now.unreadable?.code ?? "unknown", words: reasonInWords(now.unreadable) };
      // Said at an earlier SIGHUP, and still so.
      if (why.code === this.#unreadableSaid) return;
      this.#unreadableSaid = why.code;
      logger.warning(`${this.#path} cannot be read now (${why.words}); the server goes on with the settings it started with${advice(why.code)}` +
        " (said once until it can be read again)");
      return;
    }
    this.#unreadableSaid = undefined;
    const changed = changedOptions(this.#running, givenInFile(now), this.#cli);
    if (changed.length === 0) return;
    logger.warning(`${this.#path} changed since start (${changed.join(", ")}); a SIGHUP re-reads only clients.conf: restart the server to apply it`);
  }
}

/** What to do about it, after a "; ". */
function advice(code: string): string {
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  const runsAs = uid === undefined ? "the user the server runs as" : `the user the server runs as (${uid}:${gid ?? "?"})`;
  if (code === "EACCES" || code === "EPERM") return `; make it readable by ${runsAs}, as Debian ships it (root:root 0644), so that it can be compared at SIGHUP`;
  if (code === "ENOENT") return "; put it back: a restart without it would run with the defaults";
  return "";
}

/** mandos.conf's names of the settings whose value differs; those the command line gives are not the file's to change. */
export function changedOptions(before: ServerFileSettings, after: ServerFileSettings, cli: CommandLine): string[] {
  const changed: string[] = [];
  for (const [field, name] of Object.entries(SERVER_OPTION_NAMES) as [keyof ServerConfig, string][]) {
    if ((cli as Partial<Record<keyof ServerConfig, unknown>>)[field] !== undefined) continue;
    const was = (before as Partial<Record<keyof ServerConfig, unknown>>)[field];
    const is = (after as Partial<Record<keyof ServerConfig, unknown>>)[field];
    if (was !== is) changed.push(name);
  }
  return changed;
}
