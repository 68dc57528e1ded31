// Starting our server (bin/mandos) and the real mandos-client for black-box
// tests, tangd-style: real processes, real sockets on loopback, and the
// server's log collected for assertions. Every process is killed at the end.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MANDOS_CLIENT } from "./peers.js";
import { LogWatch } from "./log-watch.js";
import { eventually } from "./wait.js";
import { serverNodeFlags } from "../../bench/reboot.js";

export const REPO = fileURLToPath(new URL("../../../", import.meta.url));
export const BIN_MANDOS = `${REPO}bin/mandos`;
export const BIN_TS_CLIENT = `${REPO}bin/mandos-ts-client`;

export interface RunningServer {
  readonly process: ChildProcess;
  readonly port: number;
  /** Everything the server logged so far. */
  log(): string;
  /**
   * Resolves when the log from offset `from` on (server.log().length before
   * what it is about) matches `pattern`; rejects after `ms`, or when the
   * server exits first. A line such as "Sending secret" lags the peer
   * (logCount): read once when mandos-client returns, it may not be there yet.
   */
  waitForLog(pattern: RegExp, ms?: number, from?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after a grace; resolves with the exit code. */
  stop(): Promise<number | null>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/**
 * Run as root, the server drops to _mandos (or nobody) after binding, as
 * the reference does; it must then still read clients.conf (SIGHUP) and
 * write its state. Opens the test's directories to it, as an admin would
 * chown them.
 */
function shareWithServerUser(args: readonly string[], keepClientsConfPrivate: boolean): void {
  if (process.getuid?.() !== 0) return;
  const tmp = tmpdir();
  const open = (path: string, mode: number): void => {
    for (let dir = path; dir.startsWith(tmp) && dir.length > tmp.length; dir = dirname(dir)) {
      try {
        chmodSync(dir, dir === path ? mode : 0o755);
      } catch {
        // not there (yet)
      }
    }
  };
  for (let i = 0; i < args.length - 1; i++) {
    const value = args[i + 1]!;
    if (args[i] === "--configdir") {
      open(value, 0o755);
      for (const f of keepClientsConfPrivate ? ["mandos.conf"] : ["clients.conf", "mandos.conf"]) {
        try {
          chmodSync(join(value, f), 0o644);
        } catch {
          // absent
        }
      }
    }
    if (args[i] === "--statedir") open(value, 0o777);
  }
}

export interface StartOptions {
  /** Leave D-Bus on (point DBUS_SYSTEM_BUS_ADDRESS in `env` at a private bus); off by default. */
  readonly dbus?: boolean;
  /** Leave clients.conf as it is (say root:root 0600, as Debian installs it) instead of opening it to the dropped user. */
  readonly keepClientsConfPrivate?: boolean;
  /** Node flags after bin/mandos's own (its exec line; a later flag replaces an earlier one of the same name). */
  readonly nodeFlags?: readonly string[];
  /** The node binary to run it with (this test's by default). */
  readonly node?: string;
  /** A command that runs it, its arguments before node's (["prlimit", "--nofile=300:300", "--"]). */
  readonly wrap?: readonly string[];
  /** Another installation's bin/mandos (this checkout's by default). */
  readonly bin?: string;
  /** Descriptors 3, 4, ... of the server: one of the test's, or "ignore" for none. */
  readonly inherit?: readonly (number | "ignore")[];
  /** The log line to wait for instead of "Now listening" (the port is then 0 unless that line has come too). */
  readonly startedWhen?: RegExp;
}

/**
 * Starts bin/mandos in the foreground with debug logging on stderr and waits
 * until it listens. With the node flags of its exec line, as it runs installed
 * (its young-generation cap changes how much memory each thread keeps).
 */
export async function startServer(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  options: StartOptions = {},
): Promise<RunningServer> {
  shareWithServerUser(args, options.keepClientsConfPrivate === true);
  const fixed = ["--debug", "--no-zeroconf", ...(options.dbus ? [] : ["--no-dbus"])];
  const argv = [options.node ?? process.execPath, ...serverNodeFlags(), ...(options.nodeFlags ?? []), options.bin ?? BIN_MANDOS, ...fixed, ...args];
  const [command, ...rest] = [...(options.wrap ?? []), ...argv];
  const child = spawn(command!, rest, {
    stdio: ["ignore", "pipe", "pipe", ...(options.inherit ?? [])],
    env: { ...process.env, ...env },
  });
  live.add(child);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => {
    live.delete(child);
    resolve(code);
  }));
  const log = new LogWatch(exited);
  const onText = (chunk: Buffer): void => log.add(chunk.toString("utf8"));
  child.stdout?.on("data", onText);
  child.stderr?.on("data", onText);
  const waitForLog = (pattern: RegExp, ms = 20_000, from = 0): Promise<string> => log.wait(pattern, from, ms);

  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    }
    return child.exitCode;
  };

  const listening = /Now listening on address .*?, port (\d+)/;
  try {
    await waitForLog(options.startedWhen ?? listening);
  } catch (error) {
    // Not started in time (a loaded machine): stopped here, as no caller
    // holds it to stop; left running, it kept the test file from ending.
    await stop();
    throw error;
  }
  const port = Number(listening.exec(log.text)?.[1] ?? 0);
  return {
    process: child,
    port,
    log: () => log.text,
    waitForLog,
    stop,
  };
}

export interface ProcessResult {
  readonly code: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** After SIGTERM at a run's deadline, this long to clean up before SIGKILL. */
const TERM_GRACE_MS = 5_000;

/**
 * Runs a command to completion, collecting its output. Past `ms` it is
 * sent SIGTERM, and SIGKILL if still there TERM_GRACE_MS later: the real
 * mandos-client, stopped so in a test that expects it unserved, removes
 * its /tmp/mandosXXXXXX GnuPG home and ends its agent; killed outright it
 * left both behind.
 */
export function run(command: string, args: readonly string[], ms = 60_000, env: NodeJS.ProcessEnv = {}, cwd?: string): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env }, ...(cwd ? { cwd } : {}) });
    live.add(child);
    const out: Buffer[] = [];
    let err = "";
    child.stdout?.on("data", (d: Buffer) => out.push(d));
    child.stderr?.on("data", (d: Buffer) => (err += d.toString("utf8")));
    let kill: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      kill = setTimeout(() => child.kill("SIGKILL"), TERM_GRACE_MS);
    }, ms);
    child.on("close", (code) => {
      clearTimeout(timer);
      clearTimeout(kill);
      live.delete(child);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/**
 * The listen(2) backlog of the socket listening on TCP `port`, as the
 * kernel holds it (ss(8) shows it as a listening socket's Send-Q); null if
 * nothing listens there.
 */
export async function listenBacklog(port: number): Promise<number | null> {
  const r = await run("ss", ["-Hltn", `sport = :${port}`]);
  assert.equal(r.code, 0, r.stderr);
  // State Recv-Q Send-Q Local-Address:Port Peer-Address:Port
  const fields = r.stdout.toString("utf8").trim().split("\n")[0]?.trim().split(/\s+/) ?? [];
  return fields.length >= 3 ? Number(fields[2]) : null;
}

/** The real mandos-client, --connect mode, with a key set in `dir`; `extra` options after ours (`--priority=…`). */
export function runMandosClient(dir: string, host: string, port: number, ms = 60_000, extra: readonly string[] = []): Promise<ProcessResult> {
  const connect = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return run(
    MANDOS_CLIENT,
    [
      `--connect=${connect}`,
      "--interface=none",
      `--pubkey=${dir}/pubkey.txt`,
      `--seckey=${dir}/seckey.txt`,
      `--tls-privkey=${dir}/tls-privkey.pem`,
      `--tls-pubkey=${dir}/tls-pubkey.pem`,
      ...extra,
    ],
    ms,
  );
}

/** Sends SIGHUP and resolves when the server has logged `outcome` after it (the outcome of that reload). */
export async function hangUp(server: RunningServer, outcome: RegExp, timeoutMs = 30_000): Promise<void> {
  const before = server.log().length;
  server.process.kill("SIGHUP");
  await server.waitForLog(outcome, timeoutMs, before);
}

/**
 * How many times `pattern` has matched the server's log, once it has matched
 * `expected` times or `timeoutMs` has passed. The log lags the peer: the
 * server writes "Sending secret" once the kernel has taken the secret, so a
 * client may have it, and the test know it, before the line reaches us.
 */
export async function logCount(server: RunningServer, pattern: RegExp, expected: number, timeoutMs = 10_000): Promise<number> {
  const count = (): number => server.log().match(new RegExp(pattern.source, `${pattern.flags.replace("g", "")}g`))?.length ?? 0;
  // Short of the count at the deadline: the caller's assertion says by how much.
  await eventually(() => count() >= expected, { what: `${expected} × ${pattern}`, timeoutMs }).catch(() => undefined);
  return count();
}
