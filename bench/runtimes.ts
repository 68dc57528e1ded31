// The other Node.js releases that scripts/install-test-runtimes.sh fetched
// (.cache/runtimes/node-MAJOR: the official build in node/, the project's
// production dependencies installed by it in app/), and a fresh copy of this
// build beside each: test/runtimes.test.ts runs tests under them, and the
// benchmark's native part measures the server on each (docs/BENCHMARK.md).

import { spawnSync } from "node:child_process";
import { cpSync, existsSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

export interface Runtime {
  /** "18", "22", "24", "26". */
  readonly major: string;
  /** Its node binary. */
  readonly node: string;
  /** What it says of itself ("v22.23.5"). */
  readonly version: string;
  /** Where a copy of the build sits beside its dependencies (bin/mandos, dist/). */
  readonly app: string;
}

/** What may be linked into the copy: read as data, never resolved as modules (those must come from the copy, beside its node_modules). */
const DATA = ["src", "bench", "test", "example", "contrib", "scripts", "docs", "README.md"];

/** The runtime of `major` as fetched, or why it cannot be used. */
export function fetchedRuntime(major: string, repo = REPO): Runtime | { readonly missing: string } {
  const root = join(repo, ".cache", "runtimes", `node-${major}`);
  const node = join(root, "node", "bin", "node");
  const app = join(root, "app");
  if (!existsSync(node) || !existsSync(join(app, ".lock-sha256"))) {
    return { missing: `Node ${major} not fetched (scripts/install-test-runtimes.sh needs the npm registry)` };
  }
  if (readFileSync(join(app, "package-lock.json"), "utf8") !== readFileSync(join(repo, "package-lock.json"), "utf8")) {
    return { missing: `Node ${major}'s dependencies are older than package-lock.json: run scripts/install-test-runtimes.sh` };
  }
  const version = spawnSync(node, ["--version"], { encoding: "utf8" }).stdout?.trim() ?? "";
  return { major, node, version, app };
}

/**
 * The releases besides the machine's that the server must run on: 18,
 * Debian 12's own `nodejs` (the Debian release whose mandos is 1.8.16),
 * and the long-term-support lines after 20 (26 became one in October
 * 2026). scripts/install-test-runtimes.sh fetches the same by default (a
 * test holds the two lists together).
 */
export const RUNTIME_MAJORS: readonly string[] = ["18", "22", "24", "26"];

/** Every runtime fetched, of RUNTIME_MAJORS. */
export function fetchedRuntimes(repo = REPO): Runtime[] {
  return RUNTIME_MAJORS.map((major) => fetchedRuntime(major, repo)).filter((r): r is Runtime => !("missing" in r));
}

/**
 * The native addon as `npm ci` built it on this machine's Node.js: copied as
 * it is, since a Node-API build must load on every release (an upgrade of
 * Node.js does not rebuild it).
 */
export const ADDON = join("build", "Release", "mandos_datagram.node");

/** Puts a fresh copy of `repo`'s build (dist/, bin/, the addon) into the runtime's app directory, and links the data beside it. */
export function copyBuild(runtime: Runtime, repo = REPO): void {
  for (const dir of ["dist", "bin", "build"]) {
    rmSync(join(runtime.app, dir), { recursive: true, force: true });
  }
  for (const dir of ["dist", "bin"]) cpSync(join(repo, dir), join(runtime.app, dir), { recursive: true });
  cpSync(join(repo, ADDON), join(runtime.app, ADDON));
  for (const entry of DATA) {
    if (!existsSync(join(runtime.app, entry))) symlinkSync(join(repo, entry), join(runtime.app, entry));
  }
}
