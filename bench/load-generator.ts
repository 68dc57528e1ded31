// The mass-reboot load generator: a separate process that plays N distinct
// client machines (the TLS engine's server role, each its own key; legacy
// machines speak TLS 1.2 with an OpenPGP key, tls12/server12.ts), all
// starting at once, at most `concurrency` connected at a time. Every secret
// is checked byte for byte. Reads a job (JSON) from the file named in
// argv[2]; writes a report (JSON) to stdout.
//
// With `warmupConnections`, it first makes that many connections (not
// measured, but checked), so that both its own and the server's code are
// compiled by the JIT, writes "WARM" on a line of its own to stdout, and
// waits for a line on stdin before the measured wave: the caller reads the
// server's CPU time in between.

import { createPrivateKey, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { parsePriority } from "../src/tls/index.js";
import { fetchSecret, type ClientIdentity } from "../src/client/fetch.js";
import type { OpenPgpIdentity } from "../src/tls/tls12/server12.js";
import { percentile, steadyRate } from "./stats.js";

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
  /** `legacy`: an OpenPGP machine; privateKeyPem is then its RSA primary key. */
  readonly machines: ReadonlyArray<{ readonly privateKeyPem: string; readonly secretBase64: string; readonly legacy?: LegacyMachine }>;
  /** Unmeasured connections first, then "WARM" and a wait for stdin (see above). */
  readonly warmupConnections?: number;
  /** Report every connection's timings too (the picture of the wave). */
  readonly recordSamples?: boolean;
}

/** A legacy machine's OpenPGP key, beside its RSA private key. */
export interface LegacyMachine {
  /** The binary transferable public key, base64. */
  readonly publicKeyBase64: string;
  readonly keyIdHex: string;
}

/** How many connections were made, and how they ended. */
export interface Counts {
  readonly attempted: number;
  readonly succeeded: number;
  readonly failures: number;
  readonly mismatches: number;
}

export interface LoadReport extends Counts {
  readonly failureCodes: Record<string, number>;
  readonly durationMs: number;
  readonly secretsPerSecond: number;
  /**
   * The rate while the wave is in full flow: secrets received between the
   * 10th and the 90th percentile of completion times, over that time. It
   * leaves out the pipeline filling at the start and draining at the end,
   * which weigh more the shorter the wave (about 0.2 s of a 1,000-machine
   * wave's 0.8 s).
   */
  readonly steadySecretsPerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p90: number; readonly p99: number; readonly max: number };
  /** What the warm-up did: every secret there is checked too. */
  readonly warmup?: Counts;
  /** With job.recordSamples: when each secret arrived (ms since the wave began) and every connection's latency, both sorted. */
  readonly samples?: { readonly completionsMs: number[]; readonly latenciesMs: number[] };
}

interface Wave extends Counts {
  readonly failureCodes: Record<string, number>;
  readonly durationMs: number;
  /** Sorted. */
  readonly latencies: number[];
  /** When each secret arrived (ms since the wave began), sorted. */
  readonly completions: number[];
}

interface Prepared {
  readonly job: LoadJob;
  readonly settings: ReturnType<typeof parsePriority>;
  readonly identities: readonly ClientIdentity[];
  /** The OpenPGP identity of each legacy machine (undefined for modern ones). */
  readonly legacy: ReadonlyArray<OpenPgpIdentity | undefined>;
  readonly secrets: readonly Buffer[];
}

/** `connections` connections, at most job.concurrency at a time, machines round-robin from `first`. */
async function wave(p: Prepared, connections: number, first: number): Promise<Wave> {
  const { job, settings, identities, secrets, legacy } = p;
  const latencies: number[] = [];
  const completions: number[] = [];
  const failureCodes: Record<string, number> = {};
  let next = 0;
  let succeeded = 0;
  let failures = 0;
  let mismatches = 0;
  const start = performance.now();

  const worker = async (): Promise<void> => {
    for (;;) {
      if (next >= connections || performance.now() - start > job.budgetMs) return;
      const m = (first + next++) % identities.length;
      const t0 = performance.now();
      try {
        const secret = await fetchSecret({
          host: job.host,
          port: job.port,
          identity: identities[m]!,
          settings,
          timeoutMs: job.timeoutMs,
          ...(legacy[m] ? { legacy: legacy[m] } : {}),
        });
        const t1 = performance.now();
        latencies.push(t1 - t0);
        if (secret.equals(secrets[m]!)) {
          succeeded++;
          completions.push(t1 - start);
        }
        else mismatches++;
      } catch (error) {
        failures++;
        const code = (error as { code?: string }).code ?? "ERROR";
        failureCodes[code] = (failureCodes[code] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  latencies.sort((a, b) => a - b);
  completions.sort((a, b) => a - b);
  return { attempted: next, succeeded, failures, mismatches, failureCodes, durationMs: performance.now() - start, latencies, completions };
}

function nextStdinLine(): Promise<void> {
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => {
      if (!chunk.includes(10)) return;
      process.stdin.off("data", onData);
      process.stdin.pause();
      resolve();
    };
    process.stdin.on("data", onData);
    process.stdin.once("end", () => resolve());
  });
}

async function runJob(job: LoadJob): Promise<LoadReport> {
  const settings = parsePriority(job.priority);
  const identities: ClientIdentity[] = job.machines.map((m) => {
    const privateKey = createPrivateKey(m.privateKeyPem);
    return { privateKey, publicKeySpki: createPublicKey(privateKey).export({ type: "spki", format: "der" }) };
  });
  const legacy = job.machines.map((m, i): OpenPgpIdentity | undefined =>
    m.legacy ? { privateKey: identities[i]!.privateKey, publicKey: Buffer.from(m.legacy.publicKeyBase64, "base64"), keyId: Buffer.from(m.legacy.keyIdHex, "hex") } : undefined,
  );
  const secrets = job.machines.map((m) => Buffer.from(m.secretBase64, "base64"));
  const prepared: Prepared = { job, settings, identities, legacy, secrets };

  let warmup: Counts | undefined;
  const warmupConnections = job.warmupConnections ?? 0;
  if (warmupConnections > 0) {
    // The last machines warm up; the measured wave then runs over all, from the first.
    const w = await wave(prepared, warmupConnections, Math.max(0, identities.length - warmupConnections));
    warmup = { attempted: w.attempted, succeeded: w.succeeded, failures: w.failures, mismatches: w.mismatches };
    process.stdout.write("WARM\n");
    await nextStdinLine();
  }

  const w = await wave(prepared, job.connections, 0);
  const round = (x: number): number => Math.round(x * 10) / 10;
  return {
    attempted: w.attempted,
    succeeded: w.succeeded,
    failures: w.failures,
    mismatches: w.mismatches,
    failureCodes: w.failureCodes,
    durationMs: round(w.durationMs),
    secretsPerSecond: round((w.succeeded / w.durationMs) * 1000),
    steadySecretsPerSecond: round(steadyRate(w.completions)),
    latencyMs: {
      p50: round(percentile(w.latencies, 50)),
      p90: round(percentile(w.latencies, 90)),
      p99: round(percentile(w.latencies, 99)),
      max: round(w.latencies[w.latencies.length - 1] ?? 0),
    },
    ...(warmup ? { warmup } : {}),
    ...(job.recordSamples ? { samples: { completionsMs: w.completions.map(round), latenciesMs: w.latencies.map(round) } } : {}),
  };
}

if (process.argv[2]) {
  const job = JSON.parse(readFileSync(process.argv[2], "utf8")) as LoadJob;
  const report = await runJob(job);
  process.stdout.write(JSON.stringify(report) + "\n");
}
