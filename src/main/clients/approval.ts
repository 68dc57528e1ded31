// The approval gate (mandos-clients.conf(5) APPROVAL): a connection that
// proved a client's key waits here for its secret. With approval_delay 0
// an enabled client gets it at once; otherwise the connection waits until
// an operator approves or denies (D-Bus Approve, mandos-ctl), or until the
// delay runs out and approved_by_default decides. An approval or denial
// holds for approval_duration, for every connection of that client.
//
// A waiting connection wakes on any change of the client (record.notify():
// approved, denied, enabled, disabled, removed, its secret opened) and
// looks again.
//
// At most MAX_APPROVAL_WAITS connections of one client wait for a
// decision at once; a newer one closes the oldest ("superseded"): a
// machine holds one or two (mandos-client tries one server address at a
// time), so more are a thief's or a stale connection of a machine that
// rebooted, and the server's open connections (serve/limits.ts) are not
// theirs to fill. docs/OPERATION.md, "Hostile peers".
//
// A client whose secret is still sealed (secret-to-open.ts: the Python
// server's, opened in the background after a switch) gets it once it is
// open: its opening goes first as the connection arrives, the approval
// runs meanwhile, and the connection waits for whichever comes last.

import { events } from "../events.js";
import type { PendingRequest, Refusal, SecretDecision } from "./contract.js";
import { publish, type ApprovalWait, type ClientHost, type ClientRecord } from "./record.js";
import { secretToOpen } from "./secret-to-open.js";

/**
 * A connection waiting for its client's sealed secret looks again this
 * often even unwoken; the opening notifies as it settles, so this is only
 * a bound, not the pace.
 */
const SEALED_RECHECK_MS = 10_000;

/**
 * Connections of one client that may wait for an approval at once; a newer
 * one closes the oldest. Room for a few machines sharing one section.
 */
export const MAX_APPROVAL_WAITS = 8;

export class ApprovalGate {
  readonly #host: ClientHost;

  constructor(host: ClientHost) {
    this.#host = host;
  }

  async requestSecret(c: ClientRecord, signal: AbortSignal): Promise<SecretDecision> {
    const host = this.#host;
    const approvalRequired = c.settings.approvalDelay > 0;
    let delay = c.settings.approvalDelay;
    let wait: ApprovalWait | null = null;
    if (approvalRequired) {
      this.#setPending(c, c.approvalsPending + 1);
      wait = this.#queueWait(c);
    }
    if (c.runtime.enabled && secretToOpen(c.settings.secret)) host.secretWanted(c);
    // NeedApproval once a request, as the reference: a wake that decides
    // nothing (a Secret set, say) does not ask the operator again.
    let asked = false;
    try {
      for (;;) {
        if (signal.aborted) return { give: false, reason: "aborted" };
        // Removed while it waited (the reference would still send the secret).
        if (!host.isCurrent(c)) return { give: false, reason: "removed" };
        if (wait?.superseded) return { give: false, reason: "superseded" };
        if (!c.runtime.enabled) return this.#refuse(c, "disabled");
        if (c.approved === true || c.settings.approvalDelay === 0) break;
        if (c.approved === false) return this.#refuse(c, "denied");
        if (!asked) {
          asked = true;
          c.setRuntime({ lastApprovalRequest: host.clock.now() });
          publish(events.approvalNeeded, () => ({ client: c.view(), timeoutMs: c.settings.approvalDelay, approvedByDefault: c.settings.approvedByDefault }));
          host.changed(c, "LastApprovalRequest");
          host.emit({ type: "need-approval", client: c.view(), timeout: c.settings.approvalDelay, approvedByDefault: c.settings.approvedByDefault });
          // A listener may have approved or denied right away (D-Bus does);
          // that must count now, not after the delay.
          if (c.approved !== null || !c.runtime.enabled) continue;
        }
        const started = host.clock.elapsed();
        // Whether the delay ran out, from its own timer: the clock's time
        // and its timers may round apart by a millisecond, and a wait
        // measured short went round again.
        const ranOut = await this.#waitForChange(c, delay, signal, wait);
        if (wait?.superseded) return { give: false, reason: "superseded" };
        const elapsed = host.clock.elapsed() - started;
        if (ranOut || elapsed >= delay) {
          if (signal.aborted) return { give: false, reason: "aborted" };
          if (!c.settings.approvedByDefault) return this.#refuse(c, "approval_timeout");
          if (!c.runtime.enabled) continue;
          break;
        }
        delay -= elapsed;
      }
      // Approved: no longer one of the client's waits.
      if (wait) c.approvalWaits?.delete(wait);
      // The secret may still be sealed. Its opening settles it
      // (or a secret set meanwhile replaces it), and notifies.
      while (secretToOpen(c.settings.secret)) {
        // Asked for again: the client may have been enabled since the first.
        host.secretWanted(c);
        await this.#waitForChange(c, SEALED_RECHECK_MS, signal);
        if (signal.aborted) return { give: false, reason: "aborted" };
        if (!host.isCurrent(c)) return { give: false, reason: "removed" };
        if (!c.runtime.enabled) return this.#refuse(c, "disabled");
      }
      return { give: true, secret: c.settings.secret };
    } finally {
      if (wait) c.approvalWaits?.delete(wait);
      if (approvalRequired) this.#setPending(c, c.approvalsPending - 1);
    }
  }

  /** A new wait of `c`'s, the newest; the oldest is closed if MAX_APPROVAL_WAITS wait already. */
  #queueWait(c: ClientRecord): ApprovalWait {
    const waits = (c.approvalWaits ??= new Set());
    if (waits.size >= MAX_APPROVAL_WAITS) {
      // A Set iterates in insertion order: the first is the oldest.
      const oldest = waits.values().next().value!;
      waits.delete(oldest);
      oldest.superseded = true;
      oldest.wake?.();
    }
    const wait: ApprovalWait = { superseded: false, wake: null };
    waits.add(wait);
    return wait;
  }

  /** Approves or denies `c`'s connections for approval_duration. */
  approve(c: ClientRecord, approved: boolean): void {
    c.approved = approved;
    c.approvedReset?.cancel();
    c.approvedReset = this.#host.clock.setTimeoutWith(approvalLapsed, c.settings.approvalDuration, c);
    c.notify();
  }

  cancel(c: ClientRecord): void {
    c.approvedReset?.cancel();
  }

  #refuse(c: ClientRecord, reason: Refusal): SecretDecision {
    this.#host.emit({ type: "rejected", client: c.view(), reason });
    return { give: false, reason };
  }

  /** Resolves true when `ms` ran out, false on a change of `c`, an abort or `wait`'s wake first. */
  #waitForChange(c: ClientRecord, ms: number, signal: AbortSignal, wait: ApprovalWait | null = null): Promise<boolean> {
    return new Promise((resolve) => {
      let ranOut = false;
      const done = (): void => {
        timer.cancel();
        c.waiters?.delete(done);
        signal.removeEventListener("abort", done);
        if (wait) wait.wake = null;
        resolve(ranOut);
      };
      if (wait) wait.wake = done;
      const timer = this.#host.clock.setTimeout(() => {
        ranOut = true;
        done();
      }, ms);
      (c.waiters ??= new Set()).add(done);
      signal.addEventListener("abort", done);
    });
  }

  #setPending(c: ClientRecord, n: number): void {
    const before = c.approvalPending();
    const waitedHere = c.approvalsPending > 0;
    c.approvalsPending = n;
    if (before !== c.approvalPending()) this.#host.changed(c, "ApprovalPending");
    if (waitedHere && n === 0) this.#host.emit({ type: "approval-wait-ended", client: c.view() });
  }

  /**
   * A connection of `c` waits for approval on `server` of the fleet
   * (`request`), or no longer does (null): shown as ApprovalPending and,
   * for a new request, NeedApproval, as if it waited here.
   */
  elsewhere(c: ClientRecord, server: string, request: PendingRequest | null): void {
    const before = c.approvalPending();
    if (request) (c.pendingElsewhere ??= new Map()).set(server, request);
    else if (!c.pendingElsewhere?.delete(server)) return;
    if (before !== c.approvalPending()) this.#host.changed(c, "ApprovalPending");
    if (request) this.#host.emit({ type: "need-approval", client: c.view(), timeout: request.timeout, approvedByDefault: request.approvedByDefault });
  }
}

/** approval_duration has passed since approve(): the client asks again. */
function approvalLapsed(c: ClientRecord): void {
  c.approved = null;
  c.approvedReset = null;
}
