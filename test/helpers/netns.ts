// Two network namespaces joined by a veth pair, for tests that multicast
// (Zeroconf): nothing they send can reach this machine's real interfaces.
// Names are unique per run (pid and a counter), every process started through
// the pair is killed and both namespaces deleted on cleanup(), and cleanup()
// also runs on process exit, so a failing test leaves nothing behind.
// Also here: a private system bus and an avahi-daemon inside one namespace,
// with a private /run (so several avahi-daemons can run at once without
// fighting over /run/avahi-daemon).

import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPrivateBus } from "./private-bus.js";
import { executable } from "./peers.js";
import { processRuns } from "../../src/main/daemon/process-runs.js";

export const IP = "/usr/sbin/ip";
export const AVAHI_DAEMON = "/usr/sbin/avahi-daemon";
export const AVAHI_BROWSE = "/usr/bin/avahi-browse";
export const DBUS_DAEMON = "/usr/bin/dbus-daemon";
export const UNSHARE = "/usr/bin/unshare";

/** Namespace names start with this and the creating pid, so stale ones can be recognised. */
const NS_PREFIX = "mandos-ts-";

let counter = 0;
const live = new Set<NetnsPair>();
process.on("exit", () => {
  for (const pair of live) pair.cleanupSync();
});

/** `false` when namespaces can be made here, else the reason to skip. */
export function netnsUnavailable(...peers: string[]): string | false {
  if (process.getuid?.() !== 0) return "needs root (network namespaces)";
  const absent = [IP, UNSHARE, ...peers].filter((p) => !executable(p));
  if (absent.length > 0) return `missing ${absent.join(", ")} (npm test installs them when run as root)`;
  try {
    execFileSync(IP, ["netns", "list"], { stdio: "ignore" });
  } catch {
    return "`ip netns` does not work here";
  }
  return false;
}

/** This process's network namespace (`net:[inode]`), or "" if unknown. */
export function currentNetns(): string {
  try {
    return readlinkSync("/proc/self/ns/net");
  } catch {
    return "";
  }
}

/**
 * Environment for a process started in a test namespace: it carries the test
 * runner's own namespace, so that the process can check it is elsewhere.
 */
export function announcerEnv(): NodeJS.ProcessEnv {
  return { ...process.env, MANDOS_TS_ANNOUNCER: "1", MANDOS_TS_PARENT_NETNS: currentNetns() };
}

/** Is this process still in the namespace that started the tests (or can't it tell)? */
export function inParentNetns(): boolean {
  const here = currentNetns();
  const parent = process.env.MANDOS_TS_PARENT_NETNS ?? "";
  return here === "" || parent === "" || here === parent;
}


/** Deletes namespaces left by test runs whose process is gone (a killed run). */
function removeStaleNamespaces(): void {
  let names: string[];
  try {
    names = readdirSync("/run/netns");
  } catch {
    return;
  }
  for (const name of names) {
    const match = new RegExp(`^${NS_PREFIX}(\\d+)-`).exec(name);
    if (match && !processRuns(Number(match[1]))) {
      try { execFileSync(IP, ["netns", "del", name], { stdio: "ignore" }); } catch { /* already gone */ }
    }
  }
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Side {
  /** Namespace name. */
  readonly ns: string;
  /** This side's end of the veth pair. */
  readonly link: string;
  /** Its IPv4 address (169.254/16); tests of IPv6 alone delete it. */
  readonly address: string;
}

export class NetnsPair {
  readonly server: Side;
  readonly client: Side;
  readonly #children = new Set<ChildProcess>();
  readonly #dirs: string[] = [];
  /** Things started outside the namespaces (the bus), stopped on cleanup. */
  readonly #stops: (() => Promise<void>)[] = [];
  #cleaned = false;

  private constructor(server: Side, client: Side) {
    this.server = server;
    this.client = client;
  }

  static create(): NetnsPair {
    removeStaleNamespaces();
    const n = counter++;
    const tag = `${process.pid.toString(36)}${n.toString(36)}`;
    const server: Side = { ns: `${NS_PREFIX}${process.pid}-${n}-srv`, link: `mzs${tag}`.slice(0, 15), address: "169.254.77.1" };
    const client: Side = { ns: `${NS_PREFIX}${process.pid}-${n}-cli`, link: `mzc${tag}`.slice(0, 15), address: "169.254.77.2" };
    const pair = new NetnsPair(server, client);
    live.add(pair);
    try {
      const ip = (...args: string[]): void => { execFileSync(IP, args, { stdio: ["ignore", "ignore", "pipe"] }); };
      ip("netns", "add", server.ns);
      ip("netns", "add", client.ns);
      ip("link", "add", server.link, "netns", server.ns, "type", "veth", "peer", "name", client.link, "netns", client.ns);
      for (const side of [server, client]) {
        ip("-n", side.ns, "link", "set", "lo", "up");
        ip("-n", side.ns, "addr", "add", `${side.address}/16`, "dev", side.link);
        ip("-n", side.ns, "link", "set", side.link, "up");
      }
    } catch (error) {
      pair.cleanupSync();
      throw error;
    }
    return pair;
  }

  /**
   * A second veth pair between the namespaces (a multi-homed server), with
   * IPv4 addresses 192.168.254.1 and .2/24 on it; returns the two links.
   */
  addLink(): { server: string; client: string } {
    const server = `${this.server.link}b`.slice(-15);
    const client = `${this.client.link}b`.slice(-15);
    const ip = (...args: string[]): void => { execFileSync(IP, args, { stdio: ["ignore", "ignore", "pipe"] }); };
    ip("link", "add", server, "netns", this.server.ns, "type", "veth", "peer", "name", client, "netns", this.client.ns);
    for (const [ns, link, address] of [[this.server.ns, server, "192.168.254.1"], [this.client.ns, client, "192.168.254.2"]] as const) {
      ip("-n", ns, "addr", "add", `${address}/24`, "dev", link);
      ip("-n", ns, "link", "set", link, "up");
    }
    return { server, client };
  }

  /** Runs `ip -n NS ARGS...` on `side`'s namespace (addresses, links). */
  ip(side: Side, ...args: string[]): void {
    execFileSync(IP, ["-n", side.ns, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  }

  /**
   * Waits until `side`'s link has an fe80:: address past duplicate address
   * detection (not "tentative"), so that it can send and receive; returns it.
   */
  async waitForLinkLocal(side: Side, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const out = execFileSync(IP, ["-n", side.ns, "-6", "-o", "addr", "show", "dev", side.link, "scope", "link"], { encoding: "utf8" });
      const line = out.split("\n").find((l) => / fe80:/.test(l) && !/tentative/.test(l));
      const address = line ? / (fe80:[0-9a-f:]+)\//.exec(line)?.[1] : undefined;
      if (address) return address;
      if (Date.now() > deadline) throw new Error(`no usable link-local address on ${side.link} after ${timeoutMs} ms:\n${out}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** A scratch directory removed on cleanup. */
  tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "mandos-ts-netns-"));
    this.#dirs.push(dir);
    return dir;
  }

  /** Starts `command` inside `side`'s namespace; it is killed on cleanup. */
  spawn(side: Side, command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    if (this.#cleaned) throw new Error("namespace pair already cleaned up");
    const child = spawn(IP, ["netns", "exec", side.ns, command, ...args], { stdio: ["ignore", "pipe", "pipe"], ...options });
    this.#children.add(child);
    child.once("exit", () => this.#children.delete(child));
    return child;
  }

  /** Runs `command` inside `side`'s namespace to its end (killed after `timeoutMs`). */
  run(side: Side, command: string, args: readonly string[], timeoutMs = 20_000, options: SpawnOptions = {}): Promise<RunResult> {
    const child = this.spawn(side, command, args, options);
    return collect(child, timeoutMs);
  }

  /** Waits for a line of `child`'s stdout that `match` accepts; rejects on exit or after `timeoutMs`. */
  waitForLine(child: ChildProcess, match: (line: string) => boolean, timeoutMs = 20_000): Promise<string> {
    return waitForLine(child, match, timeoutMs);
  }

  /** A private system bus (dbus-daemon) for avahi and its clients; returns its address. */
  async startSystemBus(): Promise<string> {
    // A unix socket is reachable from any network namespace.
    const bus = await startPrivateBus();
    this.#stops.push(() => bus.stop());
    return bus.address;
  }

  /**
   * avahi-daemon in `side`'s namespace on its veth end only, on the bus at
   * `busAddress`, with a private /run, calling itself `hostName` (default:
   * the machine's name); resolves once it is up.
   */
  async startAvahi(side: Side, busAddress: string, hostName?: string): Promise<ChildProcess> {
    const dir = this.tempDir();
    const config = join(dir, "avahi-daemon.conf");
    writeFileSync(config, `[server]
${hostName === undefined ? "" : `host-name=${hostName}\n`}use-ipv4=yes
use-ipv6=yes
allow-interfaces=${side.link}
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
`);
    const child = this.spawn(side, UNSHARE, [
      "--mount", "--propagation", "private", "sh", "-c",
      `mount -t tmpfs mandos-ts-run /run && exec ${AVAHI_DAEMON} --no-drop-root --no-chroot --no-rlimits -f ${config}`,
    ], { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: busAddress } });
    // avahi-daemon logs to stderr when not daemonised.
    await waitForLine(child, (line) => line.startsWith("Server startup complete"), 15_000, "stderr");
    return child;
  }

  async cleanup(): Promise<void> {
    const exits = [...this.#children].map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), 3_000).unref();
    }));
    await Promise.all(exits);
    await Promise.all(this.#stops.splice(0).map((stop) => stop().catch(() => {})));
    this.cleanupSync();
  }

  /** Kills what is left at once and deletes the namespaces (also the process-exit path). */
  cleanupSync(): void {
    if (this.#cleaned) return;
    this.#cleaned = true;
    live.delete(this);
    for (const child of this.#children) child.kill("SIGKILL");
    for (const side of [this.server, this.client]) {
      try { execFileSync(IP, ["netns", "del", side.ns], { stdio: "ignore" }); } catch { /* not made, or gone */ }
    }
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
  }
}

export function collect(child: ChildProcess, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => { stdout += chunk; });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => { stderr += chunk; });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function waitForLine(
  child: ChildProcess,
  match: (line: string) => boolean,
  timeoutMs: number,
  streamName: "stdout" | "stderr" = "stdout",
): Promise<string> {
  const stream = child[streamName];
  if (!stream) return Promise.reject(new Error(`no ${streamName} to read`));
  return new Promise((resolve, reject) => {
    let buffered = "";
    let seen = "";
    const finish = (error: Error | undefined, line?: string): void => {
      clearTimeout(timer);
      stream.off("data", onData);
      child.off("exit", onExit);
      if (error) reject(error);
      else resolve(line!);
    };
    const onData = (chunk: Buffer | string): void => {
      buffered += chunk.toString();
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        seen += line + "\n";
        if (match(line)) return finish(undefined, line);
      }
    };
    const onExit = (code: number | null, signal: string | null): void => {
      finish(new Error(`process exited (${code ?? signal}) before the expected line; ${streamName} was:\n${seen}${buffered}`));
    };
    const timer = setTimeout(() => finish(new Error(`timed out waiting for a line; ${streamName} so far:\n${seen}${buffered}`)), timeoutMs);
    stream.on("data", onData);
    child.once("exit", onExit);
  });
}
