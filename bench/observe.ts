// The cost of observability (issue 17's goal: metrics and audit log on cost
// at most 5% of the wave rate). The same reboot wave against bin/mandos with
// both off and with --metrics and --audit-log on, side by side, alternating
// so that drift of the machine (thermal, other load) falls on both. Reports
// the steady secrets/s and CPU ms per secret of each, and the change.
//
// `npx tsc -p . && node dist/bench/observe.js` (BENCH_OBSERVE_ROUNDS, default 2).

import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRebootSimulation, type RebootRun } from "./reboot.js";

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const ROUNDS = Number(process.env.BENCH_OBSERVE_ROUNDS ?? "2");
const CLIENTS = 2000;
const CONCURRENCY = 64;
const WARMUP = 2000;

const dir = mkdtempSync(join(tmpdir(), "mandos-ts-bench-observe-"));
// Run as root, the server drops to _mandos before it opens the audit log.
chmodSync(dir, 0o777);
const audit = join(dir, "audit.jsonl");
const results: { on: RebootRun[]; off: RebootRun[] } = { on: [], off: [] };
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of round % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
      const serverArgs = mode === "on" ? ["--metrics", ":0", "--audit-log", audit] : [];
      log(`round ${round + 1}: observability ${mode}`);
      const [run] = await runRebootSimulation({
        sizes: [CLIENTS], concurrencies: [CONCURRENCY], workers: ["default"], warmupConnections: WARMUP,
        referenceConnections: 0, referenceBudgetMs: 0, log, serverArgs,
      });
      if (run) results[mode].push(run);
    }
  }
  const auditLines = readFileSync(audit, "utf8").split("\n").length - 1;
  const mean = (runs: RebootRun[], f: (r: RebootRun) => number): number => runs.reduce((s, r) => s + f(r), 0) / Math.max(1, runs.length);
  const rate = (runs: RebootRun[]): number => mean(runs, (r) => r.report.steadySecretsPerSecond);
  const cpu = (runs: RebootRun[]): number => mean(runs, (r) => r.cpuMsPerSecret);
  const line = (mode: "off" | "on"): string =>
    `| ${mode} | ${results[mode].map((r) => r.report.steadySecretsPerSecond).join(", ")} | ${rate(results[mode]).toFixed(0)} | ${cpu(results[mode]).toFixed(3)} |`;
  const change = (rate(results.on) / rate(results.off) - 1) * 100;
  process.stdout.write([
    `${CLIENTS} machines, ${CONCURRENCY} at once, default workers, ${WARMUP} warm-up connections, ${ROUNDS} rounds`,
    "| metrics + audit | steady secrets/s per run | mean | CPU ms/secret |",
    "|---|---|---|---|",
    line("off"),
    line("on"),
    `Wave rate with observability on: ${change >= 0 ? "+" : ""}${change.toFixed(1)}% (goal: no worse than -5%); ${auditLines} audit records written.`,
    "",
  ].join("\n"));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
