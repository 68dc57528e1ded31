// The in-memory registry: the one owner of client state, following the
// reference's Client and ClientDBus classes (mandos(8), mandos-clients.conf(5)
// CHECKING and APPROVAL). Everything that changes a client goes through
// here and comes out as events, in order, to subscribers (D-Bus, the state
// file, logs).
//
// Timers per enabled client, as the reference keeps them:
//   - checkerTimer: starts the next checker (first after a random delay
//     within one interval at start-up, then every interval);
//   - disableTimer: disables the client at `expires`.
// Invariant: a client is enabled iff it has a disableTimer or expires is
// null because of a zero-length race; a disabled client has no timers and
// no running checker.

import { spawn as spawnProcess } from "node:child_process";
import type { ClientSettings } from "./settings.js";
import { EMPTY_KEY_ID } from "./settings.js";
import { systemClock, type Clock, type TimerHandle } from "../clock.js";
import type { Logger } from "../daemon/log.js";
import { FormatError, percentFormat, pyStr, shellQuote, type PyValue } from "./python-format.js";
import { clientObjectPath } from "../dbus/interfaces.js";
import type {
  ClientPatch,
  ClientProperty,
  ClientView,
  Registry,
  RegistryEvent,
  SecretDecision,
} from "./contract.js";

/**
 * Checker processes running at once, server-wide. A reboot wave or a
 * restart can make hundreds of checkers due together; fping takes up to a
 * few seconds each, so 32 keeps a host responsive while still checking
 * ~10 clients a second. Checkers beyond it wait their turn.
 */
export const MAX_CONCURRENT_CHECKERS = 32;

/** The reference's Client.runtime_expansions. */
const RUNTIME_EXPANSIONS = [
  "approval_delay", "approval_duration", "created", "enabled", "expires", "key_id", "fingerprint", "host",
  "interval", "last_approval_request", "last_checked_ok", "last_enabled", "name", "timeout",
  // The reference's ClientDBus adds this one; we always offer it.
  "dbus_object_path",
] as const;

export interface CheckerProcess {
  kill(): void;
}

/** Runs a checker command; calls back once with the exit code or the signal. */
export type CheckerSpawner = (command: string, done: (code: number | null, signal: number | null) => void) => CheckerProcess;

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };

/** `/bin/sh -c command` in its own process group (so kill() reaches the whole pipeline), cwd "/". */
export const shellSpawner: CheckerSpawner = (command, done) => {
  const child = spawnProcess("/bin/sh", ["-c", command], { cwd: "/", stdio: "ignore", detached: true });
  let finished = false;
  const finish = (code: number | null, signal: number | null): void => {
    if (finished) return;
    finished = true;
    done(code, signal);
  };
  child.on("error", () => finish(127, null));
  child.on("exit", (code, signal) => finish(code, signal ? (SIGNALS[signal] ?? 15) : null));
  return {
    kill() {
      if (child.pid === undefined || child.exitCode !== null) return;
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        child.kill("SIGTERM");
      }
    },
  };
};

export interface RegistryDeps {
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly spawner?: CheckerSpawner;
  /** Uniform in [0, 1). */
  readonly random?: () => number;
  readonly maxCheckers?: number;
}

/** Runtime state that persists (see ../state/state-file.ts); the rest comes from clients.conf. */
export interface ClientRuntime {
  enabled: boolean;
  created: number;
  lastEnabled: number | null;
  expires: number | null;
  lastCheckedOk: number | null;
  lastApprovalRequest: number | null;
  lastCheckerStatus: number;
  lastCheckerSignal: number | null;
}

class ClientRecord {
  settings: { -readonly [K in keyof ClientSettings]: ClientSettings[K] };
  runtime: ClientRuntime;
  approved: boolean | null = null;
  approvedReset: TimerHandle | null = null;
  approvalsPending = 0;
  checker: CheckerProcess | null = null;
  checkerQueued = false;
  checkerTimer: TimerHandle | null = null;
  disableTimer: TimerHandle | null = null;
  readonly waiters = new Set<() => void>();

  constructor(settings: ClientSettings, runtime: ClientRuntime) {
    this.settings = { ...settings };
    this.runtime = runtime;
  }

  view(): ClientView {
    const s = this.settings;
    const r = this.runtime;
    const date = (t: number | null): Date | null => (t === null ? null : new Date(t));
    return {
      name: s.name,
      keyId: s.keyId,
      fingerprint: s.fingerprint,
      host: s.host,
      timeout: s.timeout,
      extendedTimeout: s.extendedTimeout,
      interval: s.interval,
      approvalDelay: s.approvalDelay,
      approvalDuration: s.approvalDuration,
      approvedByDefault: s.approvedByDefault,
      checker: s.checker,
      enabled: r.enabled,
      checkerRunning: this.checker !== null || this.checkerQueued,
      approvalPending: this.approvalsPending > 0,
      created: new Date(r.created),
      lastEnabled: date(r.lastEnabled),
      expires: date(r.expires),
      lastCheckedOk: date(r.lastCheckedOk),
      lastApprovalRequest: date(r.lastApprovalRequest),
      lastCheckerStatus: r.lastCheckerStatus,
    };
  }

  /** Wakes connections waiting for approval (the reference's changedstate). */
  notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

export function freshRuntime(settings: ClientSettings, now: number): ClientRuntime {
  return {
    enabled: settings.enabled,
    created: now,
    lastEnabled: settings.enabled ? now : null,
    expires: settings.enabled ? now + settings.timeout : null,
    lastCheckedOk: null,
    lastApprovalRequest: null,
    lastCheckerStatus: -2,
    lastCheckerSignal: null,
  };
}

export class ClientRegistry implements Registry {
  readonly #clients = new Map<string, ClientRecord>();
  readonly #byKeyId = new Map<string, ClientRecord>();
  readonly #byFingerprint = new Map<string, ClientRecord>();
  readonly #listeners = new Set<(event: RegistryEvent) => void>();
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #spawner: CheckerSpawner;
  readonly #random: () => number;
  readonly #maxCheckers: number;
  #runningCheckers = 0;
  readonly #checkerQueue: ClientRecord[] = [];
  #started = false;

  constructor(settings: readonly ClientSettings[], deps: RegistryDeps, restored?: ReadonlyMap<string, ClientRuntime>) {
    this.#logger = deps.logger;
    this.#clock = deps.clock ?? systemClock;
    this.#spawner = deps.spawner ?? shellSpawner;
    this.#random = deps.random ?? Math.random;
    this.#maxCheckers = deps.maxCheckers ?? MAX_CONCURRENT_CHECKERS;
    const now = this.#clock.now();
    for (const s of settings) this.#add(s, restored?.get(s.name) ?? freshRuntime(s, now), false);
  }

  /** Starts checkers and expiry timers (after start-up, as the reference does before its main loop). */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    for (const c of this.#clients.values()) if (c.runtime.enabled) this.#initChecker(c, true);
  }

  /** Stops every timer and checker (shutdown). Client state is kept for the last save. */
  stop(): void {
    this.#started = false;
    for (const c of this.#clients.values()) {
      c.checkerTimer?.cancel();
      c.checkerTimer = null;
      c.disableTimer?.cancel();
      c.disableTimer = null;
      this.#killChecker(c);
      c.approvedReset?.cancel();
    }
  }

  // ------------------------------------------------------------ queries

  list(): ClientView[] {
    return [...this.#clients.values()].map((c) => c.view());
  }

  get(name: string): ClientView | undefined {
    return this.#clients.get(name)?.view();
  }

  byKeyId(keyId: string): ClientView | undefined {
    if (keyId === "" || keyId === EMPTY_KEY_ID) return undefined;
    return this.#byKeyId.get(keyId)?.view();
  }

  byFingerprint(fingerprint: string): ClientView | undefined {
    if (fingerprint === "") return undefined;
    return this.#byFingerprint.get(fingerprint)?.view();
  }

  /** Settings and runtime of every client, for the state file. */
  snapshot(): Array<{ settings: ClientSettings; runtime: ClientRuntime }> {
    return [...this.#clients.values()].map((c) => ({ settings: { ...c.settings }, runtime: { ...c.runtime } }));
  }

  /** The same without copies, for a save of many clients; read, never keep or change. */
  *entries(): Generator<{ readonly settings: ClientSettings; readonly runtime: ClientRuntime }> {
    for (const c of this.#clients.values()) yield c;
  }

  subscribe(listener: (event: RegistryEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // --------------------------------------------------- connection path

  async requestSecret(name: string, _address: string, signal: AbortSignal): Promise<SecretDecision> {
    const c = this.#clients.get(name);
    if (!c) return { give: false, reason: "Removed" };
    const approvalRequired = c.settings.approvalDelay > 0;
    let delay = c.settings.approvalDelay;
    if (approvalRequired) this.#setApprovalsPending(c, c.approvalsPending + 1);
    try {
      for (;;) {
        if (signal.aborted || this.#clients.get(name) !== c) return { give: false, reason: "Aborted" };
        if (!c.runtime.enabled) {
          this.#emit({ type: "rejected", client: c.view(), reason: "Disabled" });
          return { give: false, reason: "Disabled" };
        }
        if (c.approved === true || c.settings.approvalDelay === 0) break;
        if (c.approved === null) {
          this.#logger.info(`Client ${name} needs approval`);
          c.runtime.lastApprovalRequest = this.#clock.now();
          this.#changed(c, "LastApprovalRequest");
          this.#emit({ type: "need-approval", client: c.view(), timeout: c.settings.approvalDelay, approvedByDefault: c.settings.approvedByDefault });
          // A listener may have approved or denied right away (D-Bus does);
          // that must count now, not after the delay.
          if (this.#approvalChanged(c)) continue;
        } else {
          this.#emit({ type: "rejected", client: c.view(), reason: "Denied" });
          return { give: false, reason: "Denied" };
        }
        const started = this.#clock.now();
        await this.#waitForChange(c, delay, signal);
        const elapsed = this.#clock.now() - started;
        if (elapsed >= delay) {
          if (signal.aborted) return { give: false, reason: "Aborted" };
          if (!c.settings.approvedByDefault) {
            this.#emit({ type: "rejected", client: c.view(), reason: "Approval timed out" });
            return { give: false, reason: "Approval timed out" };
          }
          if (!c.runtime.enabled) continue;
          break;
        }
        delay -= elapsed;
      }
      return { give: true, secret: c.settings.secret };
    } finally {
      if (approvalRequired) this.#setApprovalsPending(c, c.approvalsPending - 1);
    }
  }

  #approvalChanged(c: ClientRecord): boolean {
    return c.approved !== null || !c.runtime.enabled;
  }

  #waitForChange(c: ClientRecord, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        timer.cancel();
        c.waiters.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = this.#clock.setTimeout(done, ms);
      c.waiters.add(done);
      signal.addEventListener("abort", done);
    });
  }

  secretDelivered(name: string): void {
    const c = this.#clients.get(name);
    if (!c) return;
    this.#bumpTimeout(c, c.settings.extendedTimeout);
    this.#emit({ type: "got-secret", client: c.view() });
  }

  notFound(keyId: string, address: string): void {
    this.#emit({ type: "client-not-found", keyId, address });
  }

  // ----------------------------------------------------------- control

  enable(name: string): void {
    const c = this.#must(name);
    if (c.runtime.enabled) return;
    c.runtime.enabled = true;
    c.runtime.lastEnabled = this.#clock.now();
    this.#changed(c, "Enabled", "LastEnabled");
    this.#initChecker(c, false);
    c.notify();
  }

  disable(name: string): void {
    this.#disable(this.#must(name), false);
  }

  startChecker(name: string): void {
    const c = this.#must(name);
    this.#startChecker(c);
  }

  stopChecker(name: string): void {
    const c = this.#must(name);
    this.#killChecker(c);
  }

  checkedOk(name: string): void {
    this.#checkedOk(this.#must(name));
  }

  bumpTimeout(name: string): void {
    const c = this.#must(name);
    this.#bumpTimeout(c, c.settings.timeout);
  }

  approve(name: string, approved: boolean): void {
    const c = this.#must(name);
    c.approved = approved;
    c.approvedReset?.cancel();
    c.approvedReset = this.#clock.setTimeout(() => {
      c.approved = null;
      c.approvedReset = null;
    }, c.settings.approvalDuration);
    c.notify();
  }

  update(name: string, patch: ClientPatch): void {
    const c = this.#must(name);
    const s = c.settings;
    const changed: ClientProperty[] = [];
    if (patch.host !== undefined && patch.host !== s.host) {
      s.host = patch.host;
      changed.push("Host");
    }
    if (patch.checker !== undefined && patch.checker !== s.checker) {
      s.checker = patch.checker;
      changed.push("Checker");
    }
    if (patch.secret !== undefined) {
      s.secret = Buffer.from(patch.secret);
      changed.push("Secret");
    }
    if (patch.approvedByDefault !== undefined && patch.approvedByDefault !== s.approvedByDefault) {
      s.approvedByDefault = patch.approvedByDefault;
      changed.push("ApprovedByDefault");
    }
    if (patch.approvalDelay !== undefined && patch.approvalDelay !== s.approvalDelay) {
      s.approvalDelay = patch.approvalDelay;
      changed.push("ApprovalDelay");
    }
    if (patch.approvalDuration !== undefined && patch.approvalDuration !== s.approvalDuration) {
      s.approvalDuration = patch.approvalDuration;
      changed.push("ApprovalDuration");
    }
    if (patch.extendedTimeout !== undefined && patch.extendedTimeout !== s.extendedTimeout) {
      s.extendedTimeout = patch.extendedTimeout;
      changed.push("ExtendedTimeout");
    }
    if (patch.interval !== undefined && patch.interval !== s.interval) {
      s.interval = patch.interval;
      changed.push("Interval");
      // The reference restarts the checker schedule with the new interval.
      if (c.runtime.enabled && c.checkerTimer) {
        c.checkerTimer.cancel();
        this.#scheduleChecker(c, s.interval);
      }
    }
    if (patch.timeout !== undefined && patch.timeout !== s.timeout) {
      const old = s.timeout;
      s.timeout = patch.timeout;
      changed.push("Timeout");
      // The reference moves the expiry by the difference, disabling at once if it passed.
      if (c.runtime.enabled && c.runtime.expires !== null) {
        c.runtime.expires += s.timeout - old;
        if (c.runtime.expires <= this.#clock.now()) {
          this.#changed(c, ...changed);
          this.#disable(c, false);
          return;
        }
        this.#armDisable(c);
        changed.push("Expires");
      }
    }
    if (changed.length > 0) this.#changed(c, ...changed);
  }

  remove(name: string): void {
    const c = this.#must(name);
    this.#disable(c, true);
    this.#clients.delete(name);
    if (this.#byKeyId.get(c.settings.keyId) === c) this.#byKeyId.delete(c.settings.keyId);
    if (this.#byFingerprint.get(c.settings.fingerprint) === c) this.#byFingerprint.delete(c.settings.fingerprint);
    c.notify();
    this.#emit({ type: "client-removed", client: c.view() });
  }

  /** Adds a client at run time (SIGHUP reload). */
  add(settings: ClientSettings, runtime?: ClientRuntime): void {
    const c = this.#add(settings, runtime ?? freshRuntime(settings, this.#clock.now()), true);
    if (this.#started && c.runtime.enabled) this.#initChecker(c, true);
  }

  // ---------------------------------------------------------- internals

  #add(settings: ClientSettings, runtime: ClientRuntime, announce: boolean): ClientRecord {
    const c = new ClientRecord(settings, runtime);
    this.#clients.set(settings.name, c);
    if (settings.keyId !== "") this.#byKeyId.set(settings.keyId, c);
    if (settings.fingerprint !== "") this.#byFingerprint.set(settings.fingerprint, c);
    this.#logger.debug(`Creating client ${JSON.stringify(settings.name)}`);
    if (announce) this.#emit({ type: "client-added", client: c.view() });
    return c;
  }

  #must(name: string): ClientRecord {
    const c = this.#clients.get(name);
    if (!c) throw new RegistryError("MANDOS_NO_SUCH_CLIENT", `no client named ${JSON.stringify(name)}`);
    return c;
  }

  #emit(event: RegistryEvent): void {
    for (const l of this.#listeners) {
      try {
        l(event);
      } catch (error) {
        this.#logger.error(`Registry listener failed on ${event.type}: ${String(error)}`);
      }
    }
  }

  #changed(c: ClientRecord, ...properties: ClientProperty[]): void {
    if (this.#listeners.size === 0) return;
    const view = c.view();
    for (const property of properties) this.#emit({ type: "property-changed", client: view, property });
  }

  #setApprovalsPending(c: ClientRecord, n: number): void {
    const before = c.approvalsPending > 0;
    c.approvalsPending = n;
    if (before !== n > 0) this.#changed(c, "ApprovalPending");
  }

  #disable(c: ClientRecord, quiet: boolean): void {
    if (!c.runtime.enabled) return;
    if (!quiet) this.#logger.info(`Disabling client ${c.settings.name}`);
    c.disableTimer?.cancel();
    c.disableTimer = null;
    c.checkerTimer?.cancel();
    c.checkerTimer = null;
    c.runtime.expires = null;
    this.#killChecker(c);
    c.runtime.enabled = false;
    this.#changed(c, "Enabled", "Expires");
    c.notify();
  }

  /** The reference's init_checker. */
  #initChecker(c: ClientRecord, randomizeStart: boolean): void {
    c.checkerTimer?.cancel();
    const interval = c.settings.interval;
    const delay = randomizeStart ? Math.floor(this.#random() * (interval + 1)) : interval;
    c.checkerTimer = this.#clock.setTimeout(() => {
      c.checkerTimer = null;
      this.#startChecker(c);
      this.#scheduleChecker(c, interval);
      if (randomizeStart) {
        const later = this.#clock.now() + c.settings.interval;
        if (c.runtime.expires !== null && c.runtime.expires < later) {
          c.runtime.expires = later;
          this.#armDisable(c);
          this.#changed(c, "Expires");
        }
      }
    }, delay);
    // A checker may take up to an interval, so expire at the soonest one
    // interval after the (delayed) first checker starts.
    c.runtime.expires = this.#clock.now() + delay + interval;
    this.#armDisable(c);
    this.#changed(c, "Expires");
  }

  #scheduleChecker(c: ClientRecord, every: number): void {
    c.checkerTimer = this.#clock.setTimeout(() => {
      c.checkerTimer = null;
      if (!c.runtime.enabled) return;
      this.#startChecker(c);
      this.#scheduleChecker(c, c.settings.interval);
    }, every);
  }

  #armDisable(c: ClientRecord): void {
    c.disableTimer?.cancel();
    if (c.runtime.expires === null) return;
    c.disableTimer = this.#clock.setTimeout(() => {
      c.disableTimer = null;
      this.#disable(c, false);
    }, c.runtime.expires - this.#clock.now());
  }

  #bumpTimeout(c: ClientRecord, ms: number): void {
    c.disableTimer?.cancel();
    c.disableTimer = null;
    if (!c.runtime.enabled) return;
    c.runtime.expires = this.#clock.now() + ms;
    this.#armDisable(c);
    this.#changed(c, "Expires");
  }

  #checkedOk(c: ClientRecord): void {
    c.runtime.lastCheckedOk = this.#clock.now();
    c.runtime.lastCheckerStatus = 0;
    c.runtime.lastCheckerSignal = null;
    this.#changed(c, "LastCheckedOK", "LastCheckerStatus");
    this.#bumpTimeout(c, c.settings.timeout);
  }

  /** The checker command after runtime expansion; null (and an error logged) if it cannot be formatted. */
  checkerCommand(name: string): string | null {
    const c = this.#clients.get(name);
    return c ? this.#expand(c) : null;
  }

  #expand(c: ClientRecord): string | null {
    const s = c.settings;
    const r = c.runtime;
    const td = (ms: number): PyValue => ({ timedeltaMs: ms });
    const dt = (t: number | null): PyValue => (t === null ? null : new Date(t));
    const values: Record<(typeof RUNTIME_EXPANSIONS)[number], PyValue> = {
      approval_delay: td(s.approvalDelay),
      approval_duration: td(s.approvalDuration),
      created: dt(r.created),
      enabled: r.enabled,
      expires: dt(r.expires),
      key_id: s.keyId,
      fingerprint: s.fingerprint,
      host: s.host,
      interval: td(s.interval),
      last_approval_request: dt(r.lastApprovalRequest),
      last_checked_ok: dt(r.lastCheckedOk),
      last_enabled: dt(r.lastEnabled),
      name: s.name,
      timeout: td(s.timeout),
      dbus_object_path: clientObjectPath(s.name),
    };
    const mapping = new Map(RUNTIME_EXPANSIONS.map((k) => [k, shellQuote(pyStr(values[k]))]));
    try {
      return percentFormat(s.checker, mapping);
    } catch (error) {
      const why = error instanceof FormatError ? error.message : String(error);
      this.#logger.error(`Could not format string ${JSON.stringify(s.checker)} for client ${s.name}: ${why}`);
      return null;
    }
  }

  /** The reference's start_checker: never two at once for one client. */
  #startChecker(c: ClientRecord): void {
    if (c.checker || c.checkerQueued || !c.runtime.enabled) return;
    if (this.#runningCheckers >= this.#maxCheckers) {
      c.checkerQueued = true;
      this.#checkerQueue.push(c);
      this.#changed(c, "CheckerRunning");
      return;
    }
    this.#runChecker(c);
  }

  #runChecker(c: ClientRecord): void {
    const command = this.#expand(c);
    if (command === null) return;
    this.#logger.info(`Starting checker ${JSON.stringify(command)} for ${c.settings.name}`);
    this.#runningCheckers++;
    const proc = this.#spawner(command, (code, signal) => {
      this.#runningCheckers--;
      this.#nextQueuedChecker();
      if (c.checker !== proc) return; // killed: stop_checker forgets it
      c.checker = null;
      this.#changed(c, "CheckerRunning");
      this.#checkerDone(c, command, code, signal);
    });
    c.checker = proc;
    this.#changed(c, "CheckerRunning");
    this.#emit({ type: "checker-started", client: c.view(), command });
  }

  #nextQueuedChecker(): void {
    while (this.#runningCheckers < this.#maxCheckers && this.#checkerQueue.length > 0) {
      const next = this.#checkerQueue.shift()!;
      if (!next.checkerQueued) continue;
      next.checkerQueued = false;
      if (next.runtime.enabled && this.#clients.get(next.settings.name) === next) this.#runChecker(next);
    }
  }

  #checkerDone(c: ClientRecord, command: string, code: number | null, signal: number | null): void {
    const name = c.settings.name;
    if (code !== null) {
      c.runtime.lastCheckerStatus = code;
      c.runtime.lastCheckerSignal = null;
      this.#emit({ type: "checker-completed", client: c.view(), exitCode: code, waitStatus: code << 8, command });
      if (code === 0) {
        this.#logger.info(`Checker for ${name} succeeded`);
        this.#checkedOk(c);
      } else {
        this.#logger.info(`Checker for ${name} failed`);
        this.#changed(c, "LastCheckerStatus");
      }
    } else {
      c.runtime.lastCheckerStatus = -1;
      c.runtime.lastCheckerSignal = signal;
      this.#logger.warning(`Checker for ${name} crashed?`);
      this.#emit({ type: "checker-completed", client: c.view(), exitCode: -1, waitStatus: (-1 << 8) | (signal ?? 0), command });
      this.#changed(c, "LastCheckerStatus");
    }
  }

  #killChecker(c: ClientRecord): void {
    if (c.checkerQueued) {
      c.checkerQueued = false;
      this.#changed(c, "CheckerRunning");
    }
    if (!c.checker) return;
    this.#logger.debug(`Stopping checker for ${c.settings.name}`);
    const proc = c.checker;
    c.checker = null;
    proc.kill();
    this.#changed(c, "CheckerRunning");
  }
}

export class RegistryError extends Error {
  constructor(
    readonly code: "MANDOS_NO_SUCH_CLIENT",
    message: string,
  ) {
    super(message);
  }
}

export function createRegistry(settings: readonly ClientSettings[], deps: RegistryDeps, restored?: ReadonlyMap<string, ClientRuntime>): ClientRegistry {
  return new ClientRegistry(settings, deps, restored);
}
