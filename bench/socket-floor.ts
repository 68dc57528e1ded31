// The socket floor: what node:net alone costs a connection of the Mandos
// exchange's shape (a version line in, a ClientHello's weight out, a server
// flight's in, a secret's out, close), with no TLS, registry or workers,
// under a small C client (floor/floor-client.c) at the native comparison's
// concurrency. Measured twice: closing at once, and holding each connection
// as long as ours lived in the side-by-side run (its p50), since a wave's
// connections wait ~150 ms and a connection that outlives two young-
// generation collections is promoted and marked. What our server spends a
// secret beyond the held floor is the TLS engine, the server's logic and
// the garbage they make: the part of the gap to the native server that a
// Node server can act on.

import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../test/helpers/wait.js";
import { runCollecting, serverNodeFlags, stopProcess, waitForPort } from "./reboot.js";
import { cpuBetween, peakRssMiB, threadCpu } from "./threads.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

export interface FloorRow {
  /** How long each connection is held open before the secret's bytes go (ms). */
  readonly holdMs: number;
  readonly concurrency: number;
  readonly connections: number;
  readonly connectionsPerSecond: number;
  /** The server process's CPU a connection (µs): all, its main thread, the rest (V8's GC and compiler threads). */
  readonly cpuUsPerConnection: { readonly total: number; readonly main: number; readonly others: number };
  readonly peakRssMiB: number;
}

/** Builds the C client into `work`; a reason when it cannot. */
export function buildFloorClient(work: string): string | { readonly skipped: string } {
  const out = join(work, "floor-client");
  const built = spawnSync("cc", ["-O2", "-pthread", "-o", out, join(REPO, "bench/floor/floor-client.c")], { encoding: "utf8" });
  if (built.status !== 0 || !existsSync(out)) return { skipped: `cannot build the floor client: ${(built.stderr || String(built.error)).trim().slice(0, 300)}` };
  return out;
}

async function runClient(client: string, port: number, concurrency: number, seconds: number): Promise<{ done: number; rate: number }> {
  const { code, out, err } = await runCollecting(client, [String(port), String(concurrency), String(seconds)]);
  const m = /done=(\d+) rate=(\d+)/.exec(out);
  if (code !== 0 || !m) throw new Error(`floor client exited with ${code}: ${err.trim().slice(0, 300)}`);
  return { done: Number(m[1]), rate: Number(m[2]) };
}

/** One floor server: start, warm up, measure, stop. */
export async function measureFloor(
  client: string,
  load: { readonly concurrency: number; readonly warmupSeconds: number; readonly seconds: number },
  holdMs: number,
): Promise<FloorRow> {
  const port = await freePort();
  const child = spawn(process.execPath, [...serverNodeFlags(), join(REPO, "dist/bench/socket-floor-server.js"), String(port), String(holdMs)], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  try {
    await waitForPort(port, child, 30_000);
    await runClient(client, port, load.concurrency, load.warmupSeconds);
    const before = threadCpu(child.pid!, () => false);
    const r = await runClient(client, port, load.concurrency, load.seconds);
    const cpu = cpuBetween(before, threadCpu(child.pid!, () => false));
    const us = (ms: number): number => (r.done > 0 ? Math.round((ms * 1000) / r.done) : 0);
    return {
      holdMs,
      concurrency: load.concurrency,
      connections: r.done,
      connectionsPerSecond: r.rate,
      cpuUsPerConnection: { total: us(cpu.total), main: us(cpu.main), others: us(cpu.others) },
      peakRssMiB: peakRssMiB(child.pid!),
    };
  } finally {
    await stopProcess(child);
  }
}

export function describeFloor(r: FloorRow): string {
  const c = r.cpuUsPerConnection;
  return (
    `socket floor (node:net, no TLS) held ${r.holdMs} ms, c=${r.concurrency}: ${r.connectionsPerSecond} connections/s, ` +
    `CPU µs/connection ${c.total} (main ${c.main}, others ${c.others}), peak RSS ${r.peakRssMiB} MiB`
  );
}
