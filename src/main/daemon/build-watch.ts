// Says when the mandos-ts installed is no longer the build this server
// runs: `npm install -g` of another tarball, and no restart yet. The
// server keeps running its own build (what it starts later checks itself,
// src/build.ts), so nothing breaks, but the new version does not run
// either, and neither SIGHUP nor `systemctl reload` loads it. Debian's
// package restarts the reference as it upgrades; npm restarts nothing.
//
// Read every BUILD_CHECK_MS and at each SIGHUP: one WARNING a change, and
// one INFO if the server's own build is installed again (a way back). A
// stamp the server may not read (an installation readable by root alone,
// after the privilege drop) says nothing.

import { otherBuildMessage, readableBuild, type BuildStamp } from "../../build.js";
import type { Logger } from "./log.js";

/** A minute: the stamp is ~50 bytes, read in ~20 µs. */
export const BUILD_CHECK_MS = 60_000;

export class BuildWatch {
  readonly #running: BuildStamp;
  readonly #logger: Logger;
  readonly #read: () => BuildStamp | null;
  #seen: string;
  #timer: NodeJS.Timeout | null = null;

  /** `read`: where the installed stamp comes from (tests); null: not readable by us, so nothing to say. */
  constructor(running: BuildStamp, logger: Logger, read: () => BuildStamp | null = readableBuild) {
    this.#running = running;
    this.#logger = logger;
    this.#read = read;
    this.#seen = running.build;
  }

  /** Reads the installed stamp now; logs if it changed since the last read. */
  check(): void {
    const installed = this.#read();
    if (installed === null || installed.build === this.#seen) return;
    this.#seen = installed.build;
    if (installed.build === this.#running.build) this.#logger.info("The installed mandos-ts is this server's build again");
    else this.#logger.warning(otherBuildMessage(installed, this.#running, { sentence: true }));
  }

  start(intervalMs = BUILD_CHECK_MS): void {
    this.#timer ??= setInterval(() => this.check(), intervalMs).unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
