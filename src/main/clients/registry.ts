// The in-memory registry: the one owner of client state, following the
// reference's Client and ClientDBus classes (mandos(8), mandos-clients.conf(5)
// CHECKING and APPROVAL). Everything that changes a client goes through
// here and comes out in order, as events to subscribers (D-Bus, the state
// saver) and as facts on the mandos:client:*, mandos:checker:* and
// mandos:approval:* channels (../events.ts; logging subscribes there).
//
// Its parts, each acting on the records the registry hands it:
//   - checker.ts: each enabled client's checker schedule and processes;
//   - approval.ts: connections waiting for approval;
//   - expiry.ts: each enabled client's disable timer at `expires`.
// Invariant: once start() has run, a client is enabled iff it has a
// disableTimer or expires is null because of a zero-length race; a
// disabled client has no timers and no running checker. Before start() no
// client has a checker scheduled.

import { systemClock, type Clock } from "../clock.js";
import type { Logger } from "../daemon/log.js";
import { events } from "../events.js";
import { ApprovalGate } from "./approval.js";
import { CheckerRunner, checkerCommand, expandChecker, MAX_CONCURRENT_CHECKERS, shellSpawner, type CheckerSpawner } from "./checker.js";
import type { ClientCounts, ClientProperty, ClientRuntime, ClientView, PendingRequest, Registry, RegistryEvent, SecretDecision, SharedClientState } from "./contract.js";
import { Expiry } from "./expiry.js";
import { ClientRecord, freshRuntime, publish, type ClientHost, type DisableCause } from "./record.js";
import { RUNTIME_SETTINGS, type ClientPatch } from "./runtime-settings.js";
import type { ClientSettings } from "./settings.js";
import { EMPTY_KEY_ID } from "./settings.js";
import { secretToOpen } from "./secret-to-open.js";
import { ownedCopy } from "../../tls/record.js";
import { CodedError } from "../../errors.js";

export { MAX_CONCURRENT_CHECKERS, shellSpawner, freshRuntime };
export type { CheckerProcess } from "./record.js";
export type { ClientRuntime } from "./contract.js";
export type { CheckerSpawner };

export interface RegistryDeps {
  /** Only for a subscriber that throws; the registry's facts go to the channels. */
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly spawner?: CheckerSpawner;
  /** Uniform in [0, 1). */
  readonly random?: () => number;
  readonly maxCheckers?: number;
}

export class ClientRegistry implements Registry {
  readonly #clients = new Map<string, ClientRecord>();
  readonly #byKeyId = new Map<string, ClientRecord>();
  #keyIdGeneration = 0;
  readonly #byFingerprint = new Map<string, ClientRecord>();
  readonly #listeners = new Set<(event: RegistryEvent) => void>();
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #expiry: Expiry;
  readonly #checkers: CheckerRunner;
  readonly #approvals: ApprovalGate;
  #started = false;
  #ownsChecker: (name: string) => boolean = () => true;
  #secretWanted: (name: string) => void = () => undefined;

  constructor(settings: readonly ClientSettings[], deps: RegistryDeps, restored?: ReadonlyMap<string, ClientRuntime>) {
    this.#logger = deps.logger;
    this.#clock = deps.clock ?? systemClock;
    const host: ClientHost = {
      clock: this.#clock,
      isCurrent: (c) => this.#clients.get(c.settings.name) === c,
      changed: (c, ...properties) => this.#changed(c, ...properties),
      scheduleStarted: (c) => this.#announce(c, ["Expires"], true),
      emit: (event) => this.#emit(event),
      disable: (c, cause) => this.#disable(c, cause),
      checkedOk: (c) => this.#checkedOk(c),
      ownsChecker: (c) => this.#ownsChecker(c.settings.name),
      secretWanted: (c) => this.#secretWanted(c.settings.name),
    };
    this.#expiry = new Expiry(host);
    this.#checkers = new CheckerRunner(host, this.#expiry, {
      spawner: deps.spawner ?? shellSpawner,
      random: deps.random ?? Math.random,
      maxCheckers: deps.maxCheckers ?? MAX_CONCURRENT_CHECKERS,
    });
    this.#approvals = new ApprovalGate(host);
    const now = this.#clock.now();
    for (const s of settings) this.#add(s, restored?.get(s.name) ?? freshRuntime(s, now), false);
  }

  /**
   * Starts checkers and expiry timers: main.ts calls it once the clients
   * are on D-Bus (as the reference runs init_checker after exporting each
   * client, before its main loop), so that no checker signal precedes its
   * client's object.
   */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    for (const c of this.#clients.values()) if (c.runtime.enabled) this.#checkers.init(c, true, true);
  }

  /**
   * The server stops: no checker starts and no client expires from now
   * on, as none does once the reference's main loop has quit. Connections
   * finishing in the stop's grace are still served (a secret, an
   * approval); stop() ends the rest.
   */
  stopChecking(): void {
    this.#started = false;
    this.#checkers.halt();
    this.#expiry.halt();
    for (const c of this.#clients.values()) {
      this.#checkers.cancel(c);
      this.#expiry.cancel(c);
    }
  }

  /** Stops every timer and checker (shutdown). Client state is kept for the last save. */
  stop(): void {
    this.stopChecking();
    for (const c of this.#clients.values()) this.#approvals.cancel(c);
  }

  // ------------------------------------------------------------ queries

  /** How many clients there are. */
  get size(): number {
    return this.#clients.size;
  }

  list(): ClientView[] {
    return [...this.#clients.values()].map((c) => c.view());
  }

  counts(): ClientCounts {
    let enabled = 0;
    let awaitingApproval = 0;
    let checkersRunning = 0;
    let secretSealed = 0;
    for (const c of this.#clients.values()) {
      if (c.runtime.enabled) enabled++;
      if (c.approvalPending()) awaitingApproval++;
      if (c.checkerRunning()) checkersRunning++;
      if (secretToOpen(c.settings.secret)) secretSealed++;
    }
    return { enabled, disabled: this.#clients.size - enabled, awaitingApproval, checkersRunning, checkersWaiting: this.#checkers.waiting, secretSealed };
  }

  get(name: string): ClientView | undefined {
    return this.#clients.get(name)?.view();
  }

  has(name: string): boolean {
    return this.#clients.has(name);
  }

  byKeyId(keyId: string): ClientView | undefined {
    if (keyId === "" || keyId === EMPTY_KEY_ID) return undefined;
    return this.#byKeyId.get(keyId)?.view();
  }

  *keyIds(): IterableIterator<string> {
    yield* this.#byKeyId.keys();
    yield* this.#byFingerprint.keys();
  }

  get keyIdGeneration(): number {
    return this.#keyIdGeneration;
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

  /** One client's settings and runtime, for a save; read, never keep or change. */
  entry(name: string): { readonly settings: ClientSettings; readonly runtime: ClientRuntime } | undefined {
    return this.#clients.get(name);
  }

  subscribe(listener: (event: RegistryEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // --------------------------------------------------- connection path

  requestSecret(name: string, key: string, _address: string, signal: AbortSignal): Promise<SecretDecision> {
    const c = this.#clients.get(name);
    // A key that is no longer the client's is a client removed: while it
    // waits for approval the same holds (a reload that changes the key
    // replaces the client's record, and the wait ends "removed").
    if (!c || key === "" || (key !== c.settings.keyId && key !== c.settings.fingerprint)) return Promise.resolve({ give: false, reason: "removed" });
    return this.#approvals.requestSecret(c, signal);
  }

  secretDelivered(name: string): void {
    const c = this.#clients.get(name);
    if (!c) return;
    this.#expiry.bump(c, c.settings.extendedTimeout);
    this.#emit({ type: "got-secret", client: c.view() });
  }

  /**
   * The clients whose secret is still sealed (secret-to-open.ts), in the
   * registry's order, with the placeholder each one holds.
   */
  secretsToOpen(): Array<{ readonly name: string; readonly placeholder: Buffer }> {
    const out: Array<{ name: string; placeholder: Buffer }> = [];
    for (const c of this.#clients.values()) if (secretToOpen(c.settings.secret)) out.push({ name: c.settings.name, placeholder: c.settings.secret });
    return out;
  }

  /** Who opens the sealed secrets: told when a connection waits for one, to open it next. */
  onSecretWanted(wanted: (name: string) => void): void {
    this.#secretWanted = wanted;
  }

  /** Whether `name` still holds `placeholder`: not removed, and no secret set since. */
  holdsPlaceholder(name: string, placeholder: Buffer): boolean {
    return this.#clients.get(name)?.settings.secret === placeholder;
  }

  /**
   * `name`'s sealed secret is open (`secret`), or did not open (null: then
   * clients.conf's is in effect, as the reference takes it when gpg fails).
   * Ignored when the client no longer holds `placeholder`. Wakes the
   * connections waiting for it; emits secret-opened, for the state saver.
   */
  secretOpened(name: string, placeholder: Buffer, secret: Buffer | null): void {
    const c = this.#clients.get(name);
    const sealed = secretToOpen(placeholder);
    if (!c || !sealed || c.settings.secret !== placeholder) return;
    // Most open to clients.conf's (unless one was set at run time): that Buffer is then shared, not copied.
    const same = secret === null || secret.equals(sealed.configSecret);
    c.setSettings({ secret: same ? sealed.configSecret : ownedCopy(secret) });
    c.notify();
    this.#emit({ type: "secret-opened", client: c.view(), opened: secret !== null });
  }

  notFound(keyId: string, address: string): void {
    this.#emit({ type: "client-not-found", keyId, address });
  }

  // ----------------------------------------------------------- control

  enable(name: string): void {
    const c = this.#must(name);
    if (c.runtime.enabled) return;
    c.setRuntime({ enabled: true, lastEnabled: this.#clock.now() });
    publish(events.clientEnabled, () => ({ client: c.view() }));
    this.#changed(c, "Enabled", "LastEnabled");
    // Before start() (a fleet's start-up sync enables clients), start()
    // schedules it with the others, once the clients are on D-Bus.
    if (this.#started) this.#checkers.init(c, false);
    c.notify();
  }

  disable(name: string): void {
    this.#disable(this.#must(name), "operator");
  }

  /**
   * The operator's StartChecker: one checker now, the client enabled or
   * not. A command that cannot be expanded is said (checker:command-invalid)
   * and thrown (MANDOS_CHECKER_INVALID), for the operator who asked, as the
   * reference's D-Bus call fails with the KeyError or ValueError.
   */
  startChecker(name: string): void {
    const c = this.#must(name);
    const expanded = expandChecker(c);
    if (typeof expanded !== "string") {
      throw new RegistryError("MANDOS_CHECKER_INVALID", `the checker of ${name} cannot be expanded: ${expanded.reason}`);
    }
    this.#checkers.start(c, true);
  }

  stopChecker(name: string): void {
    this.#checkers.kill(this.#must(name));
  }

  checkedOk(name: string): void {
    this.#checkedOk(this.#must(name));
  }

  bumpTimeout(name: string): void {
    const c = this.#must(name);
    this.#expiry.bump(c, c.settings.timeout);
  }

  approve(name: string, approved: boolean): void {
    const c = this.#must(name);
    this.#approvals.approve(c, approved);
    this.#emit({ type: "approval-given", client: c.view(), approved });
  }

  /**
   * Applies state another server of the fleet decided (../fleet/): as an
   * operator's update, enable or disable would, and announced as property
   * changes, but the expiry is the one given, not restarted here.
   */
  adopt(name: string, shared: SharedClientState): void {
    const c = this.#clients.get(name);
    if (!c) return;
    if (Object.keys(shared.settings).length > 0) this.update(name, shared.settings);
    const s = shared.runtime;
    if (s.enabled === false) this.#disable(c, "shared");
    if (s.enabled === true && !c.runtime.enabled) this.enable(name);
    // Read after enabling or disabling, which replace it.
    const r = c.runtime;
    const patch: { -readonly [K in keyof ClientRuntime]?: ClientRuntime[K] } = {};
    const changed: ClientProperty[] = [];
    const take = <K extends "lastEnabled" | "lastCheckedOk" | "lastApprovalRequest" | "lastCheckerStatus" | "lastCheckerSignal">(key: K, property: ClientProperty | null): void => {
      const value = s[key];
      if (value === undefined || value === r[key]) return;
      patch[key] = value as ClientRuntime[K];
      if (property) changed.push(property);
    };
    take("lastEnabled", "LastEnabled");
    take("lastCheckedOk", "LastCheckedOK");
    take("lastCheckerStatus", "LastCheckerStatus");
    take("lastCheckerSignal", null);
    take("lastApprovalRequest", "LastApprovalRequest");
    // A disabled client has no expiry, whatever an older write said.
    const expires = s.expires !== undefined && r.enabled && s.expires !== r.expires ? s.expires : undefined;
    if (expires !== undefined) patch.expires = expires;
    if (Object.keys(patch).length > 0) c.setRuntime(patch);
    if (expires !== undefined) {
      // Before start() no timers (the invariant above): start() gives every
      // enabled client its expiry, once the clients are on D-Bus.
      if (this.#started) this.#expiry.arm(c);
      changed.push("Expires");
    }
    if (changed.length > 0) this.#changed(c, ...changed);
  }

  /** A connection of `name` waits for approval on `server` of the fleet, or no longer does (null); see ApprovalGate.elsewhere. */
  approvalPendingElsewhere(name: string, server: string, request: PendingRequest | null): void {
    const c = this.#clients.get(name);
    if (c) this.#approvals.elsewhere(c, server, request);
  }

  /** Applies the settings of `patch` (RUNTIME_SETTINGS, in its order); `enabled` last, as enable() or disable(). */
  update(name: string, patch: ClientPatch): void {
    this.#update(this.#must(name), patch, false);
  }

  /**
   * A SIGHUP reload's changes to `name` (clients.conf values that changed):
   * as update(), but a new timeout or interval starts the client's
   * checker schedule and expiry again as a restart does (the reference's
   * init_checker, random start), rather than as D-Bus's setters move them.
   * The setters' rule (the expiry moved by the timeout's change, disabled
   * at once if that has passed) assumes the expiry is the last success's
   * plus the timeout; after a start, an enable or a secret sent it is not,
   * and a lowered timeout disabled clients that had just checked OK, a
   * raised interval clients whose next checker came after their expiry.
   */
  reloaded(name: string, patch: ClientPatch): void {
    this.#update(this.#must(name), patch, true);
  }

  #update(c: ClientRecord, patch: ClientPatch, reload: boolean): void {
    const name = c.settings.name;
    const s = c.settings;
    const next: Record<string, unknown> = {};
    const changed: ClientProperty[] = [];
    for (const row of RUNTIME_SETTINGS) {
      const value = patch[row.field];
      if (value === undefined || row.field === "enabled") continue;
      // A secret is stored and announced even when the bytes are the same:
      // the state file keys its sealed copy on the Buffer, and every D-Bus
      // Set of Secret is announced (as invalidated).
      if (row.kind === "bytes") {
        // A copy of its own size: Buffer.from would cut it from Node's
        // shared 8 KiB chunks and keep one whole for as long as it lives.
        next[row.field] = ownedCopy(value as Buffer);
      } else {
        if (value === s[row.field]) continue;
        next[row.field] = value;
      }
      changed.push(row.property);
    }
    if (changed.length > 0) c.setSettings(next as Partial<ClientSettings>);
    // A connection waiting for a sealed secret takes the one set instead.
    if (changed.includes("Secret")) c.notify();
    let expiry: boolean | null = null;
    if (reload) {
      // A restart's schedule, announced after the settings (init announces Expires).
      if ((changed.includes("Interval") || changed.includes("Timeout")) && this.#started && c.runtime.enabled) {
        this.#changed(c, ...changed.splice(0));
        this.#checkers.init(c, true);
      }
    } else {
      // The reference restarts the checker schedule with a new interval.
      if (changed.includes("Interval")) this.#checkers.reschedule(c);
      // The reference moves the expiry by the timeout's change, disabling at
      // once if it passed: the moved Expires is announced either way, before
      // the disabling's.
      expiry = c.settings.timeout === s.timeout ? null : this.#expiry.timeoutChanged(c, s.timeout);
      if (expiry !== null) changed.push("Expires");
    }
    if (changed.length > 0) this.#changed(c, ...changed);
    if (expiry === false) this.#disable(c, "timeout");
    if (patch.enabled === true) this.enable(name);
    if (patch.enabled === false) this.disable(name);
  }

  /** A reload's clients.conf object for a client that has the same settings in effect: its record keeps that one (ClientRecord.share). */
  share(settings: ClientSettings): void {
    this.#clients.get(settings.name)?.share(settings);
  }

  /**
   * As the reference's RemoveClient: the client leaves first and is then
   * disabled, so that its disabling (announced to subscribers as for any
   * client) comes when has(name) is already false; D-Bus says nothing of it.
   */
  remove(name: string): void {
    const c = this.#must(name);
    this.#clients.delete(name);
    // Another client with the same key (a configuration warned about)
    // answers for it from now on, as the reference's search finds it.
    if (this.#byKeyId.get(c.settings.keyId) === c) {
      this.#byKeyId.delete(c.settings.keyId);
      const next = this.#firstWith((o) => o.settings.keyId === c.settings.keyId);
      if (next) this.#byKeyId.set(c.settings.keyId, next);
      this.#keyIdGeneration++;
    }
    if (this.#byFingerprint.get(c.settings.fingerprint) === c) {
      this.#byFingerprint.delete(c.settings.fingerprint);
      const next = this.#firstWith((o) => o.settings.fingerprint === c.settings.fingerprint);
      if (next) this.#byFingerprint.set(c.settings.fingerprint, next);
      this.#keyIdGeneration++;
    }
    this.#disable(c, "removed");
    c.notify();
    publish(events.clientRemoved, () => ({ client: c.view() }));
    this.#emit({ type: "client-removed", client: c.view() });
  }

  /** Adds a client at run time (SIGHUP reload). */
  add(settings: ClientSettings, runtime?: ClientRuntime): void {
    const c = this.#add(settings, runtime ?? freshRuntime(settings, this.#clock.now()), true);
    if (this.#started && c.runtime.enabled) this.#checkers.init(c, true, true);
  }

  /** Which clients' scheduled checkers this server runs (../fleet/ shares them out in a fleet); null: all. */
  setCheckerOwnership(owns: ((name: string) => boolean) | null): void {
    this.#ownsChecker = owns ?? (() => true);
  }

  /** The checker command after runtime expansion; null (and mandos:checker:command-invalid) if it cannot be formatted. */
  checkerCommand(name: string): string | null {
    const c = this.#clients.get(name);
    return c ? checkerCommand(c) : null;
  }

  // ---------------------------------------------------------- internals

  #add(settings: ClientSettings, runtime: ClientRuntime, announce: boolean): ClientRecord {
    const c = new ClientRecord(settings, runtime);
    this.#clients.set(settings.name, c);
    // Two clients with one key: the first keeps it, as the reference's
    // search in its clients' order finds the first.
    if (settings.keyId !== "" && !this.#byKeyId.has(settings.keyId)) {
      this.#byKeyId.set(settings.keyId, c);
      this.#keyIdGeneration++;
    }
    if (settings.fingerprint !== "" && !this.#byFingerprint.has(settings.fingerprint)) {
      this.#byFingerprint.set(settings.fingerprint, c);
      this.#keyIdGeneration++;
    }
    publish(events.clientAdded, () => ({ client: c.view() }));
    if (announce) this.#emit({ type: "client-added", client: c.view() });
    return c;
  }

  /** The first client, in the order they were added, that `match` accepts. */
  #firstWith(match: (c: ClientRecord) => boolean): ClientRecord | undefined {
    for (const c of this.#clients.values()) if (match(c)) return c;
    return undefined;
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
    this.#announce(c, properties, false);
  }

  /** #changed, saying whether the change is a schedule's start (RegistryEvent property-changed's scheduleStart). */
  #announce(c: ClientRecord, properties: readonly ClientProperty[], scheduleStart: boolean): void {
    const channel = events.clientPropertyChanged;
    if (this.#listeners.size === 0 && !channel.hasSubscribers) return;
    const client = c.view();
    for (const property of properties) {
      this.#emit(scheduleStart ? { type: "property-changed", client, property, scheduleStart } : { type: "property-changed", client, property });
      if (channel.hasSubscribers) channel.publish({ client, property });
    }
  }

  /**
   * In the reference's order (its Client.disable): Expires (if it was set),
   * CheckerRunning (if one ran), Enabled, each announced as it changes.
   */
  #disable(c: ClientRecord, cause: DisableCause): void {
    if (!c.runtime.enabled) return;
    publish(events.clientDisabled, () => ({ client: c.view(), why: cause }));
    this.#expiry.cancel(c);
    if (c.runtime.expires !== null) {
      c.setRuntime({ expires: null });
      this.#changed(c, "Expires");
    }
    this.#checkers.cancel(c);
    c.setRuntime({ enabled: false });
    this.#changed(c, "Enabled");
    c.notify();
  }

  #checkedOk(c: ClientRecord): void {
    // As the reference's properties: a change is announced only when the value changed.
    const statusChanged = c.runtime.lastCheckerStatus !== 0;
    c.setRuntime({ lastCheckedOk: this.#clock.now(), lastCheckerStatus: 0, lastCheckerSignal: null });
    if (statusChanged) this.#changed(c, "LastCheckedOK", "LastCheckerStatus");
    else this.#changed(c, "LastCheckedOK");
    this.#expiry.bump(c, c.settings.timeout);
  }
}

export class RegistryError extends CodedError<"MANDOS_NO_SUCH_CLIENT" | "MANDOS_CHECKER_INVALID"> {}

export function createRegistry(settings: readonly ClientSettings[], deps: RegistryDeps, restored?: ReadonlyMap<string, ClientRuntime>): ClientRegistry {
  return new ClientRegistry(settings, deps, restored);
}
