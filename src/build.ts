// Which build of mandos-ts a set of files is: the stamp that the package's
// build writes beside this module (scripts/stamp-build.sh), read from disk
// at each call.
//
// Why: `npm install -g` of a newer tarball replaces the files under a
// running server. The server has loaded its modules, but a few pieces load
// theirs later: a handshake worker or the checker host started again after
// it died. Those would be the new build's, speaking to the old one. So the
// server reads its build once as it starts and gives it to each such
// piece, which compares it with the stamp of its own files and, if they
// differ, says so instead of running (docs/OPERATION.md, "Upgrades").
// That comparison, and the words each piece says it with, must stay the
// same in every later build: the newer side is the one that checks.

import { readFileSync } from "node:fs";

/** What a build without a stamp (a bare `tsc`) reads as: equal to itself, so tests of bare builds run as one build. */
export const UNSTAMPED = "unstamped";

export interface BuildStamp {
  /** package.json's version. */
  readonly version: string;
  /** 12 hex digits of the SHA-256 of the built files and the lock file. */
  readonly build: string;
}

const STAMP = new URL("./build.json", import.meta.url);

/** The stamp of the files installed now beside this module; UNSTAMPED for a build without one, or one that cannot be read. */
export function installedBuild(): BuildStamp {
  return readableBuild() ?? { version: UNSTAMPED, build: UNSTAMPED };
}

/**
 * As installedBuild(), but null when this process may not read the stamp:
 * an installation readable by root alone, read after the server dropped
 * its privileges, says nothing about which build it is.
 */
export function readableBuild(): BuildStamp | null {
  let text: string;
  try {
    text = readFileSync(STAMP, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "EACCES" || code === "EPERM" ? null : { version: UNSTAMPED, build: UNSTAMPED };
  }
  try {
    const stamp = JSON.parse(text) as Partial<BuildStamp>;
    if (typeof stamp.version === "string" && typeof stamp.build === "string") return { version: stamp.version, build: stamp.build };
  } catch {
    // Not JSON: unstamped.
  }
  return { version: UNSTAMPED, build: UNSTAMPED };
}

/**
 * What a piece the server started later says, as it loads, if its files
 * (installed now) are another build than `server`, the server's as it
 * started; null if they are the same build, or no build was given.
 */
export function otherBuildThan(server: BuildStamp | undefined): string | null {
  if (server === undefined) return null;
  const installed = installedBuild();
  return installed.build === server.build ? null : otherBuildMessage(installed, server);
}

/** "0.1.0 (build 0123456789ab)", for logs and --version. */
export function describeBuild(stamp: BuildStamp): string {
  return stamp.build === UNSTAMPED ? "an unstamped build" : `${stamp.version} (build ${stamp.build})`;
}

/**
 * What a piece loaded late says when its files are another build than the
 * server's, and what the server logs: the same words everywhere; a
 * sentence of its own with `sentence`, else to follow a colon.
 */
export function otherBuildMessage(installed: BuildStamp, running: BuildStamp, { sentence = false } = {}): string {
  return `${sentence ? "The" : "the"} installed mandos-ts is ${describeBuild(installed)}, not this server's ${describeBuild(running)}: restart mandos to run it`;
}
