// Side by side with a native server (issue 19): our server and mandos-load's
// `ref-server` (a minimal Mandos server in C on GnuTLS, threads, TCP_NODELAY)
// under the same GnuTLS load generator (`mandos-load`), the same clients
// and the same load, in one run. Per server: secrets/s, latency p50/p99,
// CPU per secret for the whole process and per thread (main, workers,
// others; threads.ts), peak RSS; then the ratios ours/native.
//
// mandos-load is not part of this repository: its C sources are copied from
// $MANDOS_LOAD_DIR (default DEFAULT_MANDOS_LOAD_DIR) into a scratch
// directory and built there with make, gcc, pkg-config and GnuTLS's headers
// (libgnutls28-dev). When they are missing, this part says why and is skipped.
//
// Runs: 1,000 clients (made by its make-clients.sh), 256 connections at
// once, 3 s of warm-up then 8 s measured, for ours with --workers 0 and 2
// and for `ref-server -w 2 --nodelay`; the same pinned with taskset (server
// and load generator on different cores where there are enough) for
// --workers 0, 1, 2 and the native server; and 10,000 clients, one wave of
// 10,000 connections 256 at once, then 1,000 at once for the peak RSS,
// then the default server's wave again with every client checked every two
// minutes (the default interval; the rows before check once a day), the
// checkers' CPU (the checker host's and their own) beside the server's.
// With $BENCH_NATIVE_ROUNDS=N the side-by-side rows run N times, each
// round in the reverse order of the one before: ours against each round's
// native row with the median, and the extrapolation and floor comparison
// from each server's round of median CPU a secret.
// After the side-by-side rows, the socket floor (socket-floor.ts): node:net
// alone under the same concurrency, closing at once and held as long as
// ours lived. Last, a wave as a real reboot storm meets the server: the
// 1,000 clients once, 256 at once, on a server just started (no warm-up),
// and on one warmed up and then left at rest for REST_SECONDS.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../test/helpers/wait.js";
import { runCollecting, serverNodeFlags, stopProcess, waitForPort } from "./reboot.js";
import { childrenCpuMs, cpuBetween, peakRssMiB, threadCpu, threadRolePreload, workerThreadIds, type ThreadCpu } from "./threads.js";
import { buildFloorClient, describeFloor, measureFloor, type FloorRow } from "./socket-floor.js";
import { median } from "./stats.js";
import { copyBuild, fetchedRuntimes, type Runtime } from "./runtimes.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
/** Where the project's shared tools folder keeps mandos-load; $MANDOS_LOAD_DIR overrides it. */
export const DEFAULT_MANDOS_LOAD_DIR = "/work/shared/tools/mandos-load";
/**
 * Client sets up to this size are made by mandos-load's own make-clients.sh
 * (three openssl runs a client: about 4 minutes for 1,000 on this 2-core
 * machine when it is busy); larger ones are written here in the same layout
 * (mandos-load checks every key ID against GnuTLS's own as it loads them).
 */
const SCRIPT_MAX_CLIENTS = 1000;
/** Secret size: make-clients.sh's default. */
const SECRET_BYTES = 512;

export interface NativeTools {
  readonly loadGenerator: string;
  readonly refServer: string;
  readonly makeClients: string;
}

/** Copies mandos-load's folder into `work` and builds it; a reason when it cannot. */
export function buildNativeTools(work: string): NativeTools | { readonly skipped: string } {
  const source = process.env.MANDOS_LOAD_DIR ?? DEFAULT_MANDOS_LOAD_DIR;
  if (!existsSync(join(source, "Makefile"))) return { skipped: `mandos-load not found in ${source} (set MANDOS_LOAD_DIR)` };
  const probe = spawnSync("sh", ["-c", "command -v make && command -v cc && pkg-config --exists gnutls"], { encoding: "utf8" });
  if (probe.status !== 0) {
    return { skipped: "cannot build mandos-load: needs make, gcc, pkg-config and libgnutls28-dev (scripts/install-bench-tools.sh)" };
  }
  const dir = join(work, "mandos-load");
  cpSync(source, dir, { recursive: true });
  const built = spawnSync("make", ["-C", dir, "mandos-load", "ref-server"], { encoding: "utf8" });
  if (built.status !== 0) return { skipped: `building mandos-load failed: ${(built.stderr || built.stdout).trim().split("\n").slice(-3).join(" / ")}` };
  return { loadGenerator: join(dir, "mandos-load"), refServer: join(dir, "ref-server"), makeClients: join(dir, "make-clients.sh") };
}

/** The [DEFAULT] of every client: checkers once a day (the benchmark measures secrets, not checkers). */
const CLIENT_DEFAULTS = { CHECKER: "true", INTERVAL: "1d", TIMEOUT: "2d", EXTENDED_TIMEOUT: "2d" } as const;

/** A client directory as make-clients.sh lays it out: keys/, clients.list, clients.conf, mandos.conf. */
export function makeClientSet(tools: NativeTools, n: number, dir: string, log: (line: string) => void, quick = false): void {
  if (n <= SCRIPT_MAX_CLIENTS && !quick) {
    log(`make-clients.sh ${n}`);
    const made = spawnSync(tools.makeClients, [String(n), dir, String(SECRET_BYTES)], {
      env: { ...process.env, ...CLIENT_DEFAULTS, JOBS: String(availableParallelism()) },
      encoding: "utf8",
    });
    if (made.status !== 0) throw new Error(`make-clients.sh failed: ${made.stderr.trim()}`);
    return;
  }
  log(`writing ${n} clients in make-clients.sh's layout`);
  mkdirSync(join(dir, "keys"), { recursive: true, mode: 0o700 });
  const list: string[] = [];
  const conf = [
    `[DEFAULT]\nchecker = ${CLIENT_DEFAULTS.CHECKER}\ninterval = ${CLIENT_DEFAULTS.INTERVAL}\ntimeout = ${CLIENT_DEFAULTS.TIMEOUT}\nextended_timeout = ${CLIENT_DEFAULTS.EXTENDED_TIMEOUT}\n`,
  ];
  for (let i = 1; i <= n; i++) {
    const name = `client-${String(i).padStart(5, "0")}`;
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const secret = randomBytes(SECRET_BYTES);
    const kid = createHash("sha256").update(publicKey.export({ type: "spki", format: "der" })).digest("hex").toUpperCase();
    writeFileSync(join(dir, "keys", `${name}.pub.pem`), publicKey.export({ type: "spki", format: "pem" }), { mode: 0o600 });
    writeFileSync(join(dir, "keys", `${name}.key.pem`), privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    writeFileSync(join(dir, "keys", `${name}.secret`), secret, { mode: 0o600 });
    list.push(`${name} ${kid} keys/${name}.pub.pem keys/${name}.key.pem keys/${name}.secret\n`);
    const wrapped = secret.toString("base64").replace(/(.{64})(?=.)/g, "$1\n    ");
    conf.push(`[${name}]\nhost = 127.0.0.1\nkey_id = ${kid}\nfingerprint = ${kid.slice(0, 40)}\nsecret =\n    ${wrapped}\n`);
  }
  writeFileSync(join(dir, "clients.list"), list.join(""));
  writeFileSync(join(dir, "clients.conf"), conf.join("\n"), { mode: 0o600 });
  writeFileSync(join(dir, "mandos.conf"), "[DEFAULT]\n", { mode: 0o600 });
}

/** A client set for the server and mandos-load: its directory, its size, and its checkers' interval when not CLIENT_DEFAULTS'. */
export interface ClientSet {
  readonly dir: string;
  readonly count: number;
  readonly checkerInterval?: string;
}

/**
 * `clients` with every client checked every `interval`: a directory beside
 * it whose clients.conf says so, the keys and lists linked, not copied.
 */
export function withCheckerInterval(clients: ClientSet, interval: string, dir: string): ClientSet {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const name of ["keys", "clients.list", "mandos.conf"]) symlinkSync(join(clients.dir, name), join(dir, name));
  const conf = readFileSync(join(clients.dir, "clients.conf"), "utf8");
  if (!/^interval = .*$/m.test(conf)) throw new Error(`no interval in ${clients.dir}/clients.conf's [DEFAULT]`);
  writeFileSync(join(dir, "clients.conf"), conf.replace(/^interval = .*$/m, `interval = ${interval}`), { mode: 0o600 });
  return { dir, count: clients.count, checkerInterval: interval };
}

export interface ServerUnderTest {
  readonly server: "mandos-ts" | "native";
  /** Worker threads (`--workers`, or ref-server's `-w`); "default" leaves ours to choose. */
  readonly workers: number | "default";
  /** Ours with `--serve-threads N` (then `workers` is not used). */
  readonly serveThreads?: number;
  /** taskset CPU lists for the server and the load generator; none: unpinned. */
  readonly pin?: { readonly server: string; readonly generator: string };
  /** Ours on another Node.js release (bench/runtimes.ts); none: the one running the bench. */
  readonly runtime?: Runtime;
}

/** How much load: connections at once, then either seconds of new connections or a fixed count. */
export interface Load {
  readonly concurrency: number;
  /** 0: none, the server measured as it starts. */
  readonly warmupSeconds: number;
  /** Seconds with no connection between the warm-up and the measured run. */
  readonly restSeconds?: number;
  readonly measure: { readonly seconds: number } | { readonly connections: number };
}

/**
 * The rest before the rested wave: longer than any idle-time collection
 * V8 or we would run after a wave (V8's memory reducer starts ~8 s after
 * the allocation stops), so that a server that throws its compiled code
 * away at rest shows it.
 */
export const REST_SECONDS = 30;

/** µs of CPU per secret delivered. */
export interface CpuPerSecret {
  readonly total: number;
  readonly main: number;
  readonly workers: number;
  readonly others: number;
}

export interface NativeRow {
  readonly server: ServerUnderTest["server"];
  /** The Node.js release ours ran on ("v22.23.5"); none for the native server. */
  readonly node?: string | undefined;
  readonly workers: ServerUnderTest["workers"];
  readonly serveThreads?: number | undefined;
  readonly pinned: ServerUnderTest["pin"] | null;
  readonly clients: number;
  readonly concurrency: number;
  /** "8 s" or "wave of 10000". */
  readonly measured: string;
  readonly ok: number;
  readonly failed: number;
  readonly mismatched: number;
  /** Secrets over the generator's whole wall time (drain included). */
  readonly secretsPerSecond: number;
  /** Secrets that arrived within the load window, over its length (duration runs). */
  readonly windowSecretsPerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly cpuUsPerSecret: CpuPerSecret;
  /** The checkers' interval, when not once a day. */
  readonly checkerInterval?: string | undefined;
  /** µs a secret outside the server process: its child processes (the checker host and the checkers). */
  readonly childrenCpuUsPerSecret: number;
  readonly peakRssMiB: number;
  readonly warmup: { readonly ok: number; readonly failed: number };
}

/** mandos-load's "RESULT k=v ..." line. */
type LoadResult = Readonly<Record<string, number>>;

async function runLoad(tools: NativeTools, port: number, clientsDir: string, args: readonly string[], cpus: string | undefined): Promise<LoadResult> {
  const argv = ["-a", "::1", "-p", String(port), "-k", clientsDir, "-t", "30", ...args];
  const [command, commandArgs] = cpus ? ["taskset", ["-c", cpus, tools.loadGenerator, ...argv]] : [tools.loadGenerator, argv];
  const { code, out, err } = await runCollecting(command, commandArgs);
  const line = out.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) throw new Error(`mandos-load exited with ${code} and no RESULT line: ${err.trim().slice(0, 500)}`);
  const result: Record<string, number> = {};
  for (const kv of line.slice(7).split(" ")) {
    const [k, v] = kv.split("=");
    if (k) result[k] = Number(v);
  }
  if (code !== 0) process.stderr.write(`mandos-load exited with ${code}: ${err.trim().slice(0, 500)}\n`);
  return result;
}

interface Started {
  readonly child: ChildProcess;
  readonly isWorker: (tid: number) => boolean;
}

async function startServer(tools: NativeTools, s: ServerUnderTest, clientsDir: string, port: number, work: string): Promise<Started> {
  const taskset = (argv: string[]): [string, string[]] => (s.pin ? ["taskset", ["-c", s.pin.server, ...argv]] : [argv[0]!, argv.slice(1)]);
  let child: ChildProcess;
  let isWorker: (tid: number) => boolean;
  if (s.server === "native") {
    const [cmd, args] = taskset([tools.refServer, "-k", clientsDir, "-a", "::1", "-p", String(port), "-w", String(s.workers === "default" ? 2 : s.workers), "--nodelay"]);
    child = spawn(cmd, args, { stdio: ["ignore", "ignore", "ignore"] });
    // Its main thread only waits in pthread_join; the others accept and serve (its signal thread sleeps).
    isWorker = () => true;
  } else {
    const roles = join(work, `roles-${port}.txt`);
    const preload = join(work, `roles-${port}.cjs`);
    threadRolePreload(preload, roles);
    // Made by the server itself, as root, for the user it becomes: it keeps its state as in service.
    const state = join(work, `state-${port}`);
    const argv = [
      s.runtime?.node ?? process.execPath, ...serverNodeFlags(), "--require", preload,
      join(s.runtime?.app ?? REPO, "bin/mandos"), "--configdir", clientsDir, "--statedir", state, "--no-restore",
      "--no-zeroconf", "--no-dbus", "--foreground", "--debuglevel", "ERROR", "--address", "::1", "--port", String(port),
      // Every simulated client is ::1 here; a real fleet has an address each.
      "--max-per-source", "0",
      ...(s.serveThreads ? ["--serve-threads", String(s.serveThreads)] : s.workers === "default" ? [] : ["--workers", String(s.workers)]),
    ];
    const [cmd, args] = taskset(argv);
    child = spawn(cmd, args, { stdio: ["ignore", "ignore", "inherit"] });
    isWorker = (tid) => workerThreadIds(roles).has(tid);
  }
  await waitForPort(port, child, 120_000);
  return { child, isWorker };
}

const perSecret = (cpu: ThreadCpu, secrets: number): CpuPerSecret => {
  const us = (ms: number): number => (secrets > 0 ? Math.round((ms * 1000) / secrets) : 0);
  return { total: us(cpu.total), main: us(cpu.main), workers: us(cpu.workers), others: us(cpu.others) };
};

/** One server: start, warm up, measure, stop. */
export async function measureServer(
  tools: NativeTools,
  s: ServerUnderTest,
  clients: ClientSet,
  load: Load,
  work: string,
): Promise<NativeRow> {
  const port = await freePort();
  const { child, isWorker } = await startServer(tools, s, clients.dir, port, work);
  try {
    const generatorCpus = s.pin?.generator;
    const conc = ["-c", String(load.concurrency)];
    const warm = load.warmupSeconds > 0 ? await runLoad(tools, port, clients.dir, [...conc, "-d", String(load.warmupSeconds)], generatorCpus) : {};
    if (load.restSeconds) await sleep(load.restSeconds * 1000);
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${s.server} server exited (${child.exitCode ?? child.signalCode}) during the warm-up`);
    const before = threadCpu(child.pid!, isWorker);
    const childrenBefore = childrenCpuMs(child.pid!);
    const measureArgs = "seconds" in load.measure ? ["-d", String(load.measure.seconds)] : ["-n", String(load.measure.connections)];
    const r = await runLoad(tools, port, clients.dir, [...conc, ...measureArgs], generatorCpus);
    const cpu = cpuBetween(before, threadCpu(child.pid!, isWorker));
    const childrenMs = childrenCpuMs(child.pid!) - childrenBefore;
    const ok = r.ok ?? 0;
    return {
      server: s.server,
      node: s.server === "native" ? undefined : (s.runtime?.version ?? process.version),
      workers: s.workers,
      serveThreads: s.serveThreads,
      pinned: s.pin ?? null,
      clients: clients.count,
      concurrency: load.concurrency,
      measured:
        ("seconds" in load.measure ? `${load.measure.seconds} s` : `wave of ${load.measure.connections}`) +
        (clients.checkerInterval ? `, checkers every ${clients.checkerInterval}` : "") +
        (load.warmupSeconds === 0 ? ", just started" : load.restSeconds ? `, after ${load.restSeconds} s at rest` : ""),
      ok,
      failed: r.failed ?? 0,
      mismatched: r.mismatch ?? 0,
      secretsPerSecond: Math.round(r.rate ?? 0),
      windowSecretsPerSecond: Math.round(r.rate_window ?? 0),
      latencyMs: { p50: r.lat_p50 ?? 0, p99: r.lat_p99 ?? 0, max: r.lat_max ?? 0 },
      cpuUsPerSecret: perSecret(cpu, ok),
      checkerInterval: clients.checkerInterval,
      childrenCpuUsPerSecret: ok > 0 ? Math.round((Math.max(0, childrenMs) * 1000) / ok) : 0,
      peakRssMiB: peakRssMiB(child.pid!),
      warmup: { ok: warm.ok ?? 0, failed: (warm.failed ?? 0) + (warm.mismatch ?? 0) },
    };
  } finally {
    await stopProcess(child);
  }
}

/**
 * What the per-thread figures say about a host of `cores` cores that serves
 * only Mandos (the load generator elsewhere), for one process with
 * cores − 1 workers: the cores bound the rate at cores × 10⁶ / (µs a
 * secret in all), the main thread alone at 10⁶ / (its µs a secret); the
 * lower bound wins. For the native server, threads scale with the cores.
 * Assumes each thread's CPU per secret stays what it is here: no lock or
 * cache contention that grows with the cores, the kernel's TCP stack and
 * the NIC not the bound, batches to the workers as full as here, and the
 * "others" threads (GC, compilation) spread over the cores.
 */
export interface Extrapolation {
  readonly cores: number;
  /** One process, the main thread and cores − 1 workers. */
  readonly poolSecretsPerSecond: number;
  /** Which bound sets it: "main thread" or "cores". */
  readonly poolBoundBy: string;
  /** One process, the main thread and cores − 1 serve threads. */
  readonly threadsSecretsPerSecond: number;
  readonly threadsBoundBy: string;
  readonly nativeSecretsPerSecond: number;
}

/** The lower of the two bounds: the cores' (all threads' CPU) and the main thread's alone. */
function bound(cpu: CpuPerSecret, cores: number): { rate: number; by: string } {
  const byCores = cpu.total > 0 ? (cores * 1e6) / cpu.total : 0;
  const byMain = cpu.main > 0 ? 1e6 / cpu.main : Infinity;
  return { rate: Math.round(Math.min(byCores, byMain)), by: byMain < byCores ? "main thread" : "cores" };
}

export function extrapolate(pool: CpuPerSecret, threads: CpuPerSecret, native: CpuPerSecret, cores: number): Extrapolation {
  const p = bound(pool, cores);
  const t = bound(threads, cores);
  return {
    cores,
    poolSecretsPerSecond: p.rate,
    poolBoundBy: p.by,
    threadsSecretsPerSecond: t.rate,
    threadsBoundBy: t.by,
    nativeSecretsPerSecond: native.total > 0 ? Math.round((cores * 1e6) / native.total) : 0,
  };
}

export interface NativeReport {
  readonly skipped?: string;
  readonly sideBySide: NativeRow[];
  /**
   * With $BENCH_NATIVE_ROUNDS above 1: every round of the side-by-side
   * rows, the first being `sideBySide`, each later one in the reverse
   * order of the one before.
   */
  readonly sideBySideRounds: NativeRow[][];
  readonly pinned: NativeRow[];
  readonly large: NativeRow[];
  readonly extrapolation: Extrapolation[];
  /** node:net alone, the exchange's shape without TLS (socket-floor.ts): closing at once, and held as long as ours lived. */
  readonly floor: FloorRow[];
  readonly floorSkipped?: string;
  /**
   * Ours with the default worker count on this bench's Node.js and on each
   * other release fetched (bench/runtimes.ts), beside the native server: one
   * list a round ($BENCH_NATIVE_ROUNDS), each in the reverse order of the
   * one before.
   */
  readonly runtimes: NativeRow[][];
  readonly runtimesSkipped?: string;
  /**
   * A reboot storm as it meets the server: the clients once each, on a
   * server just started, then on one warmed up and left at rest for
   * REST_SECONDS; ours (default workers, two serve threads) and native.
   */
  readonly rested: NativeRow[];
}

export interface NativeOptions {
  /** buildNativeTools's answer. */
  readonly tools: NativeTools | { readonly skipped: string };
  readonly quick: boolean;
  readonly work: string;
  readonly log: (line: string) => void;
}

/** Ours with `--workers 2`: the pool row the extrapolation and the socket floor are read against. */
function isTwoWorkers(r: NativeRow): boolean {
  return r.server === "mandos-ts" && r.workers === 2 && !r.serveThreads;
}

/** The side-by-side rows of every round: `sideBySide` alone without rounds. */
function roundsOf(report: NativeReport): ReadonlyArray<readonly NativeRow[]> {
  return report.sideBySideRounds.length > 1 ? report.sideBySideRounds : [report.sideBySide];
}

/** "workers=2", or "serve-threads=2". */
function threadsLabel(r: Pick<NativeRow, "workers" | "serveThreads">): string {
  return r.serveThreads ? `serve-threads=${r.serveThreads}` : `workers=${r.workers}`;
}

export function describeRow(r: NativeRow): string {
  const c = r.cpuUsPerSecret;
  return (
    `${r.server} ${threadsLabel(r)}${r.pinned ? ` pinned ${r.pinned.server}/${r.pinned.generator}` : ""} N=${r.clients} c=${r.concurrency} ${r.measured}: ` +
    `${r.secretsPerSecond} secrets/s, p50 ${r.latencyMs.p50} p99 ${r.latencyMs.p99} ms, ${r.ok} ok ${r.failed} failed ${r.mismatched} mismatched, ` +
    `CPU µs/secret ${c.total} (main ${c.main}, workers ${c.workers}, others ${c.others}` +
    `${r.childrenCpuUsPerSecret > 0 ? `; child processes ${r.childrenCpuUsPerSecret} more` : ""}), peak RSS ${r.peakRssMiB} MiB`
  );
}

/** The CPU lists for a pinned server with `workers` workers and its load generator, on `cores` cores. */
function pinFor(workers: number, cores: number): ServerUnderTest["pin"] {
  const serverCores = Math.max(1, Math.min(workers + 1, cores - 1));
  const list = (from: number, to: number): string => (from === to ? String(from) : `${from}-${to}`);
  return { server: list(0, serverCores - 1), generator: list(serverCores, cores - 1) };
}

export async function runNativeComparison(options: NativeOptions): Promise<NativeReport> {
  const { tools, quick, work, log } = options;
  const empty = { sideBySide: [], sideBySideRounds: [], pinned: [], large: [], extrapolation: [], floor: [], runtimes: [], rested: [] };
  if ("skipped" in tools) {
    log(`native comparison skipped: ${tools.skipped}`);
    return { ...empty, skipped: tools.skipped };
  }
  let report: NativeReport = { ...empty };
  const measure = async (s: ServerUnderTest, clients: ClientSet, load: Load, into: NativeRow[]): Promise<void> => {
    const row = await measureServer(tools, s, clients, load, work);
    into.push(row);
    log(describeRow(row));
  };

  // $BENCH_NATIVE_CLIENTS: a client directory from an earlier make-clients.sh, to save its minutes on repeated runs.
  const reuse = process.env.BENCH_NATIVE_CLIENTS;
  const small = reuse
    ? { dir: reuse, count: readFileSync(join(reuse, "clients.list"), "utf8").split("\n").filter(Boolean).length }
    : { dir: join(work, "clients-small"), count: quick ? 200 : 1000 };
  if (!reuse) makeClientSet(tools, small.count, small.dir, log, quick);
  const seconds = quick ? 2 : 8;
  const load: Load = { concurrency: quick ? 64 : 256, warmupSeconds: quick ? 1 : 3, measure: { seconds } };
  const native: ServerUnderTest = { server: "native", workers: 2 };
  const asShipped: ServerUnderTest = { server: "mandos-ts", workers: "default" };
  const threads2: ServerUnderTest = { server: "mandos-ts", workers: 0, serveThreads: 2 };
  const sideBySide = [{ server: "mandos-ts", workers: 0 }, { server: "mandos-ts", workers: 2 }, threads2, native] as const;
  for (const s of sideBySide) await measure(s, small, load, report.sideBySide);
  // $BENCH_NATIVE_ROUNDS: the side-by-side rows again, alternating their
  // order, for ratios that a single pair's machine noise does not decide.
  const roundCount = quick ? 1 : Math.max(1, Math.floor(Number(process.env.BENCH_NATIVE_ROUNDS ?? "1")) || 1);
  if (roundCount > 1) {
    report.sideBySideRounds.push(report.sideBySide);
    for (let round = 1; round < roundCount; round++) {
      const rows: NativeRow[] = [];
      for (const s of round % 2 === 1 ? [...sideBySide].reverse() : sideBySide) await measure(s, small, load, rows);
      report.sideBySideRounds.push(rows);
    }
  }

  // The same server on the other Node.js releases fetched, as shipped
  // (the default worker count), each round beside the native server.
  const others = fetchedRuntimes();
  if (others.length === 0) {
    report = { ...report, runtimesSkipped: "no other Node.js release fetched (scripts/install-test-runtimes.sh, run by npm test)" };
  } else {
    for (const runtime of others) copyBuild(runtime);
    const servers: ServerUnderTest[] = [asShipped, ...others.map((runtime) => ({ ...asShipped, runtime })), native];
    for (let round = 0; round < roundCount; round++) {
      const rows: NativeRow[] = [];
      for (const s of round % 2 === 1 ? [...servers].reverse() : servers) await measure(s, small, load, rows);
      report.runtimes.push(rows);
    }
  }

  // The socket floor beside them: closing at once, then held as long as ours (two workers) lived.
  const floorClient = buildFloorClient(work);
  const oursPool = report.sideBySide.find(isTwoWorkers);
  if (typeof floorClient !== "string") {
    log(`socket floor skipped: ${floorClient.skipped}`);
    report = { ...report, floorSkipped: floorClient.skipped };
  } else {
    const floorLoad = { concurrency: load.concurrency, warmupSeconds: load.warmupSeconds, seconds };
    for (const holdMs of oursPool ? [0, Math.round(oursPool.latencyMs.p50)] : [0]) {
      const row = await measureFloor(floorClient, floorLoad, holdMs);
      report.floor.push(row);
      log(describeFloor(row));
    }
  }

  const cores = availableParallelism();
  if (cores >= 2) {
    for (const workers of quick ? [0, 2] : [0, 1, 2]) {
      await measure({ server: "mandos-ts", workers, pin: pinFor(workers, cores) }, small, load, report.pinned);
    }
    // A serve thread does what the main thread and a worker do: pinned as many threads as --workers N + 1.
    for (const threads of quick ? [2] : [1, 2]) {
      await measure({ server: "mandos-ts", workers: 0, serveThreads: threads, pin: pinFor(threads - 1, cores) }, small, load, report.pinned);
    }
    await measure({ ...native, pin: pinFor(2, cores) }, small, load, report.pinned);
  } else {
    log("scaling run skipped: one core, nothing to pin apart");
  }

  // With rounds, each server's row of median CPU a secret.
  const rounds = roundsOf(report);
  const oursW2 = medianCpuRow(rounds, isTwoWorkers);
  const oursT2 = medianCpuRow(rounds, (r) => r.server === "mandos-ts" && r.serveThreads === 2);
  const nativeRow = medianCpuRow(rounds, (r) => r.server === "native");
  if (oursW2 && oursT2 && nativeRow) {
    for (const c of [2, 4, 8, 16]) report.extrapolation.push(extrapolate(oursW2.cpuUsPerSecret, oursT2.cpuUsPerSecret, nativeRow.cpuUsPerSecret, c));
  }

  if (!quick) {
    const large = { dir: join(work, "clients-large"), count: 10_000 };
    makeClientSet(tools, large.count, large.dir, log);
    const wave: Load = { concurrency: 256, warmupSeconds: 3, measure: { connections: large.count } };
    for (const s of [{ server: "mandos-ts", workers: 0 }, { server: "mandos-ts", workers: 2 }, threads2, native] as const) {
      await measure(s, large, wave, report.large);
    }
    // The memory goal: 10,000 clients configured, 1,000 connections open at once.
    await measure(asShipped, large, { ...wave, concurrency: 1000 }, report.large);
    await measure(threads2, large, { ...wave, concurrency: 1000 }, report.large);
    // A fleet at the default interval: 83 checkers a second beside the wave.
    const checked = withCheckerInterval(large, "2m", join(work, "clients-large-2m"));
    await measure(asShipped, checked, wave, report.large);
    rmSync(checked.dir, { recursive: true, force: true });
    rmSync(large.dir, { recursive: true, force: true });

    // A storm meets a server that has just started, or one that has been
    // at rest since its last wave: how far from warmed figures are those?
    const once: Load["measure"] = { connections: small.count };
    for (const s of [asShipped, threads2, native]) {
      await measure(s, small, { concurrency: 256, warmupSeconds: 0, measure: once }, report.rested);
      await measure(s, small, { concurrency: 256, warmupSeconds: 3, restSeconds: REST_SECONDS, measure: once }, report.rested);
    }
  }
  return report;
}

const HEADER =
  "| server | workers | pinned server/generator | clients | concurrent | measured | secrets/s | p50 ms | p99 ms | ok | failed | CPU µs/secret | main | workers | others | child processes | peak RSS MiB |\n" +
  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

function rowLine(r: NativeRow): string {
  const c = r.cpuUsPerSecret;
  const name = r.server === "native" ? "native ref-server" : r.node && r.node !== process.version ? `mandos-ts on ${r.node}` : "mandos-ts";
  return `| ${name} | ${r.serveThreads ? `serve threads ${r.serveThreads}` : r.workers} | ${r.pinned ? `${r.pinned.server} / ${r.pinned.generator}` : "-"} | ${r.clients} | ${r.concurrency} | ${r.measured} | ${r.secretsPerSecond} | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.ok} | ${r.failed + r.mismatched} | ${c.total} | ${c.main} | ${c.workers} | ${c.others} | ${r.childrenCpuUsPerSecret} | ${r.peakRssMiB} |\n`;
}

/** Ours over the native row's rate, CPU a secret and p99; null where the native figure is not above zero. */
function versusNative(ours: NativeRow, native: NativeRow): { secretsPerSecond: number | null; cpuPerSecret: number | null; p99: number | null } {
  const q = (a: number, b: number): number | null => (b > 0 ? a / b : null);
  return {
    secretsPerSecond: q(ours.secretsPerSecond, native.secretsPerSecond),
    cpuPerSecret: q(ours.cpuUsPerSecret.total, native.cpuUsPerSecret.total),
    p99: q(ours.latencyMs.p99, native.latencyMs.p99),
  };
}

/** ours/native for each of our rows against the native row of the same table (the one measured alike, if there is one). */
function ratios(rows: readonly NativeRow[]): string {
  const natives = rows.filter((r) => r.server === "native");
  const native = natives[0];
  if (!native) return "";
  const x = (v: number | null): string => (v === null ? "-" : v.toFixed(2));
  const manyReleases = new Set(rows.map((row) => row.node).filter(Boolean)).size > 1;
  let out = "";
  for (const r of rows.filter((row) => row.server === "mandos-ts" && row.concurrency === native.concurrency)) {
    // The native server runs no checkers: a row with them is compared as it is, and says so.
    const checkers = r.checkerInterval ? `, checkers every ${r.checkerInterval} (native: none)` : "";
    const v = versusNative(r, natives.find((n) => n.measured === r.measured) ?? native);
    const release = manyReleases ? ` on ${r.node}` : "";
    const when = natives.length > 1 ? `, ${r.measured}` : "";
    out += `ours ${threadsLabel(r)}${release}${checkers}${when} / native: secrets/s ${x(v.secretsPerSecond)}, CPU per secret ${x(v.cpuPerSecret)}, p99 ${x(v.p99)}\n`;
  }
  return out;
}

/**
 * Among the rows that `which` picks, one from each round, the one whose
 * CPU a secret is the median (the lower of the two middles when even).
 */
export function medianCpuRow(rounds: readonly (readonly NativeRow[])[], which: (r: NativeRow) => boolean): NativeRow | undefined {
  const rows = rounds.flatMap((rows) => rows.filter(which)).sort((a, b) => a.cpuUsPerSecret.total - b.cpuUsPerSecret.total);
  return rows[(rows.length - 1) >> 1];
}

/** One of our side-by-side configurations over the rounds: its ratios to the native row of each round, and their medians. */
export interface RoundRatios {
  /** What the rows were grouped by: "workers=2", "serve-threads=2" by default; "v22.23.5" by release. */
  readonly label: string;
  readonly secretsPerSecond: readonly number[];
  readonly cpuPerSecret: readonly number[];
  readonly p99: readonly number[];
  readonly median: { readonly secretsPerSecond: number; readonly cpuPerSecret: number; readonly p99: number };
}

/**
 * Ours against the native server round by round, our rows grouped by
 * `labelOf` (a round without a native row, or a zero, counts for none).
 */
export function roundRatios(rounds: readonly (readonly NativeRow[])[], labelOf: (r: NativeRow) => string = threadsLabel): RoundRatios[] {
  const byLabel = new Map<string, { secretsPerSecond: number[]; cpuPerSecret: number[]; p99: number[] }>();
  for (const rows of rounds) {
    const native = rows.find((r) => r.server === "native");
    if (!native) continue;
    for (const r of rows) {
      if (r.server !== "mandos-ts") continue;
      const v = versusNative(r, native);
      if (v.secretsPerSecond === null || v.cpuPerSecret === null || v.p99 === null) continue;
      const label = labelOf(r);
      const into = byLabel.get(label) ?? { secretsPerSecond: [], cpuPerSecret: [], p99: [] };
      byLabel.set(label, into);
      into.secretsPerSecond.push(v.secretsPerSecond);
      into.cpuPerSecret.push(v.cpuPerSecret);
      into.p99.push(v.p99);
    }
  }
  return [...byLabel].map(([label, v]) => ({
    label,
    ...v,
    median: { secretsPerSecond: median(v.secretsPerSecond), cpuPerSecret: median(v.cpuPerSecret), p99: median(v.p99) },
  }));
}

/** Round-by-round ratios as a Markdown table, each with its median. */
function ratiosTable(title: string, what: string, ratios: readonly RoundRatios[]): string {
  const list = (v: readonly number[]): string => v.map((x) => x.toFixed(2)).join(", ");
  let out = `${title}\n\n| ${what} | secrets/s | CPU per secret | p99 |\n|---|---|---|---|\n`;
  for (const r of ratios) {
    out += `| ${r.label} | ${list(r.secretsPerSecond)} (${r.median.secretsPerSecond.toFixed(2)}) | ${list(r.cpuPerSecret)} (${r.median.cpuPerSecret.toFixed(2)}) | ${list(r.p99)} (${r.median.p99.toFixed(2)}) |\n`;
  }
  return `${out}\n`;
}

/** The native comparison as Markdown: three tables, each with its ratios, and the extrapolation. */
export function nativeTables(report: NativeReport): string {
  if (report.skipped) return `Native comparison skipped: ${report.skipped}\n`;
  let out = "";
  const section = (title: string, rows: readonly NativeRow[]): void => {
    if (rows.length === 0) return;
    out += `${title}\n\n${HEADER}${rows.map(rowLine).join("")}\n${ratios(rows)}\n`;
  };
  section("Side by side, mandos-load (GnuTLS), same clients and load:", report.sideBySide);
  if (report.sideBySideRounds.length > 1) {
    const n = report.sideBySideRounds.length;
    for (const [i, rows] of report.sideBySideRounds.entries()) if (i > 0) section(`Side by side, round ${i + 1} of ${n}:`, rows);
    out += ratiosTable(`Ours / native over the ${n} rounds, round by round (median):`, "ours", roundRatios(report.sideBySideRounds));
  }
  if (report.runtimesSkipped) out += `Node.js releases skipped: ${report.runtimesSkipped}\n\n`;
  for (const [i, rows] of report.runtimes.entries()) section(`Node.js releases (mandos-ts alone: ${process.version}), round ${i + 1} of ${report.runtimes.length}:`, rows);
  if (report.runtimes.length > 0) {
    out += ratiosTable("Ours on each release / native, round by round (median):", "Node.js", roundRatios(report.runtimes, (r) => r.node ?? "?"));
  }
  section("Pinned with taskset:", report.pinned);
  section("10,000 clients, one wave:", report.large);
  section(`A storm as it meets the server: each client once, on a server just started and on one warmed up then left ${REST_SECONDS} s at rest:`, report.rested);
  if (report.floorSkipped) out += `Socket floor skipped: ${report.floorSkipped}\n\n`;
  if (report.floor.length > 0) {
    out +=
      "The socket floor: node:net alone, the exchange's shape without TLS (a version line in, 250 bytes out, 700 in, 600 out, close), a C client, the same concurrency, held open as long as ours lived:\n\n" +
      "| held ms | connections/s | CPU µs/connection | main | others | peak RSS MiB |\n|---|---|---|---|---|---|\n";
    for (const f of report.floor) {
      const c = f.cpuUsPerConnection;
      out += `| ${f.holdMs} | ${f.connectionsPerSecond} | ${c.total} | ${c.main} | ${c.others} | ${f.peakRssMiB} |\n`;
    }
    const pool = medianCpuRow(roundsOf(report), isTwoWorkers);
    const held = report.floor.find((f) => f.holdMs > 0);
    if (pool && held) {
      out += `\nours with two workers: ${pool.cpuUsPerSecret.total} µs a secret, the held floor ${held.cpuUsPerConnection.total}: ${pool.cpuUsPerSecret.total - held.cpuUsPerConnection.total} µs for TLS, the server's logic and their garbage\n`;
    }
    out += "\n";
  }
  if (report.extrapolation.length > 0) {
    const from = roundsOf(report).length > 1 ? "side-by-side rows, each server's round of median CPU a secret" : "side-by-side rows";
    out += `Extrapolated from the per-thread CPU per secret (${from}; one process, the main thread and cores − 1 workers or serve threads):`;
    out += "\n\n| cores | ours, pool | bound by | ours, serve threads | bound by | native secrets/s |\n|---|---|---|---|---|---|\n";
    for (const e of report.extrapolation) out += `| ${e.cores} | ${e.poolSecretsPerSecond} | ${e.poolBoundBy} | ${e.threadsSecretsPerSecond} | ${e.threadsBoundBy} | ${e.nativeSecretsPerSecond} |\n`;
  }
  return out;
}

/** Rows with failed, mismatched or missing secrets (warm-up included). */
export function failedRows(report: NativeReport): NativeRow[] {
  return [...report.sideBySide, ...report.sideBySideRounds.slice(1).flat(), ...report.runtimes.flat(), ...report.pinned, ...report.large, ...report.rested].filter((r) => r.failed > 0 || r.mismatched > 0 || r.ok === 0 || r.warmup.failed > 0);
}
