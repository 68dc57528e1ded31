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

import type { ClientHost, ClientRecord } from "./record.js";

/** How often a server that does not run a client's checker looks again at its passed expiry: the fleet's one-second promise. */
export const OWNER_GRACE_MS = 1_000;

export class Expiry {
  readonly #host: ClientHost;

  constructor(host: ClientHost) {
    this.#host = host;
  }

  /** Sets the disable timer for `c.runtime.expires` (none if that is null). */
  arm(c: ClientRecord): void {
    c.disableTimer?.cancel();
    if (c.runtime.expires === null) return;
    const clock = this.#host.clock;
    const fire = (): void => {
      c.disableTimer = null;
      if (this.#host.ownsChecker(c)) this.#host.disable(c, "timeout");
      else c.disableTimer = clock.setTimeout(fire, OWNER_GRACE_MS);
    };
    c.disableTimer = clock.setTimeout(fire, c.runtime.expires - clock.now());
  }

  cancel(c: ClientRecord): void {
    c.disableTimer?.cancel();
    c.disableTimer = null;
  }

  /** Expires `c` `ms` from now (the reference's bump_timeout). */
  bump(c: ClientRecord, ms: number): void {
    this.cancel(c);
    if (!c.runtime.enabled) return;
    c.runtime.expires = this.#host.clock.now() + ms;
    this.arm(c);
    this.#host.changed(c, "Expires");
  }

  /**
   * The timeout changed from `old` to the current one: moves the expiry by
   * the difference. Returns null when `c` has no expiry (disabled); false
   * when the new one has already passed (the caller disables `c`); true
   * when Expires changed and the timer is re-armed.
   */
  timeoutChanged(c: ClientRecord, old: number): boolean | null {
    if (!c.runtime.enabled || c.runtime.expires === null) return null;
    c.runtime.expires += c.settings.timeout - old;
    if (c.runtime.expires <= this.#host.clock.now()) return false;
    this.arm(c);
    return true;
  }
}
