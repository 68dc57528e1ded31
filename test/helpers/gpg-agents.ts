// The real mandos-client decrypts its password through GPGME, which starts
// a gpg-agent in a fresh /tmp/mandosXXXXXX home; the Python reference
// server starts one in /tmp/mandos-XXXXXXXX. Run from a test, the agent
// outlives its program, even after a successful run, and keeps its
// directory (a client killed by a test leaves its directory too). Every
// test file that uses the Debian peers (through peers.ts) ends by stopping
// the agents that appeared while it ran, and removing the directories that
// appeared. Only its children's agents are stopped (their environment
// carries this process's mark: mandos-agents.ts), so that another test run
// going at the same time keeps its own.

import { snapshotAgents, stopAgentsSince } from "./mandos-agents.js";

const before = snapshotAgents();
process.on("exit", () => stopAgentsSince(before));
