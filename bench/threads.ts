// Per-thread CPU time of a server process under load, from /proc: the
// process's utime+stime (/proc/PID/stat, which keeps the time of threads
// that have exited) and each live thread's (/proc/PID/task/TID/stat),
// grouped as the main thread, the worker threads, and the rest (V8's
// platform threads for GC and compilation, libuv's pool, exited threads).
//
// Node 20 names none of its threads, so which are workers is learnt from
// inside: `threadRolePreload` writes a CommonJS file that node loads with
// `--require` in the main thread and in every worker thread (`--import`
// does not reach workers in Node 20); each thread appends its own TID,
// read from /proc/thread-self, to a roles file. A native server's roles
// are known from its design: its main thread is the process's, every other
// thread is a worker.

import { chmodSync, readFileSync, readdirSync, writeFileSync } from "node:fs";

/** Kernel clock ticks per second (USER_HZ); 100 on every Linux architecture Node supports. */
const CLK_TCK = 100;

/** CPU milliseconds (user + system). */
export interface ThreadCpu {
  readonly main: number;
  readonly workers: number;
  /** The process's total minus main and workers. */
  readonly others: number;
  readonly total: number;
}

/** A /proc stat line's fields after "(comm)": index 0 is field 3 (state). */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** utime + stime (fields 14 and 15). */
function ticksOf(stat: string): number {
  const fields = statFields(stat);
  return Number(fields[11]) + Number(fields[12]);
}

/** cutime + cstime (fields 16 and 17): the children it has reaped. */
function reapedTicksOf(stat: string): number {
  const fields = statFields(stat);
  return Number(fields[13]) + Number(fields[14]);
}

/**
 * Writes the preload to `file`; every thread of a node started with
 * `--require file` appends "TID main|worker" to `rolesFile`.
 */
export function threadRolePreload(file: string, rolesFile: string): void {
  // Readable and writable by all: run as root, the server drops to _mandos before it starts its workers.
  writeFileSync(rolesFile, "", { mode: 0o666 });
  chmodSync(rolesFile, 0o666);
  writeFileSync(
    file,
    [
      '"use strict";',
      'const { appendFileSync, readlinkSync } = require("node:fs");',
      'const { isMainThread } = require("node:worker_threads");',
      'const tid = readlinkSync("/proc/thread-self").split("/").pop();',
      `appendFileSync(${JSON.stringify(rolesFile)}, tid + (isMainThread ? " main" : " worker") + "\\n");`,
      "",
    ].join("\n"),
    { mode: 0o644 },
  );
}

/** The worker TIDs a roles file names. */
export function workerThreadIds(rolesFile: string): Set<number> {
  const ids = new Set<number>();
  let text: string;
  try {
    text = readFileSync(rolesFile, "utf8");
  } catch {
    return ids;
  }
  for (const line of text.split("\n")) {
    const [tid, role] = line.split(" ");
    if (role === "worker") ids.add(Number(tid));
  }
  return ids;
}

/**
 * The process's CPU time by thread role; `isWorker` says which TIDs are
 * workers (the main thread is the one whose TID is the PID).
 */
export function threadCpu(pid: number, isWorker: (tid: number) => boolean): ThreadCpu {
  const total = ticksOf(readFileSync(`/proc/${pid}/stat`, "utf8"));
  let main = 0;
  let workers = 0;
  for (const name of readdirSync(`/proc/${pid}/task`)) {
    const tid = Number(name);
    let ticks: number;
    try {
      ticks = ticksOf(readFileSync(`/proc/${pid}/task/${name}/stat`, "utf8"));
    } catch {
      continue; // exited between the listing and the read
    }
    if (tid === pid) main = ticks;
    else if (isWorker(tid)) workers += ticks;
  }
  const ms = (ticks: number): number => (ticks * 1000) / CLK_TCK;
  return { main: ms(main), workers: ms(workers), others: ms(Math.max(0, total - main - workers)), total: ms(total) };
}

/** after − before. */
export function cpuBetween(before: ThreadCpu, after: ThreadCpu): ThreadCpu {
  // Each figure is read in whole ticks at slightly different moments: "others" can come out a tick below zero.
  return {
    main: after.main - before.main,
    workers: after.workers - before.workers,
    others: Math.max(0, after.others - before.others),
    total: after.total - before.total,
  };
}

/**
 * CPU milliseconds of `pid`'s child processes: those it has reaped
 * (cutime + cstime) and those alive now, each with its own reaped children
 * (the checker host's checkers). A child that exits between two readings
 * moves from the second sum to the first.
 */
export function childrenCpuMs(pid: number): number {
  let ticks = reapedTicksOf(readFileSync(`/proc/${pid}/stat`, "utf8"));
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    let children: string[];
    try {
      children = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    } catch {
      continue;
    }
    for (const child of children) {
      try {
        const stat = readFileSync(`/proc/${child}/stat`, "utf8");
        ticks += ticksOf(stat) + reapedTicksOf(stat);
      } catch {
        // Gone meanwhile: its time is in the parent's reaped sum at the next reading.
      }
    }
  }
  return (ticks * 1000) / CLK_TCK;
}

/** The peak resident set (VmHWM) of a process, in MiB. */
export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Math.round(Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 102.4) / 10;
}
