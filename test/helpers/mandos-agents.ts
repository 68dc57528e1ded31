// The gpg-agents that Mandos programs start and leave behind: the real
// mandos-client's GPGME starts one in /tmp/mandosXXXXXX (or
// /run/tmp/mandosXXXXXX), the Python reference server's in
// /tmp/mandos-XXXXXXXX. In an initial RAM disk or a long-running server that
// is harmless; a test or a benchmark that starts them many times must stop
// them. Used by bench/reboot.ts and test/helpers/gpg-agents.ts.
//
// Only agents of this process's own children are stopped: each agent
// inherits its client's environment, and the client this process's
// (AGENT_MARK, set by snapshotAgents). Stopping every agent that appeared
// meanwhile took those of another test run going at the same time (a
// helper's single test file beside the full suite), and removed the home a
// running mandos-client was decrypting in: "bad gpgme_op_decrypt: GnuPG:
// No such file or directory", seen failing three tests of a full run.

import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";

const HOME = /^(?:\/run)?\/tmp\/mandos(?:[A-Za-z0-9]{6}|-[A-Za-z0-9_]{8})$/;

/** The environment variable that names, in an agent's environment, the process whose child started it. */
export const AGENT_MARK = "MANDOS_TS_AGENTS_OF";

/** A home with no agent is taken for another run's only when it is this old (no test or bench run takes so long). */
const ORPHAN_HOME_AGE_MS = 15 * 60_000;

/** Whether agent `pid` was started under this process (its environment carries our mark). */
function ours(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").includes(`${AGENT_MARK}=${process.pid}`);
  } catch {
    return false;
  }
}

/** gpg-agents started for Mandos programs, by pid, with their home directory. */
export function mandosAgents(): Map<number, string> {
  const agents = new Map<number, string>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // gone meanwhile
    }
    if (!argv[0]?.endsWith("gpg-agent")) continue;
    const at = argv.indexOf("--homedir");
    const home = at >= 0 ? argv[at + 1] : undefined;
    if (home && HOME.test(home)) agents.set(Number(entry), home);
  }
  return agents;
}

/** Mandos programs' temporary directories that exist now. */
export function mandosHomes(): Set<string> {
  const homes = new Set<string>();
  for (const parent of ["/tmp", "/run/tmp"]) {
    let names: string[];
    try {
      names = readdirSync(parent);
    } catch {
      continue;
    }
    for (const name of names) if (HOME.test(`${parent}/${name}`)) homes.add(`${parent}/${name}`);
  }
  return homes;
}

/** What exists now, to leave alone later. */
export interface AgentSnapshot {
  readonly agents: ReadonlySet<number>;
  readonly homes: ReadonlySet<string>;
}

/** What exists now; and from now on this process's children's agents carry its mark. */
export function snapshotAgents(): AgentSnapshot {
  process.env[AGENT_MARK] ??= String(process.pid);
  return { agents: new Set(mandosAgents().keys()), homes: mandosHomes() };
}

/**
 * Stops the agents of this process's children that appeared since
 * `before`, and removes their homes; a home with no agent that appeared
 * since is removed only once ORPHAN_HOME_AGE_MS old (its client killed
 * before it started one). Synchronous (exit hooks).
 */
export function stopAgentsSince(before: AgentSnapshot): void {
  const agents = mandosAgents();
  for (const [pid, home] of agents) {
    if (before.agents.has(pid) || !ours(pid)) continue;
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
    removeHome(home);
  }
  const withAgent = new Set(agents.values());
  for (const home of mandosHomes()) {
    if (before.homes.has(home) || withAgent.has(home) || !olderThan(home, ORPHAN_HOME_AGE_MS)) continue;
    removeHome(home);
  }
}

function olderThan(path: string, ms: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs > ms;
  } catch {
    return false;
  }
}

/**
 * Removes an agent's home. The agent, or a client killed a moment ago, may
 * still be writing in it as it goes (rmdir then fails with ENOTEMPTY): a few
 * tries, and a directory left behind is said rather than thrown from an exit
 * hook, where it would fail a test file whose tests all passed.
 */
function removeHome(home: string): void {
  try {
    rmSync(home, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
  } catch (error) {
    process.stderr.write(`mandos-agents: left ${home}: ${(error as Error).message}\n`);
  }
}
