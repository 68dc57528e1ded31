// The reboot wave with the etcd backend beside the file backend (issue 15's
// goal: the etcd-backed wave within 20% of the file-backed one). The same
// wave against bin/mandos keeping its state in its state file alone, and
// with `--etcd` on a real 3-member etcd cluster on loopback (Debian's
// etcd-server), alternating so that drift of the machine falls on both.
// Also counts what one wave costs etcd, from etcd's own counters read as
// the measured wave starts and ends: transactions, puts, the bytes put and
// the bytes its clients sent (docs/ETCD.md "Cost"); and again once the
// server has folded the wave's journal records into the clients' keys
// (fleet-state.ts), which it does after the wave: the wave's whole cost.
//
// Run with three members (as a fleet runs etcd) and with one: on this
// machine every member shares the server's cores, so the three-member run
// also measures two replicas that a real fleet runs elsewhere. After each
// etcd-backed wave its prefix is deleted and etcd compacted and
// defragmented, so that every round starts from the same cluster.
//
// Called from bench/run.ts; skipped (null) when etcd is not installed.

import { Etcd3 } from "etcd3";
import { etcdMissing, startEtcdCluster, type EtcdCluster } from "../test/helpers/etcd.js";
import { runRebootSimulation, type RebootRun } from "./reboot.js";

/** etcd's counters that a wave moves (names as etcd 3.4 exports them on /metrics). */
export interface EtcdCost {
  /** Transactions applied (each of our batches is one). */
  readonly txns: number;
  readonly puts: number;
  /** Key and value bytes of those puts. */
  readonly putBytes: number;
  /** gRPC bytes received from clients, all members together. */
  readonly clientBytes: number;
  /** CPU seconds (user + system) of all members together: what etcd costs the machine the wave runs on. */
  readonly cpuSeconds: number;
}

export interface EtcdWaveResult {
  /** Members of the etcd cluster, all on this machine. */
  readonly members: number;
  readonly clients: number;
  readonly concurrency: number;
  readonly warmupConnections: number;
  readonly file: RebootRun[];
  readonly etcd: RebootRun[];
  /** What each etcd-backed wave cost etcd while it ran, in run order. */
  readonly cost: EtcdCost[];
  /** The same and the fold that followed it (null: the journal was not folded within FOLD_WAIT_MS). */
  readonly withFold: Array<EtcdCost | null>;
  /** Mean steady rate with etcd over the mean with the file backend. */
  readonly ratio: number;
}

const COUNTERS = {
  txns: "etcd_mvcc_txn_total",
  puts: "etcd_mvcc_put_total",
  putBytes: "etcd_debugging_mvcc_total_put_size_in_bytes",
} as const;
const CLIENT_BYTES = "etcd_network_client_grpc_received_bytes_total";
const CPU_SECONDS = "process_cpu_seconds_total";

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

/** The counters now: the applied ones from one member (every member applies every transaction), client bytes summed over all. */
async function counters(cluster: EtcdCluster): Promise<EtcdCost> {
  const first = cluster.members[0]!.clientUrl;
  const [txns, puts, putBytes, received, cpu] = await Promise.all([
    metric(first, COUNTERS.txns),
    metric(first, COUNTERS.puts),
    metric(first, COUNTERS.putBytes),
    Promise.all(cluster.members.map((m) => metric(m.clientUrl, CLIENT_BYTES))),
    Promise.all(cluster.members.map((m) => metric(m.clientUrl, CPU_SECONDS))),
  ]);
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  return { txns, puts, putBytes, clientBytes: sum(received), cpuSeconds: sum(cpu) };
}

/** How long the bench waits for the server to fold a wave's journal (it starts 3 s after the last record). */
const FOLD_WAIT_MS = 60_000;

/** Resolves true once no journal record is left under `prefix`, false after FOLD_WAIT_MS. */
async function folded(cluster: EtcdCluster, prefix: string): Promise<boolean> {
  const etcd = new Etcd3({ hosts: cluster.endpoints.split(",") });
  try {
    for (const deadline = Date.now() + FOLD_WAIT_MS; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
      if ((await etcd.getAll().prefix(`${prefix}journal/`).keys()).length === 0) return true;
    }
    return false;
  } finally {
    etcd.close();
  }
}

/** Deletes `prefix`, compacts etcd's history and defragments every member: the next round starts from an empty cluster. */
async function clean(cluster: EtcdCluster, prefix: string): Promise<void> {
  const etcd = new Etcd3({ hosts: cluster.endpoints.split(",") });
  try {
    const res = await etcd.delete().prefix(prefix).exec();
    await etcd.kv.compact({ revision: res.header.revision, physical: true });
  } finally {
    etcd.close();
  }
  for (const member of cluster.members) {
    const one = new Etcd3({ hosts: member.clientUrl });
    try {
      await one.maintenance.defragment();
    } finally {
      one.close();
    }
  }
}

function difference(after: EtcdCost, before: EtcdCost): EtcdCost {
  return {
    txns: after.txns - before.txns, puts: after.puts - before.puts, putBytes: after.putBytes - before.putBytes,
    clientBytes: after.clientBytes - before.clientBytes, cpuSeconds: after.cpuSeconds - before.cpuSeconds,
  };
}

export async function runEtcdWave(options: {
  readonly quick: boolean;
  readonly log: (line: string) => void;
  /** Members of the cluster (default 3). */
  readonly members?: number;
  /** Rounds of one file-backed and one etcd-backed wave (default 2, 1 when quick). */
  readonly rounds?: number;
}): Promise<EtcdWaveResult | null> {
  const missing = etcdMissing();
  if (missing) {
    options.log(`etcd wave skipped: ${missing}`);
    return null;
  }
  const clients = options.quick ? 500 : 10_000;
  const concurrency = 256;
  const warmupConnections = options.quick ? 200 : 4_000;
  const rounds = options.rounds ?? (options.quick ? 1 : 2);
  const members = options.members ?? 3;
  const cluster = await startEtcdCluster(members);
  const file: RebootRun[] = [];
  const etcd: RebootRun[] = [];
  const cost: EtcdCost[] = [];
  const withFold: Array<EtcdCost | null> = [];
  try {
    for (let round = 0; round < rounds; round++) {
      for (const backend of round % 2 === 0 ? (["file", "etcd"] as const) : (["etcd", "file"] as const)) {
        options.log(`etcd wave, ${members} member(s), round ${round + 1}: ${backend} backend`);
        let start: Promise<EtcdCost> | null = null;
        let end: EtcdCost | null = null;
        let afterFold: EtcdCost | null = null;
        // A prefix of its own: each server starts by seeding its fleet (before it listens, so outside the measure).
        const prefix = `/mandos-bench-${round}/`;
        const serverArgs = backend === "etcd" ? ["--etcd", cluster.endpoints, "--etcd_prefix", prefix] : [];
        const onWave = async (phase: "start" | "end"): Promise<void> => {
          if (phase === "start") {
            start = counters(cluster);
            return;
          }
          end = await counters(cluster);
          if (await folded(cluster, prefix)) afterFold = await counters(cluster);
        };
        const [run] = await runRebootSimulation({
          sizes: [clients], concurrencies: [concurrency], workers: ["default"], warmupConnections,
          referenceConnections: 0, referenceBudgetMs: 0, log: options.log, serverArgs, onWave: backend === "etcd" ? onWave : undefined,
        });
        if (backend === "etcd") await clean(cluster, prefix);
        if (!run) continue;
        if (backend === "file") file.push(run);
        else {
          etcd.push({ ...run, server: "mandos-ts + etcd" });
          if (start && end) {
            const before = await start;
            cost.push(difference(end, before));
            withFold.push(afterFold ? difference(afterFold, before) : null);
          }
        }
      }
    }
  } finally {
    await cluster.stop();
  }
  const mean = (runs: RebootRun[]): number => runs.reduce((s, r) => s + r.report.steadySecretsPerSecond, 0) / Math.max(1, runs.length);
  return { members, clients, concurrency, warmupConnections, file, etcd, cost, withFold, ratio: mean(file) > 0 ? mean(etcd) / mean(file) : 0 };
}

/** The Markdown lines for bench/run.ts's output. */
export function etcdWaveReport(r: EtcdWaveResult | null): string {
  if (!r) return "";
  const lines = [
    `Reboot wave, file backend beside etcd backend (${r.members} member(s) on loopback, on this machine's cores): ${r.clients} clients, ${r.concurrency} at once, default workers, ${r.warmupConnections} warm-up connections.`,
    "| backend | steady secrets/s per run | CPU ms/secret per run |",
    "|---|---|---|",
    `| file | ${r.file.map((x) => x.report.steadySecretsPerSecond).join(", ")} | ${r.file.map((x) => x.cpuMsPerSecret).join(", ")} |`,
    `| etcd | ${r.etcd.map((x) => x.report.steadySecretsPerSecond).join(", ")} | ${r.etcd.map((x) => x.cpuMsPerSecret).join(", ")} |`,
    `etcd-backed wave rate: ${(r.ratio * 100).toFixed(1)}% of the file-backed one (goal: at least 80%).`,
  ];
  const cost = (c: EtcdCost): string =>
    `${c.txns} transactions, ${c.puts} puts, ${(c.putBytes / 1e6).toFixed(2)} MB put, ${(c.clientBytes / 1e6).toFixed(2)} MB received from its clients, ` +
    `${(c.cpuSeconds * 1000).toFixed(0)} ms of CPU over its members (${((c.cpuSeconds * 1000) / r.clients).toFixed(2)} ms a secret)`;
  r.cost.forEach((c, i) => {
    const fold = r.withFold[i];
    lines.push(
      `One wave of ${r.clients} cost etcd ${cost(c)} while it ran; ` +
        (fold ? `with the fold of its journal afterwards, ${cost(fold)}.` : `its journal was not folded within ${FOLD_WAIT_MS / 1000} s.`),
    );
  });
  return `${lines.join("\n")}\n`;
}
