// The mass-reboot simulation (issue 4): N configured clients, N distinct
// simulated machines all rebooting at once from a separate process (modern
// ones, legacy TLS 1.2/OpenPGP ones, or a mix: `legacyShare`), against
// bin/mandos on ::1, for several worker counts and concurrencies; and, when
// it is installed, the Python reference server on the same clients.
// Reports secrets/s, latency percentiles, failures, the server's peak RSS and
// CPU per secret.

import { spawn, type ChildProcess } from "node:child_process";
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_PRIORITY } from "../src/tls/index.js";
import { openPgpIdentityFromRsa } from "../src/client/openpgp-identity.js";
import { snapshotAgents, stopAgentsSince } from "../test/helpers/mandos-agents.js";
import { freePort } from "../test/helpers/wait.js";
import { openPgpShaped } from "../test/helpers/keys.js";
import type { LegacyMachine, LoadJob, LoadReport } from "./load-generator.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const REFERENCE = "/usr/sbin/mandos";
const CLK_TCK = 100;

export interface Machine {
  readonly privateKeyPem: string;
  readonly secretBase64: string;
  /** Modern machines: the key ID; legacy ones: "". */
  readonly keyId: string;
  /** Legacy machines: the OpenPGP fingerprint and key. */
  readonly fingerprint?: string;
  readonly legacy?: LegacyMachine;
}

export interface RebootRun {
  readonly server: string;
  readonly workers: number | "default" | null;
  /** Which generation the simulated machines are: "modern", "legacy" or "mixed" (half each). */
  readonly generation: string;
  readonly clients: number;
  readonly concurrency: number;
  readonly report: LoadReport;
  readonly peakRssMiB: number;
  readonly cpuMsPerSecret: number;
}

/**
 * RSA-4096 keys (mandos-keygen's default) behind the legacy machines: each
 * machine gets its own OpenPGP key and fingerprint from one of these with
 * its own creation time (openPgpIdentityFromRsa), which costs a signature,
 * not a key generation.
 */
const LEGACY_RSA_KEYS = 4;

export function makeMachines(n: number, legacyShare = 0): Machine[] {
  const machines: Machine[] = [];
  const legacyCount = Math.round(n * legacyShare);
  const rsa = Array.from({ length: legacyCount > 0 ? LEGACY_RSA_KEYS : 0 }, () => generateKeyPairSync("rsa", { modulusLength: 4096 }).privateKey);
  for (let i = 0; i < n; i++) {
    // Spread evenly, so that a mixed wave interleaves the generations.
    if (legacyShare > 0 && Math.floor((i + 1) * legacyShare) > Math.floor(i * legacyShare)) {
      const key = rsa[i % rsa.length]!;
      const id = openPgpIdentityFromRsa(key, `machine${i}`, 1_600_000_000 + i);
      machines.push({
        privateKeyPem: key.export({ type: "pkcs8", format: "pem" }).toString(),
        secretBase64: openPgpShaped(randomBytes(1177)).toString("base64"),
        keyId: "",
        fingerprint: id.fingerprint,
        legacy: { publicKeyBase64: Buffer.from(id.publicKey).toString("base64"), keyIdHex: Buffer.from(id.keyId).toString("hex") },
      });
      continue;
    }
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const spki = publicKey.export({ type: "spki", format: "der" });
    machines.push({
      privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      // A real secret is an OpenPGP message of about 1.2 KiB (framed as one,
      // so that the server does not warn of 20,000 secrets).
      secretBase64: openPgpShaped(randomBytes(1177)).toString("base64"),
      keyId: createHash("sha256").update(spki).digest("hex").toUpperCase(),
    });
  }
  return machines;
}

export function writeConfig(dir: string, machines: readonly Machine[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "mandos.conf"), "[DEFAULT]\n");
  // Checkers every day: the benchmark measures secrets, not fping.
  const parts = ["[DEFAULT]\nchecker = true\ninterval = 1d\ntimeout = 2d\nextended_timeout = 2d\n"];
  machines.forEach((m, i) => {
    const wrapped = m.secretBase64.replace(/(.{64})/g, "$1\n    ");
    parts.push(`[machine${i}]\nkey_id = ${m.keyId}\nfingerprint = ${m.fingerprint ?? ""}\nsecret =\n    ${wrapped}\nhost = machine${i}\n`);
  });
  writeFileSync(join(dir, "clients.conf"), parts.join("\n"), { mode: 0o600 });
}

const words = (s: string | undefined): string[] => (s ?? "").trim().split(/\s+/).filter(Boolean);

/**
 * The node flags on bin/mandos's `exec node FLAGS "$0" "$@"` line, as an
 * operator running it gets them, plus $BENCH_SERVER_NODE_FLAGS (for
 * example "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the server).
 */
export function serverNodeFlags(): string[] {
  const head = readFileSync(join(REPO, "bin/mandos"), "utf8").split("\n", 3).join("\n");
  const m = /\bexec node(.*?) "\$0" "\$@"$/m.exec(head);
  return [...words(m?.[1]), ...words(process.env.BENCH_SERVER_NODE_FLAGS)];
}

/**
 * Whether some socket listens on `port`, from the kernel's tables. Not by
 * binding the port to see if it is taken: a server that starts slowly (10,000
 * clients to load) could try to listen just while such a probe held it, and
 * fail with EADDRINUSE.
 */
function listening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return ["/proc/net/tcp", "/proc/net/tcp6"].some((table) => {
    const rows = existsSync(table) ? readFileSync(table, "utf8").split("\n").slice(1) : [];
    // Columns: sl local_address rem_address st ...; st 0A is LISTEN.
    return rows.some((row) => {
      const [, local, , state] = row.trim().split(/\s+/);
      return state === "0A" && local?.endsWith(`:${hex}`);
    });
  });
}

export async function waitForPort(port: number, child: ChildProcess, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before listening`);
    if (listening(port)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not listen on ${port} within ${ms} ms`);
}

/** One run's row: the generator's report and the server's CPU and peak memory over it. */
function measuredRun(
  server: RebootRun["server"],
  workers: RebootRun["workers"],
  generation: string,
  clients: number,
  concurrency: number,
  report: RebootRun["report"],
  before: { cpuMs: number },
  after: { cpuMs: number; peakRssKiB: number },
): RebootRun {
  return {
    server,
    workers,
    generation,
    clients,
    concurrency,
    report,
    peakRssMiB: Math.round(after.peakRssKiB / 102.4) / 10,
    cpuMsPerSecret: report.succeeded ? Math.round(((after.cpuMs - before.cpuMs) / report.succeeded) * 1000) / 1000 : 0,
  };
}

export function procStats(pid: number): { cpuMs: number; peakRssKiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuMs: (ticks * 1000) / CLK_TCK, peakRssKiB: hwm };
}

/**
 * Runs the load generator on `job`. With a warm-up, `onWarm` runs between it
 * and the measured wave (to read the server's CPU time there).
 */
function runGenerator(job: LoadJob, dir: string, onWarm: () => void = () => {}): Promise<LoadReport> {
  const jobFile = join(dir, `job-${process.hrtime.bigint()}.json`);
  writeFileSync(jobFile, JSON.stringify(job));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...words(process.env.BENCH_LOADGEN_NODE_FLAGS), join(REPO, "dist/bench/load-generator.js"), jobFile], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.startsWith("WARM\n")) {
        out = out.slice(5);
        onWarm();
        child.stdin.end("GO\n");
      }
    });
    child.on("exit", (code) => {
      rmSync(jobFile, { force: true });
      if (code !== 0) reject(new Error(`load generator exited with ${code}`));
      else resolve(JSON.parse(out) as LoadReport);
    });
  });
}

/** Runs a command to its end, its output collected. */
export function runCollecting(command: string, args: readonly string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}

export async function stopProcess(child: ChildProcess, group = false): Promise<void> {
  const signal = (sig: NodeJS.Signals): void => {
    try {
      if (group && child.pid !== undefined) process.kill(-child.pid, sig);
      else child.kill(sig);
    } catch {
      // already gone
    }
  };
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    signal("SIGTERM");
    const t = setTimeout(() => signal("SIGKILL"), 10_000);
    await exited;
    clearTimeout(t);
  }
  // Children of the group (the reference's helpers) go too.
  if (group) signal("SIGKILL");
}

export interface RebootOptions {
  readonly sizes: readonly number[];
  readonly concurrencies: readonly number[];
  readonly workers: ReadonlyArray<number | "default">;
  /**
   * Connections made to each of our servers before it is measured, so that
   * the JIT has compiled the hot path (ours and the load generator's): a
   * run of 1,000 machines lasts under a second, and V8 reaches its fastest
   * code only after a few thousand handshakes (with 1,000 of warm-up a
   * 1,000-machine wave still cost 0.8 ms of CPU a secret, with 4,000 0.6
   * ms, as a 10,000-machine wave does). The reference is not warmed up.
   */
  readonly warmupConnections?: number;
  /** Connections per run: all N machines once. */
  readonly referenceConnections: number;
  readonly referenceBudgetMs: number;
  readonly log: (line: string) => void;
  /** A private system bus for the reference server (it needs one even with --no-dbus). */
  readonly referenceBus?: string;
  /** mandos-load's ref-server (native.ts): run it too, on the same machines, at each concurrency. */
  readonly nativeServer?: string | undefined;
  /** Keep every connection's timings in the reports (the picture of the wave). */
  readonly recordSamples?: boolean;
  /** More options for our server (bench/observe.ts: --metrics, --audit-log). */
  readonly serverArgs?: readonly string[];
  /** Share of legacy (TLS 1.2, OpenPGP) machines: 0 (default), 1, or 0.5 for a mixed wave. */
  readonly legacyShare?: number;
  /** Told when a measured wave of ours starts (after its warm-up) and ends (bench/etcd-wave.ts reads etcd's counters there). */
  readonly onWave?: (phase: "start" | "end") => void | Promise<void>;
}

/** clients.list as mandos-load's ref-server reads it; it opens only the secret files. */
function writeNativeManifest(dir: string, machines: readonly Machine[]): void {
  mkdirSync(join(dir, "secrets"), { recursive: true });
  const lines = machines.map((m, i) => {
    writeFileSync(join(dir, "secrets", `machine${i}`), Buffer.from(m.secretBase64, "base64"));
    return `machine${i} ${m.keyId} - - secrets/machine${i}\n`;
  });
  writeFileSync(join(dir, "clients.list"), lines.join(""));
}

/** Waits for a spawned server, runs the (warmed-up) wave against it, stops it. */
async function warmedWave(
  server: ChildProcess,
  label: string,
  workers: RebootRun["workers"],
  port: number,
  wave: { readonly n: number; readonly concurrency: number; readonly generation: string; readonly machines: LoadJob["machines"]; readonly root: string },
  options: RebootOptions,
): Promise<RebootRun> {
  try {
    await waitForPort(port, server, 60_000);
    let before = procStats(server.pid!);
    const report = await runGenerator(
      {
        host: "::1", port, concurrency: wave.concurrency, timeoutMs: 30_000, budgetMs: 60_000, priority: DEFAULT_PRIORITY, connections: wave.n, machines: wave.machines,
        warmupConnections: options.warmupConnections ?? 0, recordSamples: options.recordSamples ?? false,
      },
      wave.root,
      () => {
        before = procStats(server.pid!);
        if (label === "mandos-ts") void options.onWave?.("start");
      },
    );
    const after = procStats(server.pid!);
    // Awaited before the server stops: what it does after the wave (etcd-wave.ts waits for its fold) is not in `after`.
    if (label === "mandos-ts") await options.onWave?.("end");
    const run = measuredRun(label, workers, wave.generation, wave.n, wave.concurrency, report, before, after);
    options.log(describe(run));
    return run;
  } finally {
    await stopProcess(server);
  }
}

export async function runRebootSimulation(options: RebootOptions): Promise<RebootRun[]> {
  const runs: RebootRun[] = [];
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-bench-"));
  // Run as root, our server drops to _mandos and then saves its state, as
  // it does in service: it must reach the state directory, which it makes
  // (and owns) itself. Without this it would run without keeping state,
  // neither paying for the saves nor holding their caches.
  chmodSync(root, 0o711);
  try {
    for (const n of options.sizes) {
      options.log(`generating ${n} machines`);
      const machines = makeMachines(n, options.legacyShare);
      const generation = !options.legacyShare ? "modern" : options.legacyShare >= 1 ? "legacy" : "mixed";
      const conf = join(root, `conf-${n}`);
      writeConfig(conf, machines);
      const jobMachines = machines.map(({ privateKeyPem, secretBase64, legacy }) => ({ privateKeyPem, secretBase64, ...(legacy ? { legacy } : {}) }));
      for (const workers of options.workers) {
        for (const concurrency of options.concurrencies) {
          const port = await freePort();
          const args = [
            join(REPO, "bin/mandos"), "--configdir", conf, "--statedir", join(root, "state"), "--no-restore",
            "--no-zeroconf", "--no-dbus", "--foreground", "--debuglevel", "ERROR", "--address", "::1", "--port", String(port),
            // Every simulated machine is ::1 here; a real fleet has an address each.
            "--max-per-source", "0",
          ];
          if (workers !== "default") args.push("--workers", String(workers));
          args.push(...(options.serverArgs ?? []));
          const server = spawn(process.execPath, [...serverNodeFlags(), ...args], { stdio: ["ignore", "ignore", "inherit"] });
          runs.push(await warmedWave(server, "mandos-ts", workers, port, { n, concurrency, generation, machines: jobMachines, root }, options));
        }
      }
      // ref-server speaks only the modern generation.
      if (options.nativeServer && generation === "modern") {
        // mandos-load's ref-server (native.ts), on the same machines: reads each client's key ID and secret from clients.list.
        writeNativeManifest(conf, machines);
        for (const concurrency of options.concurrencies) {
          const port = await freePort();
          const server = spawn(options.nativeServer, ["-k", conf, "-a", "::1", "-p", String(port), "-w", "2", "--nodelay"], { stdio: ["ignore", "ignore", "inherit"] });
          runs.push(await warmedWave(server, "native-ref-server", 2, port, { n, concurrency, generation, machines: jobMachines, root }, options));
        }
      }
      if (existsSync(REFERENCE) && options.referenceBus && options.referenceConnections > 0) {
        const port = await freePort();
        const refState = join(root, "ref-state");
        mkdirSync(refState, { recursive: true });
        const agentsBefore = snapshotAgents();
        // Its own process group: the reference forks a multiprocessing
        // manager and per-connection children that outlive a SIGTERM.
        const server = spawn(
          REFERENCE,
          ["--configdir", conf, "--statedir", refState, "--no-restore", "--no-zeroconf", "--no-dbus", "--foreground", "--address", "::1", "--port", String(port)],
          { stdio: ["ignore", "ignore", "ignore"], detached: true, env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: options.referenceBus } },
        );
        try {
          await waitForPort(port, server, 120_000);
          const before = procStats(server.pid!);
          const concurrency = Math.min(64, ...options.concurrencies);
          const report = await runGenerator(
            {
              host: "::1", port, concurrency, timeoutMs: 30_000, budgetMs: options.referenceBudgetMs, priority: DEFAULT_PRIORITY,
              connections: Math.min(n, options.referenceConnections), machines: jobMachines, recordSamples: options.recordSamples ?? false,
            },
            root,
          );
          const run = measuredRun("python-reference", null, generation, n, concurrency, report, before, procStats(server.pid!));
          runs.push(run);
          options.log(describe(run));
        } finally {
          await stopProcess(server, true);
          // Its gpg-agent has left the group (it daemonises).
          stopAgentsSince(agentsBefore);
        }
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return runs;
}

export function describe(run: RebootRun): string {
  const r = run.report;
  return (
    `${run.server} workers=${run.workers ?? "-"} ${run.generation} N=${run.clients} c=${run.concurrency}: ` +
    `${r.secretsPerSecond} secrets/s (steady ${r.steadySecretsPerSecond}), p50 ${r.latencyMs.p50} p90 ${r.latencyMs.p90} p99 ${r.latencyMs.p99} max ${r.latencyMs.max} ms, ` +
    `${r.succeeded}/${r.attempted} ok, ${r.failures} failed, ${r.mismatches} mismatched, ` +
    `peak RSS ${run.peakRssMiB} MiB, ${run.cpuMsPerSecret} ms CPU/secret`
  );
}

export const MACHINE = `${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}`;
