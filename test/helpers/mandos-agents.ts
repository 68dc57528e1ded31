// The gpg-agents that Mandos programs start and leave behind: the real
// mandos-client's GPGME starts one in /tmp/mandosXXXXXX (or
// /run/tmp/mandosXXXXXX), the Python reference server's in
// /tmp/mandos-XXXXXXXX. In an initial RAM disk or a long-running server that
// is harmless; a test or a benchmark that starts them many times must stop
// them. Used by bench/reboot.ts and test/helpers/gpg-agents.ts.

import { readdirSync, readFileSync, rmSync } from "node:fs";

const HOME = /^(?:\/run)?\/tmp\/mandos(?:[A-Za-z0-9]{6}|-[A-Za-z0-9_]{8})$/;

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

export function snapshotAgents(): AgentSnapshot {
  return { agents: new Set(mandosAgents().keys()), homes: mandosHomes() };
}

/** Stops the agents, and removes the directories, that appeared since `before`. Synchronous (exit hooks). */
export function stopAgentsSince(before: AgentSnapshot): void {
  for (const [pid, home] of mandosAgents()) {
    if (before.agents.has(pid)) continue;
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
    removeHome(home);
  }
  for (const home of mandosHomes()) if (!before.homes.has(home)) removeHome(home);
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
