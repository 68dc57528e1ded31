// The registry's contract: the one owner of client state. The connection
// handler, D-Bus, checkers and persistence all go through this interface and
// react to its events; none of them keeps client state of its own.
// (docs/PROTOCOL.md, "Design rules"; a shared backend on a distributed store would be another
// implementation of this same interface.)

import type { ClientSettings } from "./settings.js";
import type { ClientPatch, ClientProperty } from "./runtime-settings.js";

/**
 * Runtime state that persists (see ../state/state-file.ts); the rest comes
 * from clients.conf. A record's is never changed in place but replaced
 * (record.ts, ClientRecord.setRuntime), frozen, as its settings are: the
 * state file keeps what it last wrote by reference instead of a copy of
 * each client's (10,000 clients: ~3 MiB of heap less).
 */
export interface ClientRuntime {
  readonly enabled: boolean;
  readonly created: number;
  readonly lastEnabled: number | null;
  readonly expires: number | null;
  readonly lastCheckedOk: number | null;
  readonly lastApprovalRequest: number | null;
  readonly lastCheckerStatus: number;
  readonly lastCheckerSignal: number | null;
}

/** A read-only snapshot of one client, named after the D-Bus properties (DBUS-API). */
export interface ClientView {
  readonly name: string;
  readonly keyId: string;
  readonly fingerprint: string;
  readonly host: string;
  /** Milliseconds. */
  readonly timeout: number;
  readonly extendedTimeout: number;
  readonly interval: number;
  readonly approvalDelay: number;
  readonly approvalDuration: number;
  readonly approvedByDefault: boolean;
  /** The checker command before runtime expansion. */
  readonly checker: string;
  readonly enabled: boolean;
  readonly checkerRunning: boolean;
  readonly approvalPending: boolean;
  readonly created: Date;
  readonly lastEnabled: Date | null;
  readonly expires: Date | null;
  readonly lastCheckedOk: Date | null;
  readonly lastApprovalRequest: Date | null;
  /** Exit code of the last checker; -1 abnormal exit; -2 none completed yet. */
  readonly lastCheckerStatus: number;
}

export type { ClientProperty };

export type RegistryEvent =
  | { readonly type: "client-added"; readonly client: ClientView }
  | { readonly type: "client-removed"; readonly client: ClientView }
  | {
      readonly type: "property-changed";
      readonly client: ClientView;
      readonly property: ClientProperty;
      /**
       * The Expires a checker schedule's start gave the client at this
       * server's start, or at its addition by a reload (the reference's
       * init_checker): no event of the client's own. A fleet keeps its live
       * value instead (../fleet/fleet-state.ts).
       */
      readonly scheduleStart?: true;
    }
  | { readonly type: "checker-started"; readonly client: ClientView; readonly command: string }
  | {
      readonly type: "checker-completed";
      readonly client: ClientView;
      /** Exit code, or -1 for an abnormal exit. */
      readonly exitCode: number;
      /** The wait(2) status. */
      readonly waitStatus: number;
      readonly command: string;
    }
  | { readonly type: "got-secret"; readonly client: ClientView }
  | { readonly type: "rejected"; readonly client: ClientView; readonly reason: Refusal }
  | {
      readonly type: "need-approval";
      readonly client: ClientView;
      /** Milliseconds until the default decision. */
      readonly timeout: number;
      readonly approvedByDefault: boolean;
    }
  | { readonly type: "client-not-found"; readonly keyId: string; readonly address: string }
  /** An operator approved or denied (the shared registry tells the other servers; ../fleet/). */
  | { readonly type: "approval-given"; readonly client: ClientView; readonly approved: boolean }
  /** No connection of this client waits for approval on this server any more (a fleet withdraws its pending request; ../fleet/). */
  | { readonly type: "approval-wait-ended"; readonly client: ClientView }
  /** A secret sealed by the Python server was opened, or did not open (clients.conf's then in effect): for the state saver, not for D-Bus. */
  | { readonly type: "secret-opened"; readonly client: ClientView; readonly opened: boolean };

/** Why the registry refused a known client its secret (a rejected event says so too). */
export type Refusal = "disabled" | "denied" | "approval_timeout";

/**
 * What a connection gets when it asks for a client's secret. Besides a
 * refusal, the request can come to nothing: "removed" when no client has
 * that name and key any more (the client was removed or its key changed,
 * before or while it waited), "aborted" when the connection went away,
 * "superseded" when newer connections of the client came while it waited
 * for approval (approval.ts, MAX_APPROVAL_WAITS); no rejected event for any
 * of them.
 */
export type SecretDecision =
  | { readonly give: true; readonly secret: Buffer }
  | { readonly give: false; readonly reason: Refusal | "removed" | "aborted" | "superseded" };

/** What a connection needs of the registry: the lookup, the decision and the outcome. */
export interface SecretSource {
  byKeyId(keyId: string): Pick<ClientView, "name"> | undefined;
  byFingerprint(fingerprint: string): Pick<ClientView, "name"> | undefined;
  requestSecret(name: string, key: string, address: string, signal: AbortSignal): Promise<SecretDecision>;
  secretDelivered(name: string): void;
  notFound(keyId: string, address: string): void;
}

/** How many clients are in each state (the metrics' gauges). */
export interface ClientCounts {
  readonly enabled: number;
  readonly disabled: number;
  /** Clients with a request waiting for approval, here or on another server of the fleet (enabled too). */
  readonly awaitingApproval: number;
  /** Clients whose checker runs or waits for its turn. */
  readonly checkersRunning: number;
  /** Of those, the ones waiting for their turn (checker.ts, MAX_CONCURRENT_CHECKERS). */
  readonly checkersWaiting: number;
  /** Clients whose secret is still the one the Python server sealed, not yet opened (secret-to-open.ts). */
  readonly secretSealed: number;
}

export interface Registry {
  /** All clients, in clients.conf order. */
  list(): ClientView[];
  /** The counts, in one pass and without a view a client (list() builds 10,000 views in ~10 ms). */
  counts(): ClientCounts;
  get(name: string): ClientView | undefined;
  /** O(1), and no view made: false already while a removed client's disabling is announced (remove()). */
  has(name: string): boolean;
  /** O(1). `keyId` must be normalised; the empty-input key ID never matches. */
  byKeyId(keyId: string): ClientView | undefined;
  /**
   * Every client's key ID and OpenPGP fingerprint (the empty ones left out),
   * for the known-key table (serve/known-keys.ts): what a modern or a legacy
   * peer may prove.
   */
  keyIds(): IterableIterator<string>;
  /** Changes whenever a key ID or fingerprint is added or removed. */
  readonly keyIdGeneration: number;
  /** O(1). `fingerprint` must be normalised. */
  byFingerprint(fingerprint: string): ClientView | undefined;

  /**
   * A connection from `address` proved it holds `key` (a key ID, or a legacy
   * peer's fingerprint), which a lookup found to be client `name`'s, and asks
   * for the secret. "removed" if no client `name` holds `key` any more (the
   * lookup, on a serve thread, may predate a reload that changed the key:
   * the secret is then not this peer's). Resolves once the decision is made: at once when enabled
   * and no approval is needed; after approval, denial or the approval timeout
   * otherwise (mandos-clients.conf(5) APPROVAL). Aborting `signal` (the peer
   * went away) withdraws the request. Once the promise settles no listener
   * of the registry's is left on `signal`: a caller may reuse a signal
   * that was not aborted (serve-threads.ts does).
   */
  requestSecret(name: string, key: string, address: string, signal: AbortSignal): Promise<SecretDecision>;
  /** The secret reached the peer: emits got-secret, bumps the expiry by `extendedTimeout`. */
  secretDelivered(name: string): void;
  /** A peer with an unknown key ID connected: emits client-not-found. */
  notFound(keyId: string, address: string): void;

  enable(name: string): void;
  disable(name: string): void;
  startChecker(name: string): void;
  stopChecker(name: string): void;
  /** As if a checker had succeeded now (D-Bus CheckedOK). */
  checkedOk(name: string): void;
  /** Restarts the timeout (mandos-ctl --bump-timeout). */
  bumpTimeout(name: string): void;
  /** Approves or denies the connections now waiting for approval. */
  approve(name: string, approved: boolean): void;
  update(name: string, patch: ClientPatch): void;
  remove(name: string): void;

  /** Events, in the order the changes happened. Returns an unsubscribe function. */
  subscribe(listener: (event: RegistryEvent) => void): () => void;
}

/** A connection waiting for approval on another server of a fleet (../fleet/): what its NeedApproval said. */
export interface PendingRequest {
  /** Milliseconds until the default decision, from the request. */
  readonly timeout: number;
  readonly approvedByDefault: boolean;
}

/**
 * Client state decided on another server of a fleet (../fleet/): the
 * fields present are applied, the others left as they are. Never a secret.
 */
export interface SharedClientState {
  readonly runtime: Partial<Omit<ClientRuntime, "created">>;
  readonly settings: Omit<ClientPatch, "secret" | "enabled">;
}

export type { ClientPatch, ClientSettings };
