// The mass-reboot load generator: a separate process that plays N distinct
// client machines (the TLS engine's server role, each its own key), all
// starting at once, at most `concurrency` connected at a time. Every secret
// is checked byte for byte. Reads a job (JSON) from the file named in
// argv[2]; writes a report (JSON) to stdout.

import { createPrivateKey, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { parsePriority } from "../src/tls/index.js";
import { fetchSecret, type ClientIdentity } from "../src/main/test-client.js";

export interface LoadJob {
  readonly host: string;
  readonly port: number;
  readonly concurrency: number;
  /** Per connection. */
  readonly timeoutMs: number;
  /** The whole run stops starting new connections after this long. */
  readonly budgetMs: number;
  readonly priority: string;
  /** How many connections to make (machines are used round-robin if fewer). */
  readonly connections: number;
  readonly machines: ReadonlyArray<{ readonly privateKeyPem: string; readonly secretBase64: string }>;
}

export interface LoadReport {
  readonly attempted: number;
  readonly succeeded: number;
  readonly failures: number;
  readonly mismatches: number;
  readonly failureCodes: Record<string, number>;
  readonly durationMs: number;
  readonly secretsPerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p90: number; readonly p99: number; readonly max: number };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)]!;
}

async function runJob(job: LoadJob): Promise<LoadReport> {
  const settings = parsePriority(job.priority);
  const identities: ClientIdentity[] = job.machines.map((m) => {
    const privateKey = createPrivateKey(m.privateKeyPem);
    return { privateKey, publicKeySpki: createPublicKey(privateKey).export({ type: "spki", format: "der" }) };
  });
  const secrets = job.machines.map((m) => Buffer.from(m.secretBase64, "base64"));
  const latencies: number[] = [];
  const failureCodes: Record<string, number> = {};
  let next = 0;
  let succeeded = 0;
  let failures = 0;
  let mismatches = 0;
  const start = performance.now();

  const worker = async (): Promise<void> => {
    for (;;) {
      if (next >= job.connections || performance.now() - start > job.budgetMs) return;
      const i = next++;
      const m = i % identities.length;
      const t0 = performance.now();
      try {
        const secret = await fetchSecret({
          host: job.host,
          port: job.port,
          identity: identities[m]!,
          settings,
          timeoutMs: job.timeoutMs,
        });
        latencies.push(performance.now() - t0);
        if (secret.equals(secrets[m]!)) succeeded++;
        else mismatches++;
      } catch (error) {
        failures++;
        const code = (error as { code?: string }).code ?? "ERROR";
        failureCodes[code] = (failureCodes[code] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  const durationMs = performance.now() - start;
  latencies.sort((a, b) => a - b);
  const round = (x: number): number => Math.round(x * 10) / 10;
  return {
    attempted: next,
    succeeded,
    failures,
    mismatches,
    failureCodes,
    durationMs: round(durationMs),
    secretsPerSecond: round((succeeded / durationMs) * 1000),
    latencyMs: {
      p50: round(percentile(latencies, 50)),
      p90: round(percentile(latencies, 90)),
      p99: round(percentile(latencies, 99)),
      max: round(latencies[latencies.length - 1] ?? 0),
    },
  };
}

if (process.argv[2]) {
  const job = JSON.parse(readFileSync(process.argv[2], "utf8")) as LoadJob;
  const report = await runJob(job);
  process.stdout.write(JSON.stringify(report) + "\n");
}
