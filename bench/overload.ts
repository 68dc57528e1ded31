// The overload run (issue 16): a burst of ten times what the server
// sustains per second, against bin/mandos with its default admission limits
// (per-source cap, handshake slots, open connections), from machines that
// each have their own loopback address and retry as mandos-client does.
// The run passes when every machine is served within its first retry
// cycle (its first try, or the one --retry seconds later) and none is lost.

import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_PRIORITY } from "../src/tls/index.js";
import { freePort } from "../test/helpers/wait.js";
import type { BurstJob, BurstReport } from "./burst-generator.js";
import { makeMachines, procStats, serverNodeFlags, stopProcess, waitForPort, writeConfig } from "./reboot.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

/** mandos-client(8): "--retry ... The default is 10 seconds". */
export const CLIENT_RETRY_MS = 10_000;

export interface OverloadOptions {
  /** Machines configured: the burst is cut to these (the generator's file limit allows ~15,000). */
  readonly machines: number;
  readonly burstFactor: number;
  /** Paced connections before the burst (JIT warm-up and the sustained rate). */
  readonly pacedConnections: number;
  readonly workers?: number;
  readonly log: (line: string) => void;
}

export interface OverloadRun {
  readonly workers: number | "default";
  readonly report: BurstReport;
  readonly peakRssMiB: number;
  /** Server CPU over the burst, per secret served in it. */
  readonly cpuMsPerSecret: number;
  /** Every machine served within its first retry cycle (at most two tries), none lost, no mismatch. */
  readonly passed: boolean;
}

/** The i-th machine's own address: 127.2.0.1 onwards (the server listens on 127.0.0.1). */
export function machineAddress(i: number): string {
  const n = i + 1;
  return `127.2.${(n >> 8) & 255}.${n & 255}`;
}

export async function runOverload(options: OverloadOptions): Promise<OverloadRun> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-overload-"));
  try {
    options.log(`overload: generating ${options.machines} machines`);
    const machines = makeMachines(options.machines);
    const conf = join(root, "conf");
    writeConfig(conf, machines);
    // The server makes its state directory itself, as root, for the user it
    // becomes, and keeps its state as in service: it must reach it then.
    chmodSync(root, 0o711);
    const port = await freePort();
    // The defaults an operator gets: no --max-per-source, no other limit changed.
    const args = [
      join(REPO, "bin/mandos"), "--configdir", conf, "--statedir", join(root, "state"), "--no-restore",
      "--no-zeroconf", "--no-dbus", "--foreground", "--debuglevel", "ERROR", "--address", "127.0.0.1", "--port", String(port),
    ];
    if (options.workers !== undefined) args.push("--workers", String(options.workers));
    const server = spawn(process.execPath, [...serverNodeFlags(), ...args], { stdio: ["ignore", "ignore", "inherit"] });
    try {
      await waitForPort(port, server, 60_000);
      const job: BurstJob = {
        host: "127.0.0.1",
        port,
        priority: DEFAULT_PRIORITY,
        machines: machines.map(({ privateKeyPem, secretBase64 }, i) => ({ privateKeyPem, secretBase64, localAddress: machineAddress(i) })),
        pacedConnections: options.pacedConnections,
        concurrency: 256,
        burstFactor: options.burstFactor,
        arrivalMs: 1000,
        retryDelayMs: CLIENT_RETRY_MS,
        attemptTimeoutMs: 60_000,
        giveUpMs: 5 * CLIENT_RETRY_MS,
      };
      const jobFile = join(root, "job.json");
      writeFileSync(jobFile, JSON.stringify(job));
      // The server's CPU is read when the generator says the burst begins.
      let before = procStats(server.pid!);
      const report = await new Promise<BurstReport>((resolve, reject) => {
        const child = spawn(process.execPath, [join(REPO, "dist/bench/burst-generator.js"), jobFile], { stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.startsWith("BURST\n")) {
            out = out.slice(6);
            before = procStats(server.pid!);
          }
        });
        child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as BurstReport) : reject(new Error(`burst generator exited with ${code}`))));
      });
      const after = procStats(server.pid!);
      const twoTries = (report.triesNeeded["1"] ?? 0) + (report.triesNeeded["2"] ?? 0);
      const run: OverloadRun = {
        workers: options.workers ?? "default",
        report,
        peakRssMiB: Math.round(after.peakRssKiB / 102.4) / 10,
        cpuMsPerSecret: report.served > 0 ? Math.round(((after.cpuMs - before.cpuMs) / report.served) * 1000) / 1000 : 0,
        passed: report.lost === 0 && report.mismatches === 0 && report.served === report.machines && twoTries === report.machines,
      };
      options.log(describeOverload(run));
      return run;
    } finally {
      await stopProcess(server);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

export function describeOverload(run: OverloadRun): string {
  const r = run.report;
  const tries = Object.entries(r.triesNeeded).map(([t, n]) => `${n} in ${t} ${t === "1" ? "try" : "tries"}`).join(", ");
  return (
    `overload workers=${run.workers}: sustained ${r.sustainedPerSecond}/s, burst of ${r.machines} machines in 1 s${r.capped ? " (cut to the machines configured)" : ""}: ` +
    `${r.served} served (${tries}), ${r.lost} lost, ${r.mismatches} mismatched, last secret after ${(r.durationMs / 1000).toFixed(1)} s, ` +
    `latency p50 ${r.latencyMs.p50} p99 ${r.latencyMs.p99} max ${r.latencyMs.max} ms, failed tries ${JSON.stringify(r.failureCodes)}, ` +
    `peak RSS ${run.peakRssMiB} MiB, ${run.cpuMsPerSecret} ms CPU/secret: ${run.passed ? "PASS" : "FAIL"}`
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const run = await runOverload({
    machines: Number(process.env.OVERLOAD_MACHINES ?? 15_000),
    burstFactor: 10,
    pacedConnections: Number(process.env.OVERLOAD_PACED ?? 4000),
    log: (line) => void process.stderr.write(`${line}\n`),
  });
  process.stdout.write(JSON.stringify(run) + "\n");
  if (!run.passed) process.exitCode = 1;
}
