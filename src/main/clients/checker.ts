// Checkers (mandos-clients.conf(5) CHECKING): the schedule of each enabled
// client's checker, the command's runtime %(attr)s expansion with shell
// quoting, and the processes, at most MAX_CONCURRENT_CHECKERS starting at
// once server-wide. A succeeding checker tells the registry (host.checkedOk),
// which bumps the expiry.
//
// Invariants: never two checkers for one client (running or queued); a
// queued client counts as CheckerRunning; a killed checker's exit is
// ignored.

import { events } from "../events.js";
import { clientObjectPath } from "./object-path.js";
import { FormatError, percentFormat, pyStr, shellQuote, type PyValue } from "./python-format.js";
import { publish, type CheckerProcess, type ClientHost, type ClientRecord } from "./record.js";
import type { TimerHandle } from "../clock.js";
import type { Expiry } from "./expiry.js";
import { shellSpawner, type CheckerSpawner } from "./shell-spawner.js";

export { shellSpawner, type CheckerSpawner };

/**
 * Checkers starting at once, server-wide. A reboot wave or a restart can
 * make hundreds of checkers due together, and each costs a fork and an exec
 * and its command's start: the rest wait their turn, in order. A checker
 * holds its place until it ends, is killed, or has run CHECKER_SLOT_MS:
 * one that takes long (fping of a host that is down, ~4 s; ssh-keyscan's
 * 5 s timeout; one that hangs) must not keep the others waiting, or
 * healthy clients go unchecked past their timeout and are disabled (found
 * with 32 hung checkers: every other client disabled within 10 s). The
 * processes themselves are bounded by the clients, one each at most.
 */
export const MAX_CONCURRENT_CHECKERS = 64;

/** How long a running checker keeps its place among MAX_CONCURRENT_CHECKERS (above). */
export const CHECKER_SLOT_MS = 1_000;

/** The reference's Client.runtime_expansions. */
const RUNTIME_EXPANSIONS = [
  "approval_delay", "approval_duration", "created", "enabled", "expires", "key_id", "fingerprint", "host",
  "interval", "last_approval_request", "last_checked_ok", "last_enabled", "name", "timeout",
  // The reference's ClientDBus adds this one; we always offer it.
  "dbus_object_path",
] as const;

/** The checker command of `c` after runtime expansion; null (and mandos:checker:command-invalid) if it cannot be formatted. */
export function checkerCommand(c: ClientRecord): string | null {
  const expanded = expandChecker(c);
  return typeof expanded === "string" ? expanded : null;
}

/** The checker command of `c` after runtime expansion, or why it cannot be formatted (said on mandos:checker:command-invalid). */
export function expandChecker(c: ClientRecord): string | { readonly reason: string } {
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
    return { reason };
  }
}

/** A checker's place among MAX_CONCURRENT_CHECKERS, until it is given back. */
interface Place {
  held: boolean;
  timer: TimerHandle | null;
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
  /** Checkers holding a place (MAX_CONCURRENT_CHECKERS). */
  #running = 0;
  /** Clients whose checker waits for a place, and since when. */
  readonly #queue: { readonly c: ClientRecord; readonly since: number }[] = [];
  #waiting = 0;
  /** The place each checker holds, given back once (#release). */
  readonly #places = new WeakMap<CheckerProcess, Place>();
  /** The server stops: no checker starts any more (halt). */
  #halted = false;

  constructor(host: ClientHost, expiry: Expiry, opts: CheckerRunnerOptions) {
    this.#host = host;
    this.#expiry = expiry;
    this.#spawner = opts.spawner;
    this.#random = opts.random;
    this.#maxCheckers = opts.maxCheckers;
  }

  /** The reference's init_checker: schedules `c`'s checkers and its first expiry. */
  init(c: ClientRecord, randomizeStart: boolean, atStart = false): void {
    const clock = this.#host.clock;
    c.checkerTimer?.cancel();
    const interval = c.settings.interval;
    const delay = randomizeStart ? Math.floor(this.#random() * (interval + 1)) : interval;
    c.checkerTimer = clock.setTimeoutWith(randomizeStart ? this.#firstDueRandomized : this.#firstDue, delay, c);
    // A checker may take up to an interval, so expire at the soonest one
    // interval after the (delayed) first checker starts.
    c.setRuntime({ expires: clock.now() + delay + interval });
    this.#expiry.arm(c);
    // At the server's start, or a client's addition, no event of the
    // client's moved it: a fleet keeps its own value (ClientHost.scheduleStarted).
    if (atStart) this.#host.scheduleStarted(c);
    else this.#host.changed(c, "Expires");
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
    // The expiry moves before the checker starts, as the reference's
    // signals say (Expires, then CheckerStarted).
    if (randomizeStart) {
      const clock = this.#host.clock;
      // On the monotonic clock (Expiry.arm), shown in the wall clock's time.
      if (c.runtime.expires !== null && c.expiresAt < clock.elapsed() + c.settings.interval) {
        c.setRuntime({ expires: clock.now() + c.settings.interval });
        this.#expiry.arm(c);
        this.#host.changed(c, "Expires");
      }
    }
    this.start(c);
  }

  /** Every later checker: the next is scheduled once this one has started. */
  readonly #nextDue = (c: ClientRecord): void => {
    c.checkerTimer = null;
    if (!c.runtime.enabled) return;
    // Due as the client expires (with the defaults, the second checker of
    // a client whose first failed): the expiry disables it first, as the
    // reference's does, rather than a checker started to be killed at once.
    // The schedule goes on: should the expiry look again instead (a stall,
    // another server of a fleet deciding), the client is still checked.
    const expired = c.runtime.expires !== null && c.expiresAt <= this.#host.clock.elapsed();
    // In a fleet another server may run this client's checkers (../fleet/); the schedule goes on, ready to take over.
    if (!expired && this.#host.ownsChecker(c)) this.start(c);
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
    if (this.#halted) return;
    if (c.checker || c.checkerQueued || (!asked && !c.runtime.enabled)) return;
    if (this.#running >= this.#maxCheckers) {
      c.checkerQueued = true;
      this.#waiting++;
      this.#queue.push({ c, since: this.#host.clock.elapsed() });
      this.#host.changed(c, "CheckerRunning");
      return;
    }
    this.#run(c);
  }

  /**
   * The server stops: from now on no checker starts, scheduled, queued or
   * asked for (the caller cancels each client's schedule and running
   * checker).
   */
  halt(): void {
    this.#halted = true;
  }

  /** Checkers waiting for a place (MAX_CONCURRENT_CHECKERS): the queue's entries still queued. */
  get waiting(): number {
    return this.#waiting;
  }

  #run(c: ClientRecord): void {
    const command = checkerCommand(c);
    if (command === null) return;
    // Published before the spawn, so that it precedes the completion even
    // if a spawner calls back at once.
    publish(events.checkerStarted, () => ({ client: c.view(), command }));
    this.#running++;
    const place: Place = { held: true, timer: null };
    let proc: CheckerProcess;
    try {
      proc = this.#spawner(command, (code, signal, startError) => {
        this.#release(place);
        if (c.checker !== proc) return; // killed: stop_checker forgets it
        c.checker = null;
        this.#host.changed(c, "CheckerRunning");
        this.#done(c, command, code, signal, startError);
      });
    } catch (error) {
      // A spawner that throws (an argument past the kernel's limit, E2BIG):
      // as a shell that could not start, whose start was announced (D-Bus
      // CheckerStarted before CheckerCompleted, as for one that fails later).
      this.#release(place);
      this.#host.emit({ type: "checker-started", client: c.view(), command });
      this.#done(c, command, 127, null, (error as NodeJS.ErrnoException).code ?? String(error));
      return;
    }
    if (place.held) place.timer = this.#host.clock.setTimeoutWith(this.#release, CHECKER_SLOT_MS, place);
    this.#places.set(proc, place);
    c.checker = proc;
    this.#host.changed(c, "CheckerRunning");
    this.#host.emit({ type: "checker-started", client: c.view(), command });
  }

  /** A checker gives back its place: it ended, was killed, or has run CHECKER_SLOT_MS. Once. */
  readonly #release = (place: Place): void => {
    if (!place.held) return;
    place.held = false;
    place.timer?.cancel();
    this.#running--;
    this.#next();
  };

  #next(): void {
    const now = this.#host.clock.elapsed();
    while (this.#running < this.#maxCheckers && this.#queue.length > 0) {
      const { c: next, since } = this.#queue.shift()!;
      if (!next.checkerQueued) continue;
      next.checkerQueued = false;
      this.#waiting--;
      // Disabling a client takes its checker out of the queue (cancel).
      if (!this.#host.isCurrent(next)) continue;
      // Later than its next one was due: said (a line a minute, daemon/log-clients.ts).
      if (now - since > next.settings.interval) publish(events.checkerLate, () => ({ client: next.view(), waitedMs: now - since, waiting: this.waiting }));
      this.#run(next);
    }
  }

  /**
   * A checker ended, in the reference's order (its checker_callback and
   * ClientDBus's): LastCheckerStatus (announced only when it changed, as
   * its properties are), the log line, checked_ok on success
   * (LastCheckedOK, Expires), and the CheckerCompleted signal last.
   */
  #done(c: ClientRecord, command: string, code: number | null, signal: number | null, startError?: string): void {
    const status = code ?? -1;
    const waitStatus = code === null ? (-1 << 8) | (signal ?? 0) : code << 8;
    const statusChanged = c.runtime.lastCheckerStatus !== status;
    c.setRuntime({ lastCheckerStatus: status, lastCheckerSignal: code === null ? signal : null });
    if (statusChanged) this.#host.changed(c, "LastCheckerStatus");
    publish(events.checkerCompleted, () => ({ client: c.view(), command, exitCode: status, waitStatus, ...(startError === undefined ? {} : { startError }) }));
    if (code === 0) this.#host.checkedOk(c);
    this.#host.emit({ type: "checker-completed", client: c.view(), exitCode: status, waitStatus, command });
  }

  /** The reference's stop_checker. */
  kill(c: ClientRecord): void {
    if (c.checkerQueued) {
      c.checkerQueued = false;
      this.#waiting--;
      this.#host.changed(c, "CheckerRunning");
    }
    if (!c.checker) return;
    publish(events.checkerStopped, () => ({ client: c.view() }));
    const proc = c.checker;
    c.checker = null;
    proc.kill();
    // Its place is given back now: one that ignores SIGTERM must not keep
    // it (the spawner sends SIGKILL after CHECKER_KILL_GRACE_MS).
    const place = this.#places.get(proc);
    if (place) this.#release(place);
    this.#host.changed(c, "CheckerRunning");
  }
}
