// One client as the registry holds it, and what the registry's parts
// (checker.ts, approval.ts, expiry.ts) may ask of the registry. The record
// is the registry's; the parts change it only through the calls here and
// the fields they are named after.

import type { Clock, TimerHandle } from "../clock.js";
import type { ClientProperty, ClientRuntime, ClientView, PendingRequest, RegistryEvent } from "./contract.js";
import type { ClientSettings } from "./settings.js";
import { settingsDiff } from "./runtime-settings.js";
import { secretToOpen } from "./secret-to-open.js";
import type { Channel, ClientDisabled } from "../events.js";

/** A running checker (checker.ts spawns it). */
export interface CheckerProcess {
  kill(): void;
}

/** A connection waiting for its client's approval (approval.ts); `wake` ends its wait early, set while it waits. */
export interface ApprovalWait {
  superseded: boolean;
  wake: (() => void) | null;
}

export class ClientRecord {
  /**
   * clients.conf's own object until something changes a setting, then a
   * new one each time (setSettings); frozen, never changed in place.
   */
  #settings: ClientSettings;
  #runtime: ClientRuntime;
  // approval.ts
  approved: boolean | null = null;
  approvedReset: TimerHandle | null = null;
  /** Connections waiting here. */
  approvalsPending = 0;
  // The next three are made when first needed: most clients never have a
  // connection waiting, and an empty Map or Set costs ~150 bytes, 3 MiB
  // for 10,000 clients.
  /** Servers of a fleet where a connection of this client waits (../fleet/), by server. */
  pendingElsewhere: Map<string, PendingRequest> | null = null;
  /** Connections waiting for a change of approval. */
  waiters: Set<() => void> | null = null;
  /** Connections waiting for a decision, oldest first (at most MAX_APPROVAL_WAITS). */
  approvalWaits: Set<ApprovalWait> | null = null;
  // checker.ts
  checker: CheckerProcess | null = null;
  checkerQueued = false;
  checkerTimer: TimerHandle | null = null;
  // expiry.ts
  disableTimer: TimerHandle | null = null;
  /** When disableTimer fires (clock.elapsed() time); it may be before `expiresAt`, see Expiry.arm. */
  disableDue = 0;
  /** `runtime.expires` on the monotonic clock (clock.elapsed() time), as of the last Expiry.arm. */
  expiresAt = 0;

  constructor(settings: ClientSettings, runtime: ClientRuntime) {
    this.#settings = frozen(settings);
    this.#runtime = frozen(runtime);
  }

  get settings(): ClientSettings {
    return this.#settings;
  }

  get runtime(): ClientRuntime {
    return this.#runtime;
  }

  /** Replaces the settings with a copy that has `patch`'s values. */
  setSettings(patch: Partial<ClientSettings>): void {
    this.#settings = Object.freeze({ ...this.#settings, ...patch });
  }

  /**
   * Takes `settings` in place of its own when they hold the same values:
   * after a reload, clients.conf's new objects, so that the previous
   * file's (and its secrets' chunks) can go.
   */
  share(settings: ClientSettings): void {
    const s = this.#settings;
    // settingsDiff compares every runtime setting, `enabled` and the secret's bytes included.
    if (s === settings || s.name !== settings.name || s.keyId !== settings.keyId || s.fingerprint !== settings.fingerprint) return;
    // A sealed secret's placeholder is not clients.conf's secret, whatever its bytes.
    if (secretToOpen(s.secret)) return;
    if (Object.keys(settingsDiff(s, settings)).length > 0) return;
    this.#settings = frozen(settings);
  }

  /** Replaces the runtime state with a copy that has `patch`'s values. */
  setRuntime(patch: Partial<ClientRuntime>): void {
    // Written out, in freshRuntime's order: every runtime then has one
    // shape with its fields in the object (a spread of a frozen object
    // made some with their fields in a second array).
    const r = this.#runtime;
    const p = patch;
    this.#runtime = Object.freeze({
      enabled: p.enabled === undefined ? r.enabled : p.enabled,
      created: p.created === undefined ? r.created : p.created,
      lastEnabled: p.lastEnabled === undefined ? r.lastEnabled : p.lastEnabled,
      expires: p.expires === undefined ? r.expires : p.expires,
      lastCheckedOk: p.lastCheckedOk === undefined ? r.lastCheckedOk : p.lastCheckedOk,
      lastApprovalRequest: p.lastApprovalRequest === undefined ? r.lastApprovalRequest : p.lastApprovalRequest,
      lastCheckerStatus: p.lastCheckerStatus === undefined ? r.lastCheckerStatus : p.lastCheckerStatus,
      lastCheckerSignal: p.lastCheckerSignal === undefined ? r.lastCheckerSignal : p.lastCheckerSignal,
    });
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
      checkerRunning: this.checkerRunning(),
      approvalPending: this.approvalPending(),
      created: new Date(r.created),
      lastEnabled: date(r.lastEnabled),
      expires: date(r.expires),
      lastCheckedOk: date(r.lastCheckedOk),
      lastApprovalRequest: date(r.lastApprovalRequest),
      lastCheckerStatus: r.lastCheckerStatus,
    };
  }

  /** Its checker runs, or waits for its turn (MAX_CONCURRENT_CHECKERS). */
  checkerRunning(): boolean {
    return this.checker !== null || this.checkerQueued;
  }

  /** A connection of this client waits for approval, here or on another server of the fleet. */
  approvalPending(): boolean {
    return this.approvalsPending > 0 || (this.pendingElsewhere?.size ?? 0) > 0;
  }

  /** Wakes connections waiting for approval (the reference's changedstate). */
  notify(): void {
    if (this.waiters) for (const w of [...this.waiters]) w();
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

/** `o`, frozen: the record keeps the object it is given, never a copy. */
function frozen<T extends object>(o: T): T {
  return Object.isFrozen(o) ? o : Object.freeze(o);
}

/** Why a client was disabled (the payload of mandos:client:disabled). */
export type DisableCause = ClientDisabled["why"];

/** What the registry's parts ask of the registry. */
export interface ClientHost {
  readonly clock: Clock;
  /** `c` is still the registry's client of its name (not removed or replaced). */
  isCurrent(c: ClientRecord): boolean;
  /** Announces changed D-Bus properties of `c`. */
  changed(c: ClientRecord, ...properties: ClientProperty[]): void;
  /** Announces the Expires of `c` set by its checker schedule's start at the server's start or its addition (property-changed's scheduleStart). */
  scheduleStarted(c: ClientRecord): void;
  /** Tells the registry's subscribers (D-Bus, the state saver). */
  emit(event: RegistryEvent): void;
  disable(c: ClientRecord, cause: DisableCause): void;
  /** A checker succeeded, or an operator said so (D-Bus CheckedOK). */
  checkedOk(c: ClientRecord): void;
  /** This server runs `c`'s scheduled checkers (always, unless a fleet shares them out: ../fleet/). */
  ownsChecker(c: ClientRecord): boolean;
  /** A connection of `c` waits for its sealed secret (secret-to-open.ts): open it next. */
  secretWanted(c: ClientRecord): void;
}

/** Publishes on `ch`, building the message only when someone listens. */
export function publish<T>(ch: Channel<T>, message: () => T): void {
  if (ch.hasSubscribers) ch.publish(message());
}
