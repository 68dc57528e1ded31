// How the fleet's client state lies in etcd (docs/ETCD.md "Keys"): one key
// per client and D-Bus property, so that two servers changing different
// properties of one client at once both win, and one key per client for
// the last approval decision; and one key per client and server while a
// connection waits there for approval. Pure: no I/O, no clock.
//
//   PREFIX clients/NAME/PROPERTY  -> {"value": V, "at": ms, "by": server}
//   PREFIX approvals/NAME         -> {"value": true|false, "at": ms, "by": server}
//   PREFIX pending/NAME/SERVER    -> {"timeout": ms, "approvedByDefault": bool}
//                                    (bound to SERVER's lease: gone with it)
//   PREFIX journal/SERVER/SEQ     -> {"v": 1, "at": ms, "by": server,
//                                     "changes": [[KEY, V, at, by], ...]}
//
// A journal record carries many clients/ changes in one put: a server in
// a reboot wave writes one record per flush instead of a key per secret,
// and folds its records into the clients/ keys once the wave is over
// (fleet-state.ts). KEY is the clients/ key without the prefix. A reader
// treats each change of a record as a put of its key.
//
// NAME is URI-encoded (a client name may hold "/"). `at` is the time of
// the change on the server that made it: a server catching up after an
// etcd outage keeps whichever of its own change and etcd's is newer. `by`
// lets a server skip its own writes coming back through the watch.
// The Secret property has no row: no secret is ever written to etcd.
//
// The layout only grows (docs/ETCD.md "Upgrading a fleet server by
// server"): a reader ignores keys, fields and value types it does not
// know and deletes none of them (its own change of a known key replaces
// the value whole), so a later release may add keys and fields but never
// change an existing one's type or meaning.
// Journal records alone carry a format ("v"), because a server deletes
// them as it folds.
//
// A server reads and watches these directories only (FLEET_DIRS), each its
// own range: keys elsewhere under the prefix (a later release's directory,
// or not the fleet's at all) are counted and said, never read, so that
// however much they hold they cost the fleet nothing (docs/ETCD.md "What
// etcd holds, and when it is wrong").

import type { ClientProperty, ClientView, PendingRequest, SharedClientState } from "../clients/contract.js";
import type { ClientRuntime } from "../clients/contract.js";
import { RUNTIME_SETTINGS } from "../clients/runtime-settings.js";
import { MAX_CLIENT_TIME_MS } from "../config/duration.js";
import { isCheckerStatus, isDuration, isText, isTimeMs } from "../clients/values.js";

type Json = string | number | boolean | null;
type Runtime = { -readonly [K in keyof SharedClientState["runtime"]]: SharedClientState["runtime"][K] };
type Settings = Record<string, Json>;

/** A shared property: how it is read from a client, which values of it are good, and where one goes back. */
interface SharedRow {
  readonly property: ClientProperty;
  read(c: ClientView): Json;
  /** Whether `value`, read from etcd, is one this property may hold (type and range). */
  valid(value: unknown): boolean;
  /** Puts a valid value read from etcd into `runtime` or `settings`. */
  write(value: Json, runtime: Runtime, settings: Settings): void;
}

/**
 * The latest time a shared timestamp may hold (MAX_CLIENT_TIME_MS): a time
 * from etcd beyond it is refused (an Expires of 1e300 written by hand once
 * stopped every server of the fleet, and each again at its start).
 */
export const MAX_SHARED_TIME_MS = MAX_CLIENT_TIME_MS;

const time = (d: Date | null): number | null => (d === null ? null : d.getTime());
const isTime = (v: unknown): v is number | null => v === null || isTimeMs(v);

function runtimeTime(property: ClientProperty, field: "lastEnabled" | "expires" | "lastCheckedOk" | "lastApprovalRequest", of: (c: ClientView) => Date | null): SharedRow {
  return {
    property,
    read: (c) => time(of(c)),
    valid: isTime,
    write: (v, r) => {
      r[field] = v as number | null;
    },
  };
}

const SETTING_ROWS: SharedRow[] = RUNTIME_SETTINGS.flatMap((row): SharedRow[] => {
  if (row.kind === "bytes" || row.field === "enabled") return [];
  const field = row.field;
  const kind = row.kind;
  return [{
    property: row.property,
    read: (c) => c[field],
    valid: (v) => (kind === "duration" ? isDuration(v) : kind === "string" ? isText(v) : typeof v === kind),
    write: (v, _r, s) => {
      s[field] = v;
    },
  }];
});

export const SHARED_ROWS: readonly SharedRow[] = [
  {
    property: "Enabled",
    read: (c) => c.enabled,
    valid: (v) => typeof v === "boolean",
    write: (v, r) => {
      r.enabled = v as boolean;
    },
  },
  runtimeTime("LastEnabled", "lastEnabled", (c) => c.lastEnabled),
  runtimeTime("Expires", "expires", (c) => c.expires),
  runtimeTime("LastCheckedOK", "lastCheckedOk", (c) => c.lastCheckedOk),
  runtimeTime("LastApprovalRequest", "lastApprovalRequest", (c) => c.lastApprovalRequest),
  {
    property: "LastCheckerStatus",
    read: (c) => c.lastCheckerStatus,
    valid: isCheckerStatus,
    write: (v, r) => {
      r.lastCheckerStatus = v as ClientRuntime["lastCheckerStatus"];
    },
  },
  ...SETTING_ROWS,
];

export const SHARED_PROPERTIES: readonly ClientProperty[] = SHARED_ROWS.map((r) => r.property);

const ROW_OF = new Map<string, SharedRow>(SHARED_ROWS.map((r) => [r.property, r]));

export function isShared(property: ClientProperty): boolean {
  return ROW_OF.has(property);
}

export interface Stamped {
  readonly value: Json;
  /** Milliseconds since the epoch, on the server that made the change; 0: a seed from a local copy, older than anything. */
  readonly at: number;
  readonly by: string;
  /**
   * Approvals only: how long the deciding server kept the decision before
   * it could write it (milliseconds, on its own clock; an outage makes it
   * long). A reader measures it against approval_duration and its own
   * waits, never one server's clock against another's (fleet-state.ts,
   * #inForce).
   */
  readonly held?: number;
}

/**
 * The directories of the fleet under its prefix, in etcd's order (a key's
 * bytes): every key this release writes is in one of them. A later
 * release adds directories (the layout only grows); a server of this one
 * neither reads nor watches them.
 */
export const FLEET_DIRS = ["approvals/", "clients/", "journal/", "pending/", "servers/"] as const;

/** The live servers' keys (checker-share.ts reads and watches them; fleet-state.ts the others). */
export function serversDir(prefix: string): string {
  return `${prefix}servers/`;
}

/** The fleet's directory `key` is in (one of FLEET_DIRS), or null. */
export function fleetDirOf(prefix: string, key: string): (typeof FLEET_DIRS)[number] | null {
  if (!key.startsWith(prefix)) return null;
  const slash = key.indexOf("/", prefix.length);
  const dir = slash < 0 ? "" : key.slice(prefix.length, slash + 1);
  return (FLEET_DIRS as readonly string[]).includes(dir) ? (dir as (typeof FLEET_DIRS)[number]) : null;
}

export function clientKey(prefix: string, name: string, property: ClientProperty): string {
  return `${prefix}clients/${encodeURIComponent(name)}/${property}`;
}

export function approvalKey(prefix: string, name: string): string {
  return `${prefix}approvals/${encodeURIComponent(name)}`;
}

/** Where `server` says a connection of client `name` waits there for approval. */
export function pendingKey(prefix: string, name: string, server: string): string {
  return `${prefix}pending/${encodeURIComponent(name)}/${encodeURIComponent(server)}`;
}

export type { PendingRequest };

export function encodePending(p: PendingRequest): string {
  return JSON.stringify({ timeout: p.timeout, approvedByDefault: p.approvedByDefault });
}

export function decodePending(text: string): PendingRequest | null {
  try {
    const v = JSON.parse(text) as Partial<PendingRequest>;
    if (typeof v !== "object" || v === null || typeof v.approvedByDefault !== "boolean") return null;
    if (!isDuration(v.timeout)) return null;
    return { timeout: v.timeout, approvedByDefault: v.approvedByDefault };
  } catch {
    return null;
  }
}

/** The start of every journal record's key. */
export function journalDir(prefix: string): string {
  return `${prefix}journal/`;
}

/** Where `server` writes its journal record number `seq` (zero-padded, so that keys sort in order). */
export function journalKey(prefix: string, server: string, seq: number): string {
  return `${journalDir(prefix)}${encodeURIComponent(server)}/${seq.toString().padStart(12, "0")}`;
}

/** A value a shared key may hold: JSON's scalars (state file and journal alike carry nothing else). */
export function isScalar(v: unknown): v is Json {
  return v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean";
}

/** One change a journal record carries: the clients/ key (under the prefix) and its stamped value. */
export interface JournalChange {
  readonly key: string;
  readonly value: Stamped;
}

export interface JournalRecord {
  /** When the record was written, on its server's clock (how long it has waited for its fold). */
  readonly at: number;
  readonly by: string;
  readonly changes: readonly JournalChange[];
}

/**
 * The journal record format this release writes ("v"); records of earlier
 * releases have none. A record of a later format is written by a later
 * mandos-ts in a fleet being upgraded server by server: this server
 * applies the changes of it that it can read, and never folds or deletes
 * it (readJournal's `later`), so that nothing it cannot read is lost; a later
 * server folds it. Every later release must keep "v" where it is.
 */
export const JOURNAL_VERSION = 1;

/** `changes` keys are full keys; the record holds them without `prefix`. */
export function encodeJournal(prefix: string, record: JournalRecord): string {
  return JSON.stringify({
    v: JOURNAL_VERSION,
    at: record.at,
    by: record.by,
    changes: record.changes.map((c) => [c.key.slice(prefix.length), c.value.value, c.value.at, c.value.by]),
  });
}

/** A journal record read from etcd, with full keys; null if it is not one. Changes that are not clients/ keys, or malformed, are dropped. */
export function decodeJournal(prefix: string, text: string): JournalRecord | null {
  return readJournal(prefix, text).record;
}

/** A journal record's text parsed once: decodeJournal's record, and whether it declares a format later than JOURNAL_VERSION. */
export function readJournal(prefix: string, text: string): { readonly record: JournalRecord | null; readonly later: boolean } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { record: null, later: false };
  }
  const format = (v as { v?: unknown } | null)?.v;
  return { record: journalOf(prefix, v), later: typeof format === "number" && format > JOURNAL_VERSION };
}

function journalOf(prefix: string, v: unknown): JournalRecord | null {
  if (typeof v !== "object" || v === null) return null;
  const { at, by, changes } = v as { at?: unknown; by?: unknown; changes?: unknown };
  if (typeof at !== "number" || typeof by !== "string" || !Array.isArray(changes)) return null;
  const out: JournalChange[] = [];
  for (const c of changes as unknown[]) {
    if (!Array.isArray(c) || c.length !== 4) continue;
    const [key, value, cAt, cBy] = c as [unknown, unknown, unknown, unknown];
    if (typeof key !== "string" || typeof cAt !== "number" || !Number.isFinite(cAt) || typeof cBy !== "string") continue;
    if (!isScalar(value)) continue;
    const full = prefix + key;
    if (parseKey(prefix, full)?.kind !== "client") continue;
    out.push({ key: full, value: { value, at: cAt, by: cBy } });
  }
  return { at, by, changes: out };
}

/** What a key under `prefix` names, or null for a key that is not ours. */
export type ParsedKey =
  | { readonly kind: "client"; readonly name: string; readonly property: ClientProperty }
  | { readonly kind: "approval"; readonly name: string }
  | { readonly kind: "pending"; readonly name: string; readonly server: string }
  | { readonly kind: "journal"; readonly server: string };

export function parseKey(prefix: string, key: string): ParsedKey | null {
  if (!key.startsWith(prefix)) return null;
  const parts = key.slice(prefix.length).split("/");
  try {
    if (parts.length === 3 && parts[0] === "clients" && ROW_OF.has(parts[2]!)) {
      return { kind: "client", name: decodeURIComponent(parts[1]!), property: parts[2] as ClientProperty };
    }
    if (parts.length === 2 && parts[0] === "approvals") return { kind: "approval", name: decodeURIComponent(parts[1]!) };
    if (parts.length === 3 && parts[0] === "pending") return { kind: "pending", name: decodeURIComponent(parts[1]!), server: decodeURIComponent(parts[2]!) };
    if (parts.length === 3 && parts[0] === "journal" && /^[0-9]+$/.test(parts[2]!)) return { kind: "journal", server: decodeURIComponent(parts[1]!) };
  } catch {
    // a malformed %-escape: not a key we wrote
  }
  return null;
}

/** Each shared property's bit in PresentKeys. */
const BIT_OF = new Map<string, number>(SHARED_PROPERTIES.map((p, i) => [p, 1 << i]));

/**
 * The keys one read of the fleet found, for what a server then seeds and
 * forgets: a client's shared properties as a bit each under its name
 * (10,000 clients: 10,000 entries instead of 140,000 key strings, ~12 MiB
 * at a joining server's start-up), any other key as itself. Answers as a
 * Set of the keys would, exactly: a client key counts as its bit only in
 * the form clientKey writes.
 */
export class PresentKeys {
  readonly #prefix: string;
  readonly #clients = new Map<string, number>();
  readonly #others = new Set<string>();

  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  /** Notes `key`; `parsed` is parseKey's answer for it, when the caller has it. */
  add(key: string, parsed: ParsedKey | null = parseKey(this.#prefix, key)): void {
    const client = this.#canonicalClient(key, parsed);
    if (client) this.#clients.set(client.name, (this.#clients.get(client.name) ?? 0) | BIT_OF.get(client.property)!);
    else this.#others.add(key);
  }

  has(key: string): boolean {
    const client = this.#canonicalClient(key, parseKey(this.#prefix, key));
    return client ? this.hasClient(client.name, client.property) : this.#others.has(key);
  }

  /** Whether clientKey(prefix, name, property) was found. */
  hasClient(name: string, property: ClientProperty): boolean {
    return ((this.#clients.get(name) ?? 0) & (BIT_OF.get(property) ?? 0)) !== 0;
  }

  /** `parsed` when it is a client key in the very form clientKey writes. */
  #canonicalClient(key: string, parsed: ParsedKey | null): Extract<ParsedKey, { kind: "client" }> | null {
    return parsed?.kind === "client" && clientKey(this.#prefix, parsed.name, parsed.property) === key ? parsed : null;
  }
}

export function encodeValue(v: Stamped): string {
  return JSON.stringify(v);
}

export function decodeValue(text: string): Stamped | null {
  try {
    const v = JSON.parse(text) as Partial<Stamped>;
    if (typeof v !== "object" || v === null || typeof v.at !== "number" || typeof v.by !== "string" || !("value" in v)) return null;
    return v as Stamped;
  } catch {
    return null;
  }
}

/** Whether `value` is one `property` may hold (its type, and a range that keeps every time made from it a valid date). */
export function validValue(property: ClientProperty, value: unknown): boolean {
  return ROW_OF.get(property)?.valid(value) ?? false;
}

/** The value of `property` for client `c`, as it goes into etcd. */
export function readProperty(c: ClientView, property: ClientProperty): Json {
  return ROW_OF.get(property)!.read(c);
}

/** Gathers values read from etcd into the state the registry adopts. */
export class StateBuilder {
  readonly #runtime: Runtime = {};
  readonly #settings: Settings = {};
  #empty = true;

  /** Takes `value` for `property`; one it may not hold (validValue) is ignored, and false returned. */
  add(property: ClientProperty, value: unknown): boolean {
    const row = ROW_OF.get(property);
    if (!row?.valid(value)) return false;
    row.write(value as Json, this.#runtime, this.#settings);
    this.#empty = false;
    return true;
  }

  get empty(): boolean {
    return this.#empty;
  }

  build(): SharedClientState {
    return { runtime: { ...this.#runtime }, settings: { ...this.#settings } as SharedClientState["settings"] };
  }
}
