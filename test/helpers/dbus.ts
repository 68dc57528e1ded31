// Helpers for the D-Bus tests: a private system bus (./private-bus.ts),
// the real mandos-ctl run against it, the Python reference server started
// on it, and a wait until a bus name has an owner. Every process started
// here is killed by its stop(), or at exit at the latest.

import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPrivateBus as startBareBus, type PrivateBus } from "./private-bus.js";
import { eventually, freePort } from "./wait.js";
import { makeClients, makeKeySet, type TestClient } from "./keys.js";
import { MANDOS_CTL, MANDOS_REFERENCE } from "./peers.js";
import { run, startServer, type ProcessResult, type RunningServer } from "./server.js";

export type { PrivateBus };

export const DBUS_DAEMON = "/usr/bin/dbus-daemon";
export const DBUS_SEND = "/usr/bin/dbus-send";
export const MANDOS_MONITOR = "/usr/sbin/mandos-monitor";
export const TMUX = "/usr/bin/tmux";
export const BUS_NAME = "se.recompile.Mandos";

export interface CtlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the real mandos-ctl against the bus at `address`. */
export async function mandosCtl(address: string, ...args: string[]): Promise<CtlResult> {
  const r: ProcessResult = await run(MANDOS_CTL, args, 20_000, { DBUS_SYSTEM_BUS_ADDRESS: address });
  return { code: r.code, stdout: r.stdout.toString("utf8"), stderr: r.stderr };
}

/** `mandos-ctl --dump-json`, parsed: client name → property name → value. */
export async function dumpJson(address: string, ...clients: string[]): Promise<Record<string, Record<string, unknown>>> {
  const r = await mandosCtl(address, "--dump-json", ...clients);
  if (r.code !== 0) throw new Error(`mandos-ctl --dump-json exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, Record<string, unknown>>;
}

/**
 * Waits until `client`'s properties, as `mandos-ctl --dump-json` on the bus
 * at `address` shows them, satisfy `pred`; fails naming `what`, with the
 * last properties seen.
 */
export async function propertiesSeen(
  address: string, client: string, pred: (p: Record<string, unknown>) => boolean, what: string, timeoutMs = 15_000,
): Promise<void> {
  let last: Record<string, unknown> = {};
  await eventually(async () => {
    last = (await dumpJson(address, client))[client] ?? {};
    return pred(last);
  }, { what, timeoutMs, context: () => JSON.stringify(last) });
}

/** mandos-ctl's column headers (its TableOfClients.tableheaders), in table order. */
export const TABLE_HEADERS = [
  "Name", "Enabled", "Timeout", "Last Successful Check", "Created", "Interval", "Host", "Key ID", "Fingerprint",
  "Check Is Running", "Last Enabled", "Approval Is Pending", "Approved By Default", "Last Approval Request",
  "Approval Delay", "Approval Duration", "Checker", "Extended Timeout", "Expires", "Last Checker Status",
] as const;

/**
 * A mandos-ctl table (default or --verbose) as rows of column header →
 * cell, keyed by the Name column. mandos-ctl pads every column to its
 * widest cell or header, so each column starts where its header starts.
 */
export function parseTable(text: string): Map<string, Record<string, string>> {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const header = lines[0] ?? "";
  const starts: { name: string; at: number }[] = [];
  let from = 0;
  for (const name of TABLE_HEADERS) {
    const at = header.indexOf(name, from);
    if (at < 0) continue;
    starts.push({ name, at });
    from = at + name.length;
  }
  const rows = new Map<string, Record<string, string>>();
  for (const line of lines.slice(1)) {
    const row: Record<string, string> = {};
    starts.forEach(({ name, at }, i) => (row[name] = line.slice(at, starts[i + 1]?.at ?? line.length).trim()));
    rows.set(row.Name ?? "", row);
  }
  return rows;
}

/** Resolves when `name` has an owner on the bus (polling NameHasOwner), else rejects after `ms`. */
export async function waitForBusName(address: string, name = BUS_NAME, ms = 30_000): Promise<void> {
  await eventually(async () => {
    const r = await run(
      DBUS_SEND,
      ["--system", "--print-reply", "--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.NameHasOwner", `string:${name}`],
      5_000,
      { DBUS_SYSTEM_BUS_ADDRESS: address },
    );
    return /boolean true/.test(r.stdout.toString("utf8"));
  }, { what: `an owner of ${name} on the bus`, timeoutMs: ms });
}

/** Runs dbus-send --system --print-reply against the bus, collecting its output as text. */
export async function dbusSend(address: string, ...args: string[]): Promise<CtlResult> {
  const r = await run(DBUS_SEND, ["--system", "--print-reply", ...args], 10_000, { DBUS_SYSTEM_BUS_ADDRESS: address });
  return { code: r.code, stdout: r.stdout.toString("utf8"), stderr: r.stderr };
}

export interface ReferenceServer {
  readonly port: number;
  log(): string;
  /** Resolves with the first match of `pattern` in the log (or rejects after `ms`). */
  waitForLog(pattern: RegExp, ms?: number): Promise<string>;
  stop(): Promise<void>;
}

const groups = new Set<number>();
process.on("exit", () => {
  for (const pid of groups) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

const buses = new Set<number>();
process.on("exit", () => {
  for (const pid of buses) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

/**
 * ./private-bus.ts's private system bus, whose dbus-daemon is also
 * killed at exit should the test process end before the test's stop()
 * (its pid asked of the bus itself, as bench/ does not expose it).
 */
export async function startPrivateBus(): Promise<PrivateBus> {
  const bus = await startBareBus();
  const daemonPid = async (): Promise<number> => {
    const r = await run(
      DBUS_SEND,
      ["--system", "--print-reply", "--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.GetConnectionUnixProcessID", "string:org.freedesktop.DBus"],
      5_000,
      { DBUS_SYSTEM_BUS_ADDRESS: bus.address },
    );
    const pid = Number(/uint32 (\d+)/.exec(r.stdout.toString("utf8"))?.[1] ?? 0);
    if (pid > 0) buses.add(pid);
    return pid;
  };
  let pid = await daemonPid();
  return {
    address: bus.address,
    async restart() {
      await bus.restart();
      buses.delete(pid);
      pid = await daemonPid();
    },
    pause: () => bus.pause(),
    resume: () => bus.resume(),
    async stop() {
      await bus.stop();
      buses.delete(pid);
    },
  };
}

/**
 * Makes the configuration and state directories usable by _mandos, to
 * which both servers drop when run as root.
 */
export function openToServerUser(conf: string, state: string): void {
  if (process.getuid?.() !== 0) return;
  chmodSync(conf, 0o755);
  for (const f of ["clients.conf", "mandos.conf"]) {
    try {
      chmodSync(join(conf, f), 0o644);
    } catch {
      // absent
    }
  }
  chmodSync(state, 0o777);
}

export { freePort };

/**
 * What the reference needs to save its state reliably from a test:
 * - its PGPEngine keeps a gpg home in TMPDIR, and other test runs clean
 *   /tmp/mandos-* up: a private TMPDIR;
 * - gpg 2 starts an agent in that home, and when PGPEngine deletes the
 *   home's files the agent removes its other sockets under it, and the
 *   reference fails on the vanished file and saves nothing: a gpg (found
 *   through a gpgconf, as PGPEngine looks it up) that stops its agent
 *   before returning.
 */
export function referenceGpgEnvironment(root: string): { TMPDIR: string; PATH: string } {
  const tmp = join(root, "tmp");
  mkdirSync(tmp);
  chmodSync(tmp, 0o1777);
  const bin = join(root, "gpg-bin");
  mkdirSync(bin);
  chmodSync(bin, 0o755);
  writeFileSync(join(bin, "gpg"), [
    "#!/bin/sh",
    'home=""; prev=""',
    'for a in "$@"; do [ "$prev" = "--homedir" ] && home="$a"; prev="$a"; done',
    '/usr/bin/gpg "$@"; rc=$?',
    'if [ -n "$home" ]; then',
    '  /usr/bin/gpgconf --homedir "$home" --kill gpg-agent >/dev/null 2>&1',
    '  n=0; while [ -e "$home/S.gpg-agent" ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done',
    "fi",
    "exit $rc",
    "",
  ].join("\n"), { mode: 0o755 });
  writeFileSync(join(bin, "gpgconf"), `#!/bin/sh\necho "gpg:OpenPGP:${bin}/gpg"\n`, { mode: 0o755 });
  return { TMPDIR: tmp, PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}` };
}

export interface ReferenceOptions {
  /** Descriptors 3, 4, ... of the server: one of the test's, or "ignore" for none. */
  readonly inherit?: readonly (number | "ignore")[];
  /** Serve on this inherited listening socket (--socket FD) instead of binding ::1. */
  readonly socket?: number;
}

/**
 * Starts the Python reference server in the foreground on the private bus
 * at `address`, in its own process group (it forks helpers), and waits
 * until it listens and owns its bus name.
 */
export async function startReference(conf: string, state: string, address: string, restore = false, options: ReferenceOptions = {}): Promise<ReferenceServer> {
  openToServerUser(conf, state);
  // The reference drops to _mandos, which must reach its TMPDIR in here.
  const gpgRoot = mkdtempSync(join(tmpdir(), "mandos-ts-ref-"));
  chmodSync(gpgRoot, 0o755);
  const listen = options.socket === undefined ? ["--address", "::1", "--port", String(await freePort())] : ["--socket", String(options.socket)];
  const child: ChildProcess = spawn(
    MANDOS_REFERENCE,
    ["--foreground", "--debug", "--no-zeroconf", ...listen, "--configdir", conf, "--statedir", state, ...(restore ? [] : ["--no-restore"])],
    {
      stdio: ["ignore", "pipe", "pipe", ...(options.inherit ?? [])],
      detached: true,
      env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: address, ...referenceGpgEnvironment(gpgRoot) },
    },
  );
  const pid = child.pid!;
  groups.add(pid);
  let text = "";
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      text += d.toString("utf8");
      const m = /Now listening on address .*?, port (\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    const timer = setTimeout(() => reject(new Error(`the reference server did not listen within 60 s; log:\n${text}`)), 60_000);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the reference server exited; log:\n${text}`));
    });
    child.stdout?.once("data", () => undefined);
  });
  const stop = async (): Promise<void> => {
    const signal = (s: NodeJS.Signals): void => {
      try {
        process.kill(-pid, s);
      } catch {
        // gone
      }
    };
    if (child.exitCode === null && child.signalCode === null) {
      // The server alone: it saves its state on SIGTERM, and a signal to
      // its helpers as well could cut that short. They go after it.
      // It seals each client's secret with a gpg process of its own as it
      // stops: 15-20 s for 8 clients on a loaded machine (session 60's
      // audit), past which a kill would leave no clients.pickle to restore.
      child.kill("SIGTERM");
      const t = setTimeout(() => signal("SIGKILL"), 90_000);
      await exited;
      clearTimeout(t);
    }
    signal("SIGKILL");
    groups.delete(pid);
    rmSync(gpgRoot, { recursive: true, force: true });
  };
  try {
    await waitForBusName(address);
  } catch (e) {
    await stop();
    throw e;
  }
  const waitForLog = (pattern: RegExp, ms = 20_000): Promise<string> =>
    eventually(() => {
      if (child.exitCode !== null) throw new Error(`the reference exited before its log matched ${pattern}; log:\n${text}`);
      return pattern.exec(text)?.[0];
    }, { what: `the reference's log matching ${pattern}`, timeoutMs: ms, context: () => `log:\n${text}` });
  return { port, log: () => text, waitForLog, stop };
}

export interface Fleet {
  readonly conf: string;
  readonly clients: TestClient[];
}

/**
 * The fixed configuration the D-Bus tests serve: four clients with
 * different settings. `alpha` plain; `bravo` disabled; `charlie` waits for
 * approval (denied by default) with a custom checker, host and durations;
 * `delta` approved by default after a delay.
 *
 * Both servers start each client's first checker at a random moment within
 * its interval. `quietCheckers` makes the intervals 10 and 11 days, so that
 * no checker runs during a test that compares two servers' views.
 */
export function writeFleet(root: string, checkerDir: string, quietCheckers = false): Fleet {
  makeKeySet(join(root, "pgp"));
  const clients = makeClients(root, join(root, "pgp"), 4, "c");
  const [a, b, c, d] = clients as [TestClient, TestClient, TestClient, TestClient];
  const rename = (t: TestClient, name: string): TestClient => ({ ...t, name, section: t.section.replace(`[${t.name}]`, `[${name}]`) });
  const alpha = rename(a, "alpha");
  const bravo = rename(b, "bravo");
  const charlie = rename(c, "charlie");
  const delta = rename(d, "delta");
  const conf = join(root, "conf");
  mkdirSync(conf, { recursive: true });
  writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
  writeFileSync(
    join(conf, "clients.conf"),
    [
      "[DEFAULT]",
      "timeout = PT5M",
      `interval = ${quietCheckers ? "PT240H" : "PT2M"}`,
      "checker = true",
      "approval_delay = PT0S",
      "approval_duration = PT1S",
      "approved_by_default = True",
      "",
      alpha.section,
      "",
      bravo.section,
      "enabled = False",
      "",
      charlie.section.replace(/^host\s*=.*$/m, "host = charlie.example.org"),
      `checker = touch ${checkerDir}/ran-%%(host)s`,
      "timeout = PT1H",
      "extended_timeout = PT2H",
      `interval = ${quietCheckers ? "PT264H" : "PT10M"}`,
      "approval_delay = PT30S",
      "approval_duration = PT2S",
      "approved_by_default = False",
      "",
      delta.section,
      "approval_delay = PT3S",
      "approved_by_default = True",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  return { conf, clients: [alpha, bravo, charlie, delta] };
}

/**
 * An introspection XML document as a sorted list of facts, one a line
 * ("interface I / method M / arg 0 in s name", "... / annotation K=V",
 * "node child"): equal lists mean equal interfaces, whatever the order of
 * elements, the whitespace or the XML prologue.
 */
export function introspectionFacts(text: string): string[] {
  const xml = text.slice(text.indexOf("<node"), text.lastIndexOf("</node>") + "</node>".length);
  const facts: string[] = [];
  const stack: string[] = [];
  const argCount: number[] = [];
  for (const m of xml.matchAll(/<(\/?)(\w+)((?:\s+\w+="[^"]*")*)\s*(\/?)>/g)) {
    const [, closing, tag, rawAttrs, selfClosing] = m as unknown as [string, string, string, string, string];
    if (closing) {
      stack.pop();
      argCount.pop();
      continue;
    }
    const attrs = Object.fromEntries([...rawAttrs.matchAll(/(\w+)="([^"]*)"/g)].map((a) => [a[1], a[2]]));
    let fact: string;
    if (tag === "node") fact = stack.length === 0 ? "node" : `node ${attrs.name ?? ""}`;
    else if (tag === "arg") {
      const i = argCount[argCount.length - 1] ?? 0;
      argCount[argCount.length - 1] = i + 1;
      fact = `arg ${i} ${attrs.direction ?? ""} ${attrs.type ?? ""} ${attrs.name ?? ""}`.replace(/\s+/g, " ");
    } else if (tag === "annotation") fact = `annotation ${attrs.name ?? ""}=${attrs.value ?? ""}`;
    else if (tag === "property") fact = `property ${attrs.name ?? ""} ${attrs.type ?? ""} ${attrs.access ?? ""}`;
    else fact = `${tag} ${attrs.name ?? ""}`;
    const path = [...stack.slice(1), fact].join(" / ");
    facts.push(path);
    if (!selfClosing) {
      stack.push(fact);
      argCount.push(0);
    }
  }
  return facts.sort();
}

export interface FleetRoot {
  readonly root: string;
  /** Where the fleet's checkers leave their marks (writable by _mandos). */
  readonly checkerDir: string;
  readonly fleet: Fleet;
}

/** A temporary directory holding the fleet (writeFleet) and a checker directory; remove `root` when done. */
export function makeFleetRoot(prefix: string, quietCheckers = false): FleetRoot {
  const root = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(root, 0o755);
  const checkerDir = join(root, "checkers");
  mkdirSync(checkerDir);
  chmodSync(checkerDir, 0o777);
  return { root, checkerDir, fleet: writeFleet(root, checkerDir, quietCheckers) };
}

/** Our server (bin/mandos) on the bus at `address`, with D-Bus on, serving `conf`; resolves once it owns its bus name. */
export async function startOurServer(conf: string, state: string, address: string, restore = false): Promise<RunningServer> {
  mkdirSync(state, { recursive: true });
  const server = await startServer(
    ["--configdir", conf, "--statedir", state, ...(restore ? [] : ["--no-restore"]), "--port", "0", "--address", "::1"],
    { DBUS_SYSTEM_BUS_ADDRESS: address },
    { dbus: true },
  );
  try {
    await waitForBusName(address);
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}

export const DBUS_MONITOR = "/usr/bin/dbus-monitor";

/** dbus-monitor on a bus, the signals it saw condensed one a line, in the bus's order. */
export interface SignalRecorder {
  /**
   * Sends a marker signal and waits until dbus-monitor has seen it; then
   * every signal a server sent before the marker has been seen too (the bus
   * routes messages in order, and a server sends its signals before its
   * reply). Resolves with the signals since the previous mark.
   */
  mark(label: string): Promise<string[]>;
  stop(): void;
}

const MARK_PATH = "/se/recompile/MandosTsTest";

/**
 * One signal as dbus-monitor prints it, in a line: "PATH INTERFACE.MEMBER
 * ARGS", timestamps as <timestamp>. InterfacesAdded and InterfacesRemoved
 * keep only their object path: the dictionaries' order is each server's own.
 */
function condenseSignal(block: string): string | null {
  const header = /^signal .*?path=([^;]+); interface=([^;]+); member=(\S+)/.exec(block);
  if (!header) return null;
  const [, path, iface, member] = header as unknown as [string, string, string, string];
  if (iface === "org.freedesktop.DBus") return null;
  const args = block.split("\n").slice(1).map((l) => l.trim()).filter((l) => l !== "");
  const shown = member === "InterfacesAdded" || member === "InterfacesRemoved" ? args.slice(0, 1) : args;
  return `${path} ${iface}.${member} ${shown.join(" ")}`.trim().replace(/"\d{4}-\d\d-\d\dT[\d:.]+"/g, '"<timestamp>"');
}

/** Starts dbus-monitor on the bus at `address`, and resolves once it sees the bus's signals. */
export async function recordSignals(address: string): Promise<SignalRecorder> {
  const env = { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: address };
  const monitor = spawn(DBUS_MONITOR, ["--system", "type='signal'"], { stdio: ["ignore", "pipe", "ignore"], env });
  // Killed at exit with the buses, should the test end before stop().
  buses.add(monitor.pid ?? 0);
  let text = "";
  monitor.stdout?.on("data", (d: Buffer) => (text += d.toString("utf8")));
  let taken = 0;
  let marks = 0;
  const signalsSoFar = (): string[] =>
    text.split(/\n(?=signal )/).map(condenseSignal).filter((l): l is string => l !== null);
  const mark = async (label: string): Promise<string[]> => {
    const marker = `${MARK_PATH} se.recompile.MandosTsTest.Mark string "${label} ${++marks}"`;
    const send = (): Promise<unknown> =>
      run(DBUS_SEND, ["--system", "--type=signal", MARK_PATH, "se.recompile.MandosTsTest.Mark", `string:${label} ${marks}`], 5_000, { DBUS_SYSTEM_BUS_ADDRESS: address });
    await send();
    let sent = Date.now();
    let all: string[] = [];
    await eventually(async () => {
      all = signalsSoFar();
      if (all.includes(marker)) return true;
      // A dbus-monitor not yet listening missed it: again (a repeat is dropped below).
      if (Date.now() - sent > 1_000) {
        await send();
        sent = Date.now();
      }
      return false;
    }, { what: `dbus-monitor seeing the marker "${label}"`, timeoutMs: 15_000, context: () => text.slice(-2_000) });
    const at = all.indexOf(marker);
    const since = all.slice(taken, at).filter((l) => !l.startsWith(MARK_PATH));
    taken = at + 1;
    return since;
  };
  await mark("ready");
  return {
    mark,
    stop() {
      monitor.kill("SIGTERM");
      buses.delete(monitor.pid ?? 0);
    },
  };
}
