// The real mandos-client decrypts its password through GPGME, which starts
// a gpg-agent in a fresh /tmp/mandosXXXXXX (or /run/tmp/mandosXXXXXX)
// home. In an initial RAM disk that agent dies at switch_root; run from a
// test it outlives the client, even after a successful run, and keeps its
// directory (a client killed by a test leaves its directory too). Every test
// file that runs mandos-client (through peers.ts) ends by stopping the
// agents that appeared while it ran, and removing the directories that
// appeared. Test files run one at a time (`--test-concurrency=1`), so those
// are ours.

import { readdirSync, readFileSync, rmSync } from "node:fs";

const HOME = /^(?:\/run)?\/tmp\/mandos[A-Za-z0-9]{6}$/;

/** gpg-agents started for mandos-client, by pid, with their home directory. */
export function mandosClientAgents(): Map<number, string> {
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
    const home = argv[argv.indexOf("--homedir") + 1];
    if (argv.includes("--homedir") && home && HOME.test(home)) agents.set(Number(entry), home);
  }
  return agents;
}

/** mandos-client's temporary directories that exist now. */
function mandosClientHomes(): Set<string> {
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

const agentsBefore = new Set(mandosClientAgents().keys());
const homesBefore = mandosClientHomes();

process.on("exit", () => {
  for (const [pid, home] of mandosClientAgents()) {
    if (agentsBefore.has(pid)) continue;
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
    rmSync(home, { recursive: true, force: true });
  }
  for (const home of mandosClientHomes()) if (!homesBefore.has(home)) rmSync(home, { recursive: true, force: true });
});
