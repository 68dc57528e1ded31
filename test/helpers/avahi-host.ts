// The pieces of a host that runs its own avahi-daemon, inside a test's
// network namespace (test/helpers/netns.ts; NetnsPair.startAvahi starts it
// under a chosen host name on the namespace's own system bus): stopping it
// to start it again, a Mandos server (ours or the reference) on that bus,
// and avahi-browse on the other side. Nothing here multicasts outside the
// test's namespaces.

import type { ChildProcess } from "node:child_process";
import { chmodSync, cpSync } from "node:fs";
import { join } from "node:path";
import { parseBrowseLine, type BrowsedService } from "./avahi-browse.js";
import { LogWatch } from "./log-watch.js";
import { AVAHI_BROWSE, type NetnsPair, type Side } from "./netns.js";
import { MANDOS_REFERENCE } from "./peers.js";
import { BIN_MANDOS, REPO } from "./server.js";

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
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const log = new LogWatch(exited);
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => log.add(chunk));
  child.stdout!.resume();
  return {
    child,
    exited,
    log: () => log.text,
    waitForLog: (pattern, from = log.text.length, ms = 30_000) => log.wait(pattern, from, ms),
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
