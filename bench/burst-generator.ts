// The overload load generator (issue 16): simulated machines, each from an
// address of its own in 127.0.0.0/8 as a real fleet has, that behave as
// mandos-client(8) does: a machine tries, and after a failed try waits its
// retry interval (--retry, 10 s by default) and tries again, until it has
// its secret. A separate process; reads a job (JSON) from the file named in
// argv[2], writes a report (JSON) to stdout.
//
// Two phases on one server: a paced phase (at most `concurrency` machines
// connected at a time) that warms the JIT and measures the rate the server
// sustains; then the burst: `burstMachines` machines arriving within
// `arrivalMs`, every one counted until served or given up.

import { createPrivateKey, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { parsePriority, type TlsSettings } from "../src/tls/index.js";
import { fetchSecret, type ClientIdentity } from "../src/client/fetch.js";
import { percentile, steadyRate } from "./stats.js";

export interface BurstJob {
  /** The server's address (IPv4 loopback: the machines' own addresses are 127.x.y.z). */
  readonly host: string;
  readonly port: number;
  readonly priority: string;
  readonly machines: ReadonlyArray<{ readonly privateKeyPem: string; readonly secretBase64: string; readonly localAddress: string }>;
  /** Paced phase: connections made (machines from the end of the list), and how many at once. */
  readonly pacedConnections: number;
  readonly concurrency: number;
  /**
   * Burst: this many times the sustained rate of machines (from the start
   * of the list, at most all of them), all arriving within `arrivalMs`.
   */
  readonly burstFactor: number;
  readonly arrivalMs: number;
  /** mandos-client --retry: the wait after a failed try. */
  readonly retryDelayMs: number;
  /** One try's deadline (connect to secret). */
  readonly attemptTimeoutMs: number;
  /** A machine not served this long after it arrived counts as lost. */
  readonly giveUpMs: number;
}

export interface BurstReport {
  /** Secrets per second the paced phase sustained (10th to 90th percentile of completions). */
  readonly sustainedPerSecond: number;
  readonly pacedServed: number;
  readonly pacedFailures: number;
  readonly machines: number;
  /** The burst was cut to the machines configured (fewer than factor × sustained). */
  readonly capped: boolean;
  readonly served: number;
  readonly lost: number;
  readonly mismatches: number;
  /** Machines by the number of tries they needed ("1", "2", ...). */
  readonly triesNeeded: Record<string, number>;
  /** Failed tries by error code. */
  readonly failureCodes: Record<string, number>;
  /** From a machine's arrival to its secret, over the served machines. */
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** From the first arrival to the last secret. */
  readonly durationMs: number;
}

interface Prepared {
  readonly job: BurstJob;
  readonly settings: TlsSettings;
  readonly identities: readonly ClientIdentity[];
  readonly secrets: readonly Buffer[];
}

type TryOutcome = "ok" | "mismatch" | string;

async function tryOnce(p: Prepared, m: number): Promise<TryOutcome> {
  try {
    const secret = await fetchSecret({
      host: p.job.host,
      port: p.job.port,
      localAddress: p.job.machines[m]!.localAddress,
      identity: p.identities[m]!,
      settings: p.settings,
      timeoutMs: p.job.attemptTimeoutMs,
    });
    return secret.equals(p.secrets[m]!) ? "ok" : "mismatch";
  } catch (error) {
    return (error as { code?: string }).code ?? "ERROR";
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The paced phase: returns the sustained rate and its counts. */
async function paced(p: Prepared): Promise<{ perSecond: number; served: number; failures: number }> {
  const { job } = p;
  const first = job.machines.length - Math.min(job.machines.length, job.pacedConnections);
  const completions: number[] = [];
  let next = 0;
  let failures = 0;
  const start = performance.now();
  const worker = async (): Promise<void> => {
    while (next < job.pacedConnections) {
      const m = first + (next++ % (job.machines.length - first));
      if ((await tryOnce(p, m)) === "ok") completions.push(performance.now() - start);
      else failures++;
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  completions.sort((a, b) => a - b);
  return { perSecond: Math.round(steadyRate(completions)), served: completions.length, failures };
}

async function burst(p: Prepared, wanted: number): Promise<Omit<BurstReport, "sustainedPerSecond" | "pacedServed" | "pacedFailures">> {
  const { job } = p;
  const n = Math.min(wanted, job.machines.length);
  const triesNeeded: Record<string, number> = {};
  const failureCodes: Record<string, number> = {};
  const latencies: number[] = [];
  let lost = 0;
  let mismatches = 0;
  let lastSecret = 0;
  const start = performance.now();
  const machine = async (m: number): Promise<void> => {
    await sleep((m / n) * job.arrivalMs);
    const arrived = performance.now();
    for (let tries = 1; ; tries++) {
      const outcome = await tryOnce(p, m);
      if (outcome === "ok" || outcome === "mismatch") {
        const now = performance.now();
        if (outcome === "mismatch") mismatches++;
        latencies.push(now - arrived);
        lastSecret = Math.max(lastSecret, now - start);
        triesNeeded[String(tries)] = (triesNeeded[String(tries)] ?? 0) + 1;
        return;
      }
      failureCodes[outcome] = (failureCodes[outcome] ?? 0) + 1;
      if (performance.now() - arrived + job.retryDelayMs > job.giveUpMs) {
        lost++;
        return;
      }
      await sleep(job.retryDelayMs);
    }
  };
  await Promise.all(Array.from({ length: n }, (_, m) => machine(m)));
  latencies.sort((a, b) => a - b);
  const round = (x: number): number => Math.round(x);
  return {
    machines: n,
    capped: n < wanted,
    served: latencies.length - mismatches,
    lost,
    mismatches,
    triesNeeded,
    failureCodes,
    latencyMs: { p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)), max: round(latencies.at(-1) ?? 0) },
    durationMs: round(lastSecret),
  };
}

export async function runBurstJob(job: BurstJob): Promise<BurstReport> {
  const identities: ClientIdentity[] = job.machines.map((m) => {
    const privateKey = createPrivateKey(m.privateKeyPem);
    return { privateKey, publicKeySpki: createPublicKey(privateKey).export({ type: "spki", format: "der" }) };
  });
  const prepared: Prepared = {
    job,
    settings: parsePriority(job.priority),
    identities,
    secrets: job.machines.map((m) => Buffer.from(m.secretBase64, "base64")),
  };
  const sustained = await paced(prepared);
  process.stdout.write("BURST\n");
  const result = await burst(prepared, Math.round(job.burstFactor * sustained.perSecond));
  return { sustainedPerSecond: sustained.perSecond, pacedServed: sustained.served, pacedFailures: sustained.failures, ...result };
}

if (process.argv[2]) {
  const job = JSON.parse(readFileSync(process.argv[2], "utf8")) as BurstJob;
  process.stdout.write(JSON.stringify(await runBurstJob(job)) + "\n");
}
