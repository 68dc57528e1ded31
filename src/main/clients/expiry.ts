// When an enabled client is disabled for want of a successful checker
// (mandos-clients.conf(5) TIMEOUT): each enabled client has one disable
// timer set for `runtime.expires`. A successful checker or an operator's
// bump restarts it one `timeout` ahead, a delivered secret one
// `extended_timeout` ahead, and a changed `timeout` moves it by the
// difference, as the reference's Client does.
//
// In a fleet (../fleet/) the expiry, like the checker, is decided by the
// server that runs the client's checker: a checker success there moves
// `expires` for every server, but reaches the others a moment later, so a
// timer firing elsewhere first would disable a client that has just
// checked OK. Elsewhere the timer looks again every OWNER_GRACE_MS, and
// disables the client itself once it runs the checker (its owner died).
// A timer that fires late (a stall) looks again before it disables.
//
// `expires` is wall-clock time (shown, saved, shared with the fleet); the
// decision runs on the monotonic clock, as the reference's GLib timer
// does: each arm() turns `expires` into `expiresAt`, and a step of the
// wall clock (NTP correcting a bad RTC after boot) neither disables every
// client at once nor keeps a failing one enabled for the step's length.

import type { ClientHost, ClientRecord } from "./record.js";

/** How often a server that does not run a client's checker looks again at its passed expiry: the fleet's one-second promise. */
export const OWNER_GRACE_MS = 1_000;
/**
 * A timer that fires this much later than it was due tells of a stall
 * (the process stopped, a suspended VM, a host starved of CPU). The
 * timers fire before the I/O that waited meanwhile is read: a checker's
 * success, another server's (which took the checker over while this one
 * was gone). So an expiry found on such a timer is looked at again
 * STALL_GRACE_MS later, once that I/O is in, before the client is
 * disabled: a server stopped for 20 s disabled a client for the whole
 * fleet that its successor had just checked.
 */
export const STALL_MS = 1_000;
export const STALL_GRACE_MS = 3_000;

export class Expiry {
  readonly #host: ClientHost;
  /** The server stops: no timer is set any more (halt). */
  #halted = false;

  constructor(host: ClientHost) {
    this.#host = host;
  }

  /**
   * Sets the disable timer for `c.runtime.expires` (none if that is null).
   * A timer already set for no later than that stays: when it fires it
   * looks at `expires` again and waits out the rest. So a secret sent,
   * which moves the expiry later (bump), sets no timer.
   */
  arm(c: ClientRecord): void {
    const expires = c.runtime.expires;
    if (expires === null) return this.cancel(c);
    const clock = this.#host.clock;
    const elapsed = clock.elapsed();
    c.expiresAt = elapsed + (expires - clock.now());
    if (c.disableTimer !== null && c.disableDue <= c.expiresAt) return;
    c.disableTimer?.cancel();
    this.#set(c, c.expiresAt - elapsed);
  }

  cancel(c: ClientRecord): void {
    c.disableTimer?.cancel();
    c.disableTimer = null;
  }

  /**
   * The server stops: from now on no disable timer is set (the caller
   * cancels each client's); `expires` still moves, for the last save.
   */
  halt(): void {
    this.#halted = true;
  }

  /** Expires `c` `ms` from now (the reference's bump_timeout). */
  bump(c: ClientRecord, ms: number): void {
    if (!c.runtime.enabled) return this.cancel(c);
    c.setRuntime({ expires: this.#host.clock.now() + ms });
    this.arm(c);
    this.#host.changed(c, "Expires");
  }

  /**
   * The timeout changed from `old` to the current one: moves the expiry by
   * the difference. Returns null when `c` has no expiry (disabled); else
   * Expires changed (the caller announces it): false when the new one has
   * already passed (the caller disables `c`), true when the timer is
   * re-armed.
   */
  timeoutChanged(c: ClientRecord, old: number): boolean | null {
    const { enabled, expires } = c.runtime;
    if (!enabled || expires === null) return null;
    const clock = this.#host.clock;
    // Moved on the monotonic clock, and shown from now's wall clock; before
    // the first arm (no timer yet: the registry not started), from `expires`.
    const before = c.disableTimer === null ? expires - clock.now() : c.expiresAt - clock.elapsed();
    const left = before + c.settings.timeout - old;
    c.setRuntime({ expires: clock.now() + left });
    if (left <= 0) return false;
    this.arm(c);
    return true;
  }

  #set(c: ClientRecord, ms: number): void {
    if (this.#halted) return;
    const clock = this.#host.clock;
    c.disableDue = clock.elapsed() + ms;
    c.disableTimer = clock.setTimeoutWith(this.#fire, ms, c);
  }

  /** Every client's expiry timer calls this one function (Clock.setTimeoutWith). */
  readonly #fire = (c: ClientRecord): void => {
    c.disableTimer = null;
    if (c.runtime.expires === null) return;
    const now = this.#host.clock.elapsed();
    const left = c.expiresAt - now;
    if (left > 0) this.#set(c, left);
    else if (now - c.disableDue >= STALL_MS) this.#set(c, STALL_GRACE_MS);
    else if (this.#host.ownsChecker(c)) this.#host.disable(c, "timeout");
    else this.#set(c, OWNER_GRACE_MS);
  };
}
