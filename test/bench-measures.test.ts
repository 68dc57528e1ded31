// The benchmark's own measuring tools: the per-thread CPU split learns
// which threads are workers from the preload and charges a worker's CPU to
// them, not to the main thread; the extrapolation names the bound that
// wins; repeated side-by-side rounds compare each of ours with the native
// row of its own round; the wave picture draws one line per series and
// panel and escapes what it prints; the socket floor's exchanges complete,
// and a held floor keeps each connection open as long as it is told.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { childrenCpuMs, threadCpu, threadRolePreload, workerThreadIds } from "../bench/threads.js";
import { extrapolate, medianCpuRow, nativeTables, roundRatios, type NativeReport, type NativeRow } from "../bench/native.js";
import { median } from "../bench/stats.js";
import { buildFloorClient, measureFloor } from "../bench/socket-floor.js";
import { waveSvg } from "../bench/wave-svg.js";

describe("per-thread CPU", () => {
  it("charges a busy worker's CPU to the workers, and names the main thread by the PID", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mandos-ts-threads-"));
    try {
      const preload = join(dir, "roles.cjs");
      const roles = join(dir, "roles.txt");
      threadRolePreload(preload, roles);
      // The worker hashes for a fixed amount of work, then stays (listening on
      // its port: a worker that ended would take its /proc entry, and its
      // time would count only in the process's total); the process waits on stdin.
      const program = `
        const { Worker } = require("node:worker_threads");
        const w = new Worker("const c = require('node:crypto'); let b = Buffer.alloc(64); for (let i = 0; i < 300000; i++) b = c.createHash('sha256').update(b).digest(); const { parentPort } = require('node:worker_threads'); parentPort.on('message', () => {}); parentPort.postMessage('done');", { eval: true });
        w.once("message", () => process.stdout.write("done\\n"));
        process.stdin.resume();`;
      const child = spawn(process.execPath, ["--require", preload, "-e", program], { stdio: ["pipe", "pipe", "inherit"] });
      try {
        await once(child.stdout!, "data");
        const workers = workerThreadIds(roles);
        assert.equal(workers.size, 1, "one worker thread named");
        assert.ok(!workers.has(child.pid!), "the main thread is not a worker");
        const cpu = threadCpu(child.pid!, (tid) => workers.has(tid));
        assert.ok(cpu.workers > 0, `the worker's hashing is charged to it: ${JSON.stringify(cpu)}`);
        assert.ok(cpu.workers > cpu.main, `the worker did more than the idle main thread: ${JSON.stringify(cpu)}`);
        assert.ok(cpu.total >= cpu.main + cpu.workers, "the process total covers its threads");
      } finally {
        child.kill();
        await once(child, "exit");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("charges a child process's CPU to its parent's children, alive and once reaped, and the grandchildren it reaped", async () => {
    // A parent that starts a child (a shell that starts a busy grandchild and waits for it, then stays), and tells when it is done.
    const burn = `node -e "const c = require('node:crypto'); let b = Buffer.alloc(64); for (let i = 0; i < 300000; i++) b = c.createHash('sha256').update(b).digest()"`;
    const program = `
      const { spawn } = require("node:child_process");
      const c = spawn("/bin/sh", ["-c", ${JSON.stringify(`${burn}; echo burnt; exec sleep 60`)}], { stdio: ["ignore", "pipe", "inherit"] });
      c.stdout.once("data", () => process.stdout.write("burnt\\n"));
      process.stdin.once("data", () => { c.kill(); c.once("exit", () => process.stdout.write("reaped\\n")); });`;
    const parent = spawn(process.execPath, ["-e", program], { stdio: ["pipe", "pipe", "inherit"] });
    try {
      const before = childrenCpuMs(parent.pid!);
      await once(parent.stdout!, "data");
      const alive = childrenCpuMs(parent.pid!);
      assert.ok(alive - before >= 100, `the grandchild's hashing, reaped by the live child, counts: ${before} -> ${alive} ms`);
      parent.stdin!.write("go\n");
      await once(parent.stdout!, "data");
      const reaped = childrenCpuMs(parent.pid!);
      assert.ok(reaped >= alive, `once the child is reaped its time stays counted: ${alive} -> ${reaped} ms`);
    } finally {
      parent.kill();
      await once(parent, "exit");
    }
  });
});

describe("the extrapolation to more cores", () => {
  it("is bound by the cores while they are few, then by the main thread", () => {
    const pool = { total: 1000, main: 250, workers: 600, others: 150 };
    const threads = { total: 1250, main: 50, workers: 1100, others: 100 };
    const native = { total: 500, main: 0, workers: 500, others: 0 };
    const two = extrapolate(pool, threads, native, 2);
    assert.deepEqual([two.poolSecretsPerSecond, two.poolBoundBy, two.threadsSecretsPerSecond, two.threadsBoundBy, two.nativeSecretsPerSecond], [2000, "cores", 1600, "cores", 4000]);
    const sixteen = extrapolate(pool, threads, native, 16);
    assert.deepEqual([sixteen.poolSecretsPerSecond, sixteen.poolBoundBy, sixteen.threadsSecretsPerSecond, sixteen.threadsBoundBy, sixteen.nativeSecretsPerSecond], [4000, "main thread", 12800, "cores", 32000]);
    const sixtyFour = extrapolate(pool, threads, native, 64);
    assert.deepEqual([sixtyFour.threadsSecretsPerSecond, sixtyFour.threadsBoundBy], [20000, "main thread"]);
  });
});
describe("side-by-side rounds", () => {
  const row = (server: "mandos-ts" | "native", workers: number, rate: number, cpu: number, p99: number, serveThreads?: number): NativeRow => ({
    server,
    workers,
    serveThreads,
    pinned: null,
    clients: 1000,
    concurrency: 256,
    measured: "8 s",
    ok: 1,
    failed: 0,
    mismatched: 0,
    secretsPerSecond: rate,
    windowSecretsPerSecond: rate,
    latencyMs: { p50: p99 / 2, p99, max: p99 },
    cpuUsPerSecret: { total: cpu, main: cpu, workers: 0, others: 0 },
    childrenCpuUsPerSecret: 0,
    peakRssMiB: 100,
    warmup: { ok: 1, failed: 0 },
  });

  it("takes the middle of the values, the mean of the two middles when even", () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([]), 0);
  });

  it("compares each of ours with the native row of its own round, and gives the medians", () => {
    const ratios = roundRatios([
      [row("mandos-ts", 2, 900, 800, 200), row("native", 2, 1000, 400, 100)],
      // The native server slow in this round: ours is compared with it, not with round one's.
      [row("native", 2, 500, 800, 400), row("mandos-ts", 2, 500, 800, 200), row("mandos-ts", 0, 250, 1600, 800, 2)],
      [row("mandos-ts", 2, 800, 1200, 300), row("native", 2, 1000, 400, 100)],
      // No native row: counts for none.
      [row("mandos-ts", 2, 1, 1, 1)],
      // A native figure of zero (a failed measurement): the round counts for none.
      [row("mandos-ts", 2, 1, 1, 1), row("native", 2, 1000, 0, 100)],
    ]);
    const two = ratios.find((r) => r.label === "workers=2")!;
    assert.deepEqual(two.secretsPerSecond, [0.9, 1, 0.8]);
    assert.deepEqual(two.cpuPerSecret, [2, 1, 3]);
    assert.deepEqual(two.p99, [2, 0.5, 3]);
    assert.deepEqual(two.median, { secretsPerSecond: 0.9, cpuPerSecret: 2, p99: 2 });
    const threads = ratios.find((r) => r.label === "serve-threads=2")!;
    assert.deepEqual(threads.cpuPerSecret, [2]);
    assert.equal(ratios.length, 2);
  });

  it("compares each Node.js release with the native row of its own round", () => {
    const on = (node: string, rate: number, cpu: number): NativeRow => ({ ...row("mandos-ts", 1, rate, cpu, 100), node });
    const ratios = roundRatios([
      [on("v20.20.2", 800, 500), on("v22.23.5", 900, 450), row("native", 2, 1000, 300, 100)],
      [row("native", 2, 1000, 250, 100), on("v22.23.5", 850, 500), on("v20.20.2", 700, 600)],
      // No native figure: the round counts for none.
      [on("v20.20.2", 1, 1), row("native", 2, 1000, 0, 100)],
    ], (r) => r.node ?? "?");
    assert.deepEqual(ratios.map((r) => r.label), ["v20.20.2", "v22.23.5"]);
    assert.deepEqual(ratios[0]!.cpuPerSecret.map((x) => +x.toFixed(3)), [1.667, 2.4]);
    assert.deepEqual(ratios[1]!.cpuPerSecret, [1.5, 2]);
    assert.deepEqual(ratios[1]!.secretsPerSecond, [0.9, 0.85]);
  });

  it("compares a storm on a server just started and one at rest each with the native server measured alike", () => {
    const as = (r: NativeRow, measured: string): NativeRow => ({ ...r, measured });
    const started = "wave of 1000, just started";
    const rested = "wave of 1000, after 30 s at rest";
    const report: NativeReport = {
      sideBySide: [], sideBySideRounds: [], pinned: [], large: [], extrapolation: [], floor: [], runtimes: [],
      rested: [
        as(row("mandos-ts", 1, 1300, 1000, 240), started), as(row("mandos-ts", 1, 1800, 600, 170), rested),
        as(row("native", 2, 2600, 250, 120), started), as(row("native", 2, 3000, 300, 85), rested),
      ],
    };
    const lines = nativeTables(report).split("\n").filter((l) => l.startsWith("ours "));
    assert.deepEqual(lines, [
      `ours workers=1, ${started} / native: secrets/s 0.50, CPU per secret 4.00, p99 2.00`,
      `ours workers=1, ${rested} / native: secrets/s 0.60, CPU per secret 2.00, p99 2.00`,
    ]);
  });

  it("reads the extrapolation from each server's round of median CPU a secret", () => {
    const rounds = [
      [row("mandos-ts", 2, 900, 800, 200), row("native", 2, 1000, 500, 100)],
      [row("native", 2, 1000, 400, 100), row("mandos-ts", 2, 700, 1200, 300)],
      [row("mandos-ts", 2, 800, 1000, 250), row("native", 2, 1000, 450, 100)],
    ];
    const ours = (r: NativeRow): boolean => r.server === "mandos-ts";
    assert.equal(medianCpuRow(rounds, ours)?.cpuUsPerSecret.total, 1000);
    assert.equal(medianCpuRow(rounds, (r) => r.server === "native")?.cpuUsPerSecret.total, 450);
    // Two rounds: the lower of the two middles.
    assert.equal(medianCpuRow(rounds.slice(0, 2), ours)?.cpuUsPerSecret.total, 800);
    assert.equal(medianCpuRow(rounds, (r) => r.serveThreads === 2), undefined);
  });
});

describe("the picture of the wave", () => {
  it("draws each series in both panels, scaled to its machines, with its label escaped", () => {
    const svg = waveSvg(
      "A wave",
      [
        { label: "ours <fast>", attempted: 4, completionsMs: [10, 20, 30, 40], latenciesMs: [10, 10, 10, 10], note: "4 of 4" },
        { label: "theirs & slow", attempted: 4, completionsMs: [1000, 2000], latenciesMs: [1000, 2000], note: "2 of 4" },
      ],
      ["caption"],
    );
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.equal((svg.match(/<path /g) ?? []).length, 4, "two series × two panels");
    assert.ok(svg.includes("ours &lt;fast&gt;") && svg.includes("theirs &amp; slow"));
    assert.ok(!svg.includes("<fast>"));
    // The second series served half its machines: its lines stop at 50% (y = top + height / 2 = 200).
    const paths = [...svg.matchAll(/<path d="([^"]+)"/g)].map((m) => m[1]!);
    assert.match(paths[2]!, /V200$/);
    assert.match(paths[0]!, /V70$/, "the first reaches 100% (y = top)");
  });
});

describe("the socket floor", () => {
  it("completes the exchange, and a held floor keeps each connection open as long as it is told", { timeout: 60_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "mandos-ts-floor-"));
    try {
      const client = buildFloorClient(dir);
      if (typeof client !== "string") {
        t.skip(client.skipped);
        return;
      }
      const load = { concurrency: 8, warmupSeconds: 0.3, seconds: 1 };
      const quick = await measureFloor(client, load, 0);
      assert.ok(quick.connections > 0 && quick.cpuUsPerConnection.total > 0, JSON.stringify(quick));
      // Eight connections held 200 ms each: at most 40 a second, however fast the machine.
      const held = await measureFloor(client, load, 200);
      assert.ok(held.connections > 0, JSON.stringify(held));
      assert.ok(held.connectionsPerSecond <= 40, `held 200 ms, 8 at once: ${held.connectionsPerSecond} a second`);
      assert.ok(quick.connectionsPerSecond > held.connectionsPerSecond, `${quick.connectionsPerSecond} closing at once, ${held.connectionsPerSecond} held`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
