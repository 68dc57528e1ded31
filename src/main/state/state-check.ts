// What a state file must hold to be restored (docs/STATE.md, "Format"):
// its shape, and each client's values with the types and ranges the
// registry, the state file and D-Bus can carry. A file ours wrote always
// passes; one edited by hand or damaged may not, and a value that passed
// JSON.parse but not this (a `created` of "yesterday", a timeout given as
// "PT5M") once crashed the server a moment after it began listening, and
// again at every start. Pure: no I/O.

import { isCheckerStatus, isDuration, isText, isTimeMs } from "../clients/values.js";
import { RUNTIME_SETTINGS } from "../clients/runtime-settings.js";

type Check = (v: unknown) => boolean;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isBoolean: Check = (v) => typeof v === "boolean";
/** An ISO 8601 time, as the state file writes them, within the range of values.ts. */
const isTime: Check = (v) => typeof v === "string" && isTimeMs(Date.parse(v));
const orNull = (check: Check): Check => (v) => v === null || v === undefined || check(v);
const isSignal: Check = (v) => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 255;

const KIND_CHECK: Record<string, Check> = { string: isText, duration: isDuration, boolean: isBoolean };

/** The settings of "config" and "current", each with its check (the keys, then the table's plain settings). */
const SETTING_CHECKS: ReadonlyArray<readonly [string, Check]> = [
  ["keyId", isText],
  ["fingerprint", isText],
  ...RUNTIME_SETTINGS.filter((r) => r.kind !== "bytes").map((r) => [r.field, KIND_CHECK[r.kind]!] as const),
];

/** The runtime values; a missing optional one is read as its default (files of earlier versions). */
const RUNTIME_CHECKS: ReadonlyArray<readonly [string, Check]> = [
  ["enabled", isBoolean],
  ["created", isTime],
  ["last_enabled", orNull(isTime)],
  ["expires", orNull(isTime)],
  ["last_checked_ok", orNull(isTime)],
  ["last_approval_request", orNull(isTime)],
  ["last_checker_status", orNull(isCheckerStatus)],
  ["last_checker_signal", orNull(isSignal)],
];

/** What storedClientProblem found in one client's entry. */
export interface StoredClientCheck {
  /** Why the entry cannot be restored at all; null when it can. */
  readonly problem: string | null;
  /**
   * Settings (not `enabled`) whose saved value is not one the server can
   * hold: a release before 2026-12 took durations clients.conf no longer
   * takes (up to 2^53 ms over D-Bus, negative ones from clients.conf).
   * Restored from clients.conf instead, with a warning (readState).
   */
  readonly unusable: readonly string[];
}

/**
 * Why one client's entry cannot be restored, naming the value (never
 * quoting it: a value may be anything, a secret pasted by mistake among
 * them), and the settings whose saved values clients.conf's replace. A
 * setting "config" lacks is taken from clients.conf at restore, so
 * "current" may lack it too. `enabled` decides whether a machine gets its
 * secret: a bad one is a problem, never replaced by clients.conf's.
 */
export function storedClientProblem(entry: unknown): StoredClientCheck {
  const fail = (problem: string): StoredClientCheck => ({ problem, unusable: [] });
  if (!isObject(entry)) return fail("not an object");
  for (const part of ["config", "current", "runtime"] as const) {
    if (!isObject(entry[part])) return fail(`"${part}" is missing or not an object`);
  }
  const config = entry.config as Record<string, unknown>;
  const current = entry.current as Record<string, unknown>;
  const unusable: string[] = [];
  for (const [field, check] of SETTING_CHECKS) {
    if (config[field] === undefined) continue;
    if (check(config[field]) && check(current[field])) continue;
    if (field === "enabled") return fail(`${check(config[field]) ? "current" : "config"}.enabled is missing or not a valid value`);
    unusable.push(field);
  }
  const runtime = entry.runtime as Record<string, unknown>;
  for (const [field, check] of RUNTIME_CHECKS) {
    if (!check(runtime[field])) return fail(`runtime.${field} is missing or not a valid value`);
  }
  for (const field of ["secret", "referenceSecret"] as const) {
    if (entry[field] !== undefined && typeof entry[field] !== "string") return fail(`${field} is not a string`);
  }
  return { problem: null, unusable };
}

/** Clients whose saved settings cannot be held, and which (storedClientProblem's `unusable`). */
export type UnusableSettings = Array<readonly [string, readonly string[]]>;

/**
 * Why a parsed file cannot be restored (its shape, then the first bad
 * client); null when it can. `unusable`, if given, gets the clients with
 * settings that cannot be held, for dropUnusableSettings: each client is
 * looked at once (20,000 clients' times parsed twice took a start 0.1 s).
 */
export function stateFileProblem(parsed: Record<string, unknown>, unusable?: UnusableSettings): string | null {
  if (!isObject(parsed.clients)) return "\"clients\" is missing or not an object";
  if (parsed.removed !== undefined && !(Array.isArray(parsed.removed) && parsed.removed.every((n) => typeof n === "string"))) {
    return "\"removed\" is not a list of names";
  }
  if (parsed.fleetUnsent !== undefined && !Array.isArray(parsed.fleetUnsent)) return "\"fleetUnsent\" is not a list";
  if (parsed.importedPickle !== undefined && !(typeof parsed.importedPickle === "string" && /^[0-9a-f]{64}$/.test(parsed.importedPickle))) {
    return "\"importedPickle\" is not a SHA-256 digest";
  }
  for (const [name, entry] of Object.entries(parsed.clients)) {
    const check = storedClientProblem(entry);
    if (check.problem !== null) return `client ${clientName(name)}: ${check.problem}`;
    if (check.unusable.length > 0) unusable?.push([name, check.unusable]);
  }
  return null;
}

/** A client's name in a message: quoted, cut short. */
export function clientName(name: string): string {
  return JSON.stringify(name.slice(0, 64));
}

/**
 * Takes out of a file that passed stateFileProblem the settings whose
 * saved values cannot be held (the `unusable` it found), so that the
 * restore takes clients.conf's; what it took out, per client, is
 * returned for a warning.
 */
export function dropUnusableSettings(parsed: { clients: Record<string, unknown> }, unusable: UnusableSettings): UnusableSettings {
  for (const [name, fields] of unusable) {
    const { config, current } = parsed.clients[name] as { config: Record<string, unknown>; current: Record<string, unknown> };
    for (const field of fields) {
      delete config[field];
      delete current[field];
    }
  }
  return unusable;
}
