// The pieces of a host that runs its own avahi-daemon, inside a test's
// network namespace (test/helpers/netns.ts): avahi-daemon under a chosen host
// name on the namespace's own system bus (to be stopped and started again),
// a Mandos server (ours or the reference) on that bus, and avahi-browse on
// the other side. Nothing here multicasts outside the test's namespaces.

import type { ChildProcess } from "node:child_process";
import { chmodSync, cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseBrowseLine, type BrowsedService } from "./avahi-browse.js";
import { AVAHI_BROWSE, AVAHI_DAEMON, UNSHARE, waitForLine, type NetnsPair, type Side } from "./netns.js";
import { MANDOS_REFERENCE } from "./peers.js";
import { BIN_MANDOS, REPO } from "./server.js";

/**
 * avahi-daemon in `side`'s namespace on its veth end only, on the bus at
 * `bus`, calling itself `hostName`, with a private /run; resolves once it
 * is up.
 */
export async function startHostAvahi(pair: NetnsPair, side: Side, bus: string, hostName: string): Promise<ChildProcess> {
  const config = join(pair.tempDir(), "avahi-daemon.conf");
  writeFileSync(config, `[server]
host-name=${hostName}
use-ipv4=yes
use-ipv6=yes
allow-interfaces=${side.link}
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
`);
  const child = pair.spawn(side, UNSHARE, [
    "--mount", "--propagation", "private", "sh", "-c",
    `mount -t tmpfs mandos-ts-run /run && exec ${AVAHI_DAEMON} --no-drop-root --no-chroot --no-rlimits -f ${config}`,
  ], { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus } });
  await waitForLine(child, (line) => line.startsWith("Server startup complete"), 15_000, "stderr");
  return child;
}

/** Stops an avahi-daemon (SIGTERM: it withdraws what it announced) and waits for it to exit. */
export async function stopAvahi(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** `avahi-browse -rp _mandos._tcp` on `side`, kept running; what it reports, past and future. */
export class MandosBrowser {
  readonly seen: BrowsedService[] = [];
  readonly #waiters = new Set<() => void>();

  constructor(pair: NetnsPair, side: Side, bus: string) {
    // -r resolves, -p parsable; without -t it keeps reporting, goodbyes included.
    const browser = pair.spawn(side, AVAHI_BROWSE, ["-rp", "_mandos._tcp"], { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus } });
    let partial = "";
    browser.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        const service = parseBrowseLine(line);
        if (service) this.seen.push(service);
      }
      for (const check of [...this.#waiters]) check();
    });
  }

  /** The first event at index `from` or later that `match` accepts, now or when it comes. */
  next(match: (s: BrowsedService) => boolean, from = 0, ms = 30_000): Promise<BrowsedService> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.seen.slice(from).find(match);
        if (!found) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`avahi-browse did not report it within ${ms} ms; seen: ${JSON.stringify(this.seen)}`));
      }, ms);
      this.#waiters.add(check);
      check();
    });
  }
}

export interface HostServer {
  readonly child: ChildProcess;
  /** Its log (stderr) so far. */
  log(): string;
  /** Resolves with the first match in the log from offset `from` (default: now) on. */
  waitForLog(pattern: RegExp, from?: number, ms?: number): Promise<string>;
  readonly exited: Promise<number | null>;
}

/**
 * A Mandos server (bin/mandos, or the reference with `reference`) in the
 * server namespace, on the system bus `bus`, with example/'s clients, D-Bus
 * API off, logging at debug level to stderr.
 */
export function startHostServer(pair: NetnsPair, bus: string, reference = false, extra: readonly string[] = []): HostServer {
  // Readable by the user the server drops to.
  const conf = pair.tempDir();
  chmodSync(conf, 0o755);
  cpSync(join(REPO, "example"), conf, { recursive: true });
  const state = pair.tempDir();
  chmodSync(state, 0o777);
  const args = ["--foreground", "--debug", "--no-dbus", "--no-restore", "--configdir", conf, "--statedir", state, ...extra];
  const [command, argv] = reference ? [MANDOS_REFERENCE, args] : [process.execPath, [BIN_MANDOS, ...args]];
  const child = pair.spawn(pair.server, command, argv, { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus } });
  let text = "";
  const watchers = new Set<() => void>();
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    text += chunk;
    for (const w of [...watchers]) w();
  });
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    exited,
    log: () => text,
    waitForLog(pattern, from = text.length, ms = 30_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = pattern.exec(text.slice(from));
          if (!m) return;
          watchers.delete(check);
          clearTimeout(timer);
          resolve(m[0]);
        };
        const timer = setTimeout(() => {
          watchers.delete(check);
          reject(new Error(`server log did not match ${pattern} within ${ms} ms; log:\n${text}`));
        }, ms);
        watchers.add(check);
        void exited.then(() => {
          if (!watchers.has(check)) return;
          watchers.delete(check);
          clearTimeout(timer);
          reject(new Error(`server exited before its log matched ${pattern}; log:\n${text}`));
        });
        check();
      });
    },
  };
}

/**
 * The Zeroconf lines of a server's log, as "LEVEL: message", in order: the
 * reference's (Avahi..., ...Zeroconf service...), not our own "Zeroconf: "
 * notes, nor the reference's logging tracebacks (it has no syslog here).
 */
export function zeroconfLines(log: string): string[] {
  return log.split("\n")
    .map((line) => /\]: (DEBUG|INFO|WARNING|ERROR|CRITICAL): (.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `${m[1]}: ${m[2]}`)
    .filter((line) => /Avahi|Zeroconf service|Zeroconf server|Unknown state/.test(line));
}
