// Checkers (mandos-clients.conf(5) CHECKING): the schedule of each enabled
// client's checker, the command's runtime %(attr)s expansion with shell
// quoting, and the processes, at most MAX_CONCURRENT_CHECKERS at once
// server-wide. A succeeding checker tells the registry (host.checkedOk),
// which bumps the expiry.
//
// Invariants: never two checkers for one client (running or queued); a
// queued client counts as CheckerRunning; a killed checker's exit is
// ignored.

import { events } from "../events.js";
import { clientObjectPath } from "./object-path.js";
import { FormatError, percentFormat, pyStr, shellQuote, type PyValue } from "./python-format.js";
import { publish, type ClientHost, type ClientRecord } from "./record.js";
import type { Expiry } from "./expiry.js";
import { shellSpawner, type CheckerSpawner } from "./shell-spawner.js";

export { shellSpawner, type CheckerSpawner };

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

/** The checker command of `c` after runtime expansion; null (and mandos:checker:command-invalid) if it cannot be formatted. */
export function checkerCommand(c: ClientRecord): string | null {
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
  // A loop, not map() with an arrow: an arrow made a call loses its
  // optimised code at each full collection (docs/BENCHMARK.md, "Closures
  // compiled again"), and checkers run in a wave too.
  const mapping = new Map<string, string>();
  for (const k of RUNTIME_EXPANSIONS) mapping.set(k, shellQuote(pyStr(values[k])));
  try {
    return percentFormat(s.checker, mapping);
  } catch (error) {
    const reason = error instanceof FormatError ? error.message : String(error);
    publish(events.checkerCommandInvalid, () => ({ client: c.view(), checker: s.checker, reason }));
    return null;
  }
}

export interface CheckerRunnerOptions {
  readonly spawner: CheckerSpawner;
  /** Uniform in [0, 1), for the first checker's delay. */
  readonly random: () => number;
  readonly maxCheckers: number;
}

export class CheckerRunner {
  readonly #host: ClientHost;
  readonly #expiry: Expiry;
  readonly #spawner: CheckerSpawner;
  readonly #random: () => number;
  readonly #maxCheckers: number;
  #running = 0;
  readonly #queue: ClientRecord[] = [];

  constructor(host: ClientHost, expiry: Expiry, opts: CheckerRunnerOptions) {
    this.#host = host;
    this.#expiry = expiry;
    this.#spawner = opts.spawner;
    this.#random = opts.random;
    this.#maxCheckers = opts.maxCheckers;
  }

  /** The reference's init_checker: schedules `c`'s checkers and its first expiry. */
  init(c: ClientRecord, randomizeStart: boolean): void {
    const clock = this.#host.clock;
    c.checkerTimer?.cancel();
    const interval = c.settings.interval;
    const delay = randomizeStart ? Math.floor(this.#random() * (interval + 1)) : interval;
    c.checkerTimer = clock.setTimeoutWith(randomizeStart ? this.#firstDueRandomized : this.#firstDue, delay, c);
    // A checker may take up to an interval, so expire at the soonest one
    // interval after the (delayed) first checker starts.
    c.setRuntime({ expires: clock.now() + delay + interval });
    this.#expiry.arm(c);
    this.#host.changed(c, "Expires");
  }

  // The timers' callbacks, one each for every client (Clock.setTimeoutWith).
  readonly #firstDue = (c: ClientRecord): void => this.#onFirstDue(c, false);
  readonly #firstDueRandomized = (c: ClientRecord): void => this.#onFirstDue(c, true);

  /** The first checker after init(): the schedule starts, and a randomized start moves the expiry. */
  #onFirstDue(c: ClientRecord, randomizeStart: boolean): void {
    c.checkerTimer = null;
    this.#schedule(c, c.settings.interval);
    // Another server of a fleet runs this checker and moves the expiry (../fleet/).
    if (!this.#host.ownsChecker(c)) return;
    this.start(c);
    if (randomizeStart) {
      const later = this.#host.clock.now() + c.settings.interval;
      if (c.runtime.expires !== null && c.runtime.expires < later) {
        c.setRuntime({ expires: later });
        this.#expiry.arm(c);
        this.#host.changed(c, "Expires");
      }
    }
  }

  /** Every later checker: the next is scheduled once this one has started. */
  readonly #nextDue = (c: ClientRecord): void => {
    c.checkerTimer = null;
    if (!c.runtime.enabled) return;
    // In a fleet another server may run this client's checkers (../fleet/); the schedule goes on, ready to take over.
    if (this.#host.ownsChecker(c)) this.start(c);
    this.#schedule(c, c.settings.interval);
  };

  /** The interval changed: the reference restarts the schedule with the new one. */
  reschedule(c: ClientRecord): void {
    if (!c.runtime.enabled || !c.checkerTimer) return;
    c.checkerTimer.cancel();
    this.#schedule(c, c.settings.interval);
  }

  /** Stops the schedule and any checker of `c`. */
  cancel(c: ClientRecord): void {
    c.checkerTimer?.cancel();
    c.checkerTimer = null;
    this.kill(c);
  }

  #schedule(c: ClientRecord, every: number): void {
    c.checkerTimer = this.#host.clock.setTimeoutWith(this.#nextDue, every, c);
  }

  /**
   * The reference's start_checker: never two at once for one client. Its
   * schedule runs only while the client is enabled; `asked` (the
   * operator's StartChecker, CheckerRunning = true) runs one on a disabled
   * client too, as the reference does: its result sets LastCheckedOK and
   * LastCheckerStatus, and leaves Enabled and Expires as they are.
   */
  start(c: ClientRecord, asked = false): void {
    if (c.checker || c.checkerQueued || (!asked && !c.runtime.enabled)) return;
    if (this.#running >= this.#maxCheckers) {
      c.checkerQueued = true;
      this.#queue.push(c);
      this.#host.changed(c, "CheckerRunning");
      return;
    }
    this.#run(c);
  }

  #run(c: ClientRecord): void {
    const command = checkerCommand(c);
    if (command === null) return;
    // Published before the spawn, so that it precedes the completion even
    // if a spawner calls back at once.
    publish(events.checkerStarted, () => ({ client: c.view(), command }));
    this.#running++;
    const proc = this.#spawner(command, (code, signal) => {
      this.#running--;
      this.#next();
      if (c.checker !== proc) return; // killed: stop_checker forgets it
      c.checker = null;
      this.#host.changed(c, "CheckerRunning");
      this.#done(c, command, code, signal);
    });
    c.checker = proc;
    this.#host.changed(c, "CheckerRunning");
    this.#host.emit({ type: "checker-started", client: c.view(), command });
  }

  #next(): void {
    while (this.#running < this.#maxCheckers && this.#queue.length > 0) {
      const next = this.#queue.shift()!;
      if (!next.checkerQueued) continue;
      next.checkerQueued = false;
      // Disabling a client takes its checker out of the queue (cancel).
      if (this.#host.isCurrent(next)) this.#run(next);
    }
  }

  /**
   * A checker ended, in the reference's order (its checker_callback and
   * ClientDBus's): LastCheckerStatus (announced only when it changed, as
   * its properties are), the log line, checked_ok on success
   * (LastCheckedOK, Expires), and the CheckerCompleted signal last.
   */
  #done(c: ClientRecord, command: string, code: number | null, signal: number | null): void {
    const status = code ?? -1;
    const waitStatus = code === null ? (-1 << 8) | (signal ?? 0) : code << 8;
    const statusChanged = c.runtime.lastCheckerStatus !== status;
    c.setRuntime({ lastCheckerStatus: status, lastCheckerSignal: code === null ? signal : null });
    if (statusChanged) this.#host.changed(c, "LastCheckerStatus");
    publish(events.checkerCompleted, () => ({ client: c.view(), command, exitCode: status, waitStatus }));
    if (code === 0) this.#host.checkedOk(c);
    this.#host.emit({ type: "checker-completed", client: c.view(), exitCode: status, waitStatus, command });
  }

  /** The reference's stop_checker. */
  kill(c: ClientRecord): void {
    if (c.checkerQueued) {
      c.checkerQueued = false;
      this.#host.changed(c, "CheckerRunning");
    }
    if (!c.checker) return;
    publish(events.checkerStopped, () => ({ client: c.view() }));
    const proc = c.checker;
    c.checker = null;
    proc.kill();
    this.#host.changed(c, "CheckerRunning");
  }
}
