// `npm run bench`: the micro-benchmarks, then the mass-reboot simulation
// (ours at several worker counts and concurrencies, and the Python reference
// on the same clients when installed), and legacy and mixed waves (TLS 1.2
// OpenPGP machines, alone and half and half with modern ones) beside a
// modern one of the same size. Results go to bench/results/ as JSON
// and to stdout as Markdown tables. Any failed or mismatched secret makes
// the run say so loudly and exit non-zero. Then the same wave with the
// etcd backend beside the file backend (bench/etcd-wave.ts).
//
// BENCH_QUICK=1 runs a small subset (for a smoke test). BENCH_PARTS (a
// comma list of micro, reboot, native, overload, etcd; default all) runs only those parts.

import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Counts } from "./load-generator.js";
import { runMicro, type MicroResult } from "./micro.js";
import { startPrivateBus } from "../test/helpers/private-bus.js";
import { runRebootSimulation, type RebootRun } from "./reboot.js";
import { describeOverload, runOverload } from "./overload.js";
import { etcdWaveReport, runEtcdWave } from "./etcd-wave.js";
import { buildNativeTools, failedRows, nativeTables, runNativeComparison, type NativeReport } from "./native.js";
import { wavePicture } from "./wave-picture.js";

const RESULTS = fileURLToPath(new URL("../../bench/results/", import.meta.url));
const quick = process.env.BENCH_QUICK === "1";
const parts = new Set((process.env.BENCH_PARTS ?? "micro,reboot,native,overload,etcd").split(",").map((p) => p.trim()));
const log = (line: string): void => void process.stderr.write(`${line}\n`);

const machine = {
  cpu: cpus()[0]?.model ?? "unknown",
  cores: availableParallelism(),
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  date: new Date().toISOString(),
};
log(`machine: ${machine.cores} × ${machine.cpu}, ${machine.memoryGiB} GiB, Node ${machine.node}`);

const micro: MicroResult[] = quick || !parts.has("micro") ? [] : await runMicro(log);

// mandos-load, built once: the native comparison's tools, and its ref-server in the reboot simulation (the picture).
const nativeWork = mkdtempSync(join(tmpdir(), "mandos-ts-bench-native-"));
// Run as root, our server drops to _mandos before it starts its workers, which then read from here.
chmodSync(nativeWork, 0o755);
const tools = buildNativeTools(nativeWork);
const refServer = "skipped" in tools ? undefined : tools.refServer;

const bus = parts.has("reboot") ? await startPrivateBus().catch(() => null) : null;
let runs: RebootRun[] = [];
try {
  const common = { referenceBus: bus?.address, log };
  if (!parts.has("reboot")) {
    log("reboot simulation skipped (BENCH_PARTS)");
  } else if (quick) {
    runs = await runRebootSimulation({ ...common, sizes: [200], concurrencies: [64], workers: [0, 2], warmupConnections: 100, referenceConnections: 20, referenceBudgetMs: 15_000, nativeServer: refServer, recordSamples: true });
    for (const legacyShare of [1, 0.5]) {
      runs.push(...(await runRebootSimulation({ ...common, sizes: [200], concurrencies: [64], workers: [2], warmupConnections: 100, referenceConnections: 0, referenceBudgetMs: 0, legacyShare })));
    }
  } else {
    const warmupConnections = 4000;
    runs = [
      ...(await runRebootSimulation({ ...common, sizes: [1000], concurrencies: [64, 256], workers: [0, 1, 2, "default"], warmupConnections, referenceConnections: 100, referenceBudgetMs: 40_000, nativeServer: refServer, recordSamples: true })),
      ...(await runRebootSimulation({ ...common, sizes: [10000], concurrencies: [256], workers: [0, 1, 2], warmupConnections, referenceConnections: 0, referenceBudgetMs: 0 })),
      // The memory goal: 10,000 clients configured and 1,000 connections open at once.
      ...(await runRebootSimulation({ ...common, sizes: [10000], concurrencies: [1000], workers: ["default"], warmupConnections, referenceConnections: 0, referenceBudgetMs: 0 })),
      // Legacy clients (TLS 1.2, OpenPGP, RSA-4096) alone and half and half, beside the modern rows above (the reference serves one generation only).
      ...(await runRebootSimulation({ ...common, sizes: [1000], concurrencies: [64], workers: [0, 2], warmupConnections: 1000, referenceConnections: 0, referenceBudgetMs: 0, legacyShare: 1 })),
      ...(await runRebootSimulation({ ...common, sizes: [1000], concurrencies: [64], workers: [0, 2], warmupConnections: 1000, referenceConnections: 0, referenceBudgetMs: 0, legacyShare: 0.5 })),
    ];
  }
} finally {
  await bus?.stop();
}

let native: NativeReport | null = null;
try {
  if (parts.has("native")) native = await runNativeComparison({ tools, quick, work: nativeWork, log });
} finally {
  rmSync(nativeWork, { recursive: true, force: true });
}

// Issue 16: a burst of ten times the sustained rate, default limits, machines that retry as mandos-client does.
const overload = parts.has("overload")
  ? await runOverload(quick ? { machines: 2000, burstFactor: 10, pacedConnections: 500, log } : { machines: 15_000, burstFactor: 10, pacedConnections: 4000, log })
  : null;

const etcdWave = parts.has("etcd") ? await runEtcdWave({ quick, log }) : null;
// The same with one member: what the three-member run costs beyond it is two replicas that a fleet runs on other machines.
const etcdWaveOne = parts.has("etcd") && !quick ? await runEtcdWave({ quick, log, members: 1, rounds: 1 }) : null;

const ours = runs.filter((r) => r.server === "mandos-ts");
const reference = runs.filter((r) => r.server === "python-reference");
/** Any failure, mismatch, or connection without its secret. */
const incomplete = (c: Counts): boolean => c.failures > 0 || c.mismatches > 0 || c.succeeded < c.attempted;
const bad = [...ours, ...[etcdWave, etcdWaveOne].flatMap((w) => (w ? [...w.file, ...w.etcd] : []))].filter((r) => incomplete(r.report) || (r.report.warmup !== undefined && incomplete(r.report.warmup)));

let table = "| server | workers | machines | clients | concurrent | secrets/s | steady secrets/s | p50 ms | p90 ms | p99 ms | max ms | ok/attempted | peak RSS MiB | CPU ms/secret |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
for (const r of runs) {
  const p = r.report;
  table += `| ${r.server} | ${r.workers ?? "-"} | ${r.generation} | ${r.clients} | ${r.concurrency} | ${p.secretsPerSecond} | ${p.steadySecretsPerSecond} | ${p.latencyMs.p50} | ${p.latencyMs.p90} | ${p.latencyMs.p99} | ${p.latencyMs.max} | ${p.succeeded}/${p.attempted} | ${r.peakRssMiB} | ${r.cpuMsPerSecret} |\n`;
}
let ratio = "";
for (const ref of reference) {
  const best = ours.filter((r) => r.clients === ref.clients && r.generation === "modern").sort((a, b) => b.report.secretsPerSecond - a.report.secretsPerSecond)[0];
  if (best && ref.report.secretsPerSecond > 0) {
    ratio += `With ${ref.clients} clients: ${best.report.secretsPerSecond} vs ${ref.report.secretsPerSecond} secrets/s, ${Math.round(best.report.secretsPerSecond / ref.report.secretsPerSecond)}× the Python reference.\n`;
  } else if (best) {
    ratio += `With ${ref.clients} clients: the Python reference delivered no secret within its time budget.\n`;
  }
}
// Lookup cost independent of N: the steady rate with 1,000 and with 10,000 clients, same workers and concurrency.
let byN = "";
for (const big of ours.filter((r) => r.clients === 10000)) {
  const small = ours.find((r) => r.clients === 1000 && r.generation === "modern" && r.workers === big.workers && r.concurrency === big.concurrency);
  if (!small || big.report.steadySecretsPerSecond === 0) continue;
  const change = Math.round((small.report.steadySecretsPerSecond / big.report.steadySecretsPerSecond - 1) * 100);
  byN += `workers=${big.workers} c=${big.concurrency}: steady ${small.report.steadySecretsPerSecond}/s with 1,000 clients, ${big.report.steadySecretsPerSecond}/s with 10,000 (${change >= 0 ? "+" : ""}${change}%).\n`;
}
let microTable = "";
if (micro.length > 0) {
  microTable = "| step | ops/s | mean µs | p99 µs |\n|---|---|---|---|\n";
  for (const m of micro) microTable += `| ${m.name} | ${m.opsPerSecond} | ${m.meanMicroseconds} | ${m.p99Microseconds} |\n`;
}

mkdirSync(RESULTS, { recursive: true });
const file = `${RESULTS}${machine.date.replace(/[:.]/g, "-")}${quick ? "-quick" : ""}.json`;
if (overload && !overload.passed) {
  process.stdout.write("\n!!! OVERLOAD RUN FAILED: a machine was lost or needed more than one retry !!!\n");
  process.exitCode = 1;
}
const wave = wavePicture(runs, machine);
if (wave) {
  writeFileSync(`${RESULTS}wave${quick ? "-quick" : ""}.svg`, wave.svg);
  log(`picture of the wave: ${RESULTS}wave${quick ? "-quick" : ""}.svg`);
}
// Every connection's timings are kept for the picture's runs only, under "wave".
const withoutSamples = runs.map((r) => ({ ...r, report: { ...r.report, samples: undefined } }));
writeFileSync(file, JSON.stringify({ machine, micro, runs: withoutSamples, native, overload, etcdWave, etcdWaveOne, wave: wave?.series ?? null }, null, 2) + "\n");
process.stdout.write(`\n${microTable}\n${runs.length > 0 ? table : ""}\n${ratio}${byN}\n${native ? nativeTables(native) : ""}\n${etcdWaveReport(etcdWave)}\n${etcdWaveReport(etcdWaveOne)}\n${overload ? `${describeOverload(overload)}\n\n` : ""}results: ${file}\n`);
const nativeBad = native ? failedRows(native) : [];
if (nativeBad.length > 0) {
  process.stdout.write(`\n!!! BENCHMARK FAILURES: ${nativeBad.length} native-comparison run(s) had failed or mismatched secrets !!!\n`);
  process.exitCode = 1;
}
if (bad.length > 0) {
  process.stdout.write(`\n!!! BENCHMARK FAILURES: ${bad.length} run(s) had failed or mismatched secrets !!!\n`);
  process.exitCode = 1;
}
