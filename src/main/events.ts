// The facts the server publishes, on named node:diagnostics_channel
// channels: the one interface that logging, D-Bus signals, the state saver,
// tests, the metrics, /health and the audit log subscribe to. The core calls
// `publish` and knows nothing of who listens; a channel without subscribers
// costs one property read (`hasSubscribers`).
//
// Channels are process-wide, as undici's are: a subscriber sees the facts of
// every server in the process (one, in the daemon). Payloads are plain data,
// never a secret and never key material (a key ID or fingerprint is public).
// docs/EVENTS.md lists every channel with its payload and who publishes it.

import { channel as namedChannel } from "node:diagnostics_channel";
import type { ClientProperty, ClientView, Refusal } from "./clients/contract.js";
import type { GnutlsError } from "../tls/index.js";

/** A channel whose messages are all of type T. */
export interface Channel<T> {
  readonly name: string;
  readonly hasSubscribers: boolean;
  publish(message: T): void;
  subscribe(onMessage: (message: T) => void): void;
  unsubscribe(onMessage: (message: T) => void): void;
}

function channel<T>(name: string): Channel<T> {
  const c = namedChannel(name);
  // diagnostics_channel hands subscribers (message, name); ours take the message.
  const wrapped = new WeakMap<(message: T) => void, (message: unknown) => void>();
  return {
    name,
    get hasSubscribers() {
      return c.hasSubscribers;
    },
    publish: (message) => c.publish(message),
    subscribe(onMessage) {
      const fn = (message: unknown): void => onMessage(message as T);
      wrapped.set(onMessage, fn);
      c.subscribe(fn);
    },
    unsubscribe(onMessage) {
      const fn = wrapped.get(onMessage);
      if (fn) c.unsubscribe(fn);
    },
  };
}

/** Why a peer did not get a secret. The values are metric label values too. */
export type RefusalReason =
  | "unknown_key" // no client has the peer's key ID (or fingerprint)
  | Refusal // the registry's: disabled; denied (by an operator or approved_by_default); approval_timeout
  | "removed" // the client was removed (SIGHUP, D-Bus) while its request waited
  | "superseded" // newer connections of the client came while it waited for approval (clients/approval.ts)
  | "bad_version" // the protocol line was missing, too long or not version 1
  | "tls_error"; // the handshake failed (alert, malformed or tampered message)

/** How a connection ended. */
export type ConnectionOutcome =
  | "secret-sent"
  | "refused" // see the client-rejected / client-not-found event for the reason
  | "bad-version"
  | "tls-error"
  | "timeout"
  | "peer-closed"
  | "socket-error"
  | "shutdown"
  | "evicted" // waiting for a slot, closed for another source's connection at the open connections cap
  | "internal-error";

/** The protocol step a connection is in (serve/connection.ts has the transitions). */
export type ConnectionStage = "AwaitingLine" | "AwaitingSlot" | "Handshaking" | "AwaitingDecision" | "Sending";

/** One TCP connection, as the events about it name it. */
export interface ConnectionRef {
  /** Unique within the process, increasing. */
  readonly id: number;
  /** As Node reports it: a link-local peer with its zone (`fe80::1%eth0`). */
  readonly address: string;
  readonly port: number;
  /** What it counts against for admission and log budgets (serve/source.ts). */
  readonly source: string;
  /** The reference's form: `('::1', 41234, 0, 0)`, `('fe80::1', 41234, 0, 3)` (the link's index) or `('127.0.0.1', 41234)`. */
  readonly label: string;
}

export interface ConnectionAccepted { readonly connection: ConnectionRef }
export interface ConnectionClosed {
  readonly connection: ConnectionRef;
  readonly outcome: ConnectionOutcome;
  /** The step it was in when it ended. */
  readonly stage: ConnectionStage;
  /** From accept to close, in milliseconds. */
  readonly durationMs: number;
  /**
   * Free text for logs, never a secret: what timed out ("waiting for the
   * version line"), the TLS or socket error, how the peer closed.
   */
  readonly detail?: string;
  /**
   * A handshake that failed (a TLS error, the peer gone): the error the
   * reference's GnuTLS fails with in its place, whose words it logs.
   */
  readonly gnutls?: GnutlsError;
  /**
   * With `gnutls`: the peer had chosen TLS 1.2 (a legacy client), so the
   * reference it meets runs GnuTLS 3.5, whose words differ for some errors.
   */
  readonly legacy?: true;
}
/** A connection was closed at accept, before any byte was read. */
export interface ConnectionNotAdmitted {
  /** The peer's address ("?" if the socket had none left). */
  readonly address: string;
  /** Our address it arrived on (what --interface judges). */
  readonly localAddress: string;
  /**
   * "source-limit": its source already holds its maximum of connections;
   * "throttled": its source failed too often of late (serve/admission.ts);
   * "open-limit": the server holds as many connections open as it may
   * (serve/limits.ts, openConnectionsAllowed).
   */
  readonly why: "source-limit" | "throttled" | "not-on-interface" | "open-limit";
}
export interface VersionLine {
  readonly connection: ConnectionRef;
  /**
   * The line as received (without its terminator), undecoded control
   * characters and all (escape before logging); null when it ran past
   * `maxBytes` and was not read whole.
   */
  readonly line: string | null;
  readonly accepted: boolean;
  /** Why it was refused (the reference's wording where it has one). */
  readonly reason?: string;
  /** The longest line the server reads. */
  readonly maxBytes: number;
}
export interface HandshakeDone {
  readonly connection: ConnectionRef;
  /** The modern peer's key ID; "" for a legacy peer. */
  readonly keyId: string;
  /** A legacy (TLS 1.2, OpenPGP) peer's fingerprint, 40 upper-case hex digits; absent for a modern peer. */
  readonly fingerprint?: string;
  /** From accept to the verified Finished, in milliseconds. */
  readonly durationMs: number;
  /**
   * Time the handshake waited on the handshake runner, in milliseconds:
   * key shares and tasks, queueing for a worker plus the work itself
   * (inline, just the work).
   */
  readonly runnerWaitMs: number;
}
export interface SecretSent {
  readonly connection: ConnectionRef;
  readonly client: string;
  readonly keyId: string;
  /** A legacy peer's fingerprint (then keyId is ""). */
  readonly fingerprint?: string;
  /** From accept to the secret written, in milliseconds. */
  readonly durationMs: number;
}
export interface ClientNotFound {
  readonly connection: ConnectionRef;
  readonly keyId: string;
  /** A legacy peer's fingerprint (then keyId is ""). */
  readonly fingerprint?: string;
  /**
   * Whether the handshake was done (mandos:handshake:done came before
   * this): false when the key was in no client's settings and the
   * handshake stopped there (src/tls/known-keys.ts), a modern peer's
   * before its signature was checked, a legacy peer's (a fingerprint)
   * once its ServerKeyExchange signature verified.
   */
  readonly proven: boolean;
}
export interface ClientRejected {
  readonly connection: ConnectionRef;
  readonly client: string;
  readonly keyId: string;
  /** A legacy peer's fingerprint (then keyId is ""). */
  readonly fingerprint?: string;
  readonly reason: Exclude<RefusalReason, "unknown_key" | "bad_version" | "tls_error">;
}
/**
 * A known client's request ended with neither its secret nor a refusal:
 * the connection failed (the peer went away, the server shut down) while
 * it waited for approval, or while the secret was being written.
 */
export interface SecretAbandoned {
  readonly connection: ConnectionRef;
  readonly client: string;
  readonly keyId: string;
  /** A legacy peer's fingerprint (then keyId is ""). */
  readonly fingerprint?: string;
  /** How the connection ended. */
  readonly outcome: "peer-closed" | "socket-error" | "tls-error" | "shutdown" | "timeout" | "internal-error";
  /**
   * `AwaitingDecision`: nothing of the secret was sent. `Sending`: it was
   * written toward the peer, and the connection failed before all of it
   * and close_notify were handed to the kernel: the peer may have it.
   */
  readonly stage: "AwaitingDecision" | "Sending";
}

export interface ClientEvent { readonly client: ClientView }
export interface ClientDisabled {
  readonly client: ClientView;
  /**
   * "timeout": no successful checker for too long (or a shorter timeout set
   * at run time had already passed); "operator": D-Bus, reload or API;
   * "removed": on its way out of the registry (a client-removed follows);
   * "shared": another server of the fleet disabled it (../fleet/, etcd).
   */
  readonly why: "timeout" | "operator" | "removed" | "shared";
}
export interface ClientPropertyChanged { readonly client: ClientView; readonly property: ClientProperty }
export interface CheckerStarted { readonly client: ClientView; readonly command: string }
export interface CheckerCompleted {
  readonly client: ClientView;
  readonly command: string;
  /** Exit code, or -1 for an abnormal exit. */
  readonly exitCode: number;
  /** The wait(2) status. */
  readonly waitStatus: number;
  /** The shell could not be started (fork failing under a process limit): the errno code; `exitCode` is then 127. */
  readonly startError?: string;
}
/** A checker started later than its next one was due: it waited for a place among those that start at once. */
export interface CheckerLate {
  readonly client: ClientView;
  /** How long it waited, in milliseconds. */
  readonly waitedMs: number;
  /** Checkers still waiting. */
  readonly waiting: number;
}
/** A running checker was killed (disabled, removed, D-Bus CheckerRunning = false, shutdown). */
export interface CheckerStopped { readonly client: ClientView }
/** The checker command could not be expanded (mandos-clients.conf(5) EXPANSION); no checker ran. */
export interface CheckerCommandInvalid {
  readonly client: ClientView;
  /** The command before expansion. */
  readonly checker: string;
  readonly reason: string;
}
export interface ApprovalNeeded {
  readonly client: ClientView;
  /** Milliseconds until the default decision. */
  readonly timeoutMs: number;
  readonly approvedByDefault: boolean;
}
export interface StateSaved {
  readonly path: string;
  /** Size of the file written. */
  readonly bytes: number;
  /** Collecting, writing and syncing, in milliseconds. */
  readonly durationMs: number;
  /**
   * The file this save replaced was not the one this server last wrote
   * (nor the one it started with): another process wrote it meanwhile, a
   * second server given the same state directory, say.
   */
  readonly replacedOther: boolean;
}
export interface StateSaveFailed {
  readonly path: string;
  /** The errno code (EACCES, ENOSPC...) or, without one, the error's message. */
  readonly reason: string;
}

/** The audit log lost a record (`write`: not written to its file) or could not reopen its file (`reopen`, at SIGHUP). */
export interface AuditFailed {
  /** "open": the first open (at start) failed; "reopen": a later one; "write": a record was lost. */
  readonly what: "write" | "open" | "reopen";
  /** The errno code (ENOSPC, EACCES...) or, without one, the error's message. */
  readonly reason: string;
}

/** Every channel the server publishes on. */
export const events = {
  connectionAccepted: channel<ConnectionAccepted>("mandos:connection:accepted"),
  connectionClosed: channel<ConnectionClosed>("mandos:connection:closed"),
  connectionNotAdmitted: channel<ConnectionNotAdmitted>("mandos:connection:not-admitted"),
  versionLine: channel<VersionLine>("mandos:connection:version-line"),
  handshakeDone: channel<HandshakeDone>("mandos:handshake:done"),
  secretSent: channel<SecretSent>("mandos:secret:sent"),
  clientNotFound: channel<ClientNotFound>("mandos:client:not-found"),
  clientRejected: channel<ClientRejected>("mandos:client:rejected"),
  secretAbandoned: channel<SecretAbandoned>("mandos:secret:abandoned"),
  clientAdded: channel<ClientEvent>("mandos:client:added"),
  clientRemoved: channel<ClientEvent>("mandos:client:removed"),
  clientEnabled: channel<ClientEvent>("mandos:client:enabled"),
  clientDisabled: channel<ClientDisabled>("mandos:client:disabled"),
  clientPropertyChanged: channel<ClientPropertyChanged>("mandos:client:property-changed"),
  checkerStarted: channel<CheckerStarted>("mandos:checker:started"),
  checkerCompleted: channel<CheckerCompleted>("mandos:checker:completed"),
  checkerStopped: channel<CheckerStopped>("mandos:checker:stopped"),
  checkerLate: channel<CheckerLate>("mandos:checker:late"),
  checkerCommandInvalid: channel<CheckerCommandInvalid>("mandos:checker:command-invalid"),
  approvalNeeded: channel<ApprovalNeeded>("mandos:approval:needed"),
  stateSaved: channel<StateSaved>("mandos:state:saved"),
  stateSaveFailed: channel<StateSaveFailed>("mandos:state:save-failed"),
  auditFailed: channel<AuditFailed>("mandos:audit:failed"),
} as const;

export type EventName = keyof typeof events;
