// The client settings that may change while the server runs, in one table:
// which ClientSettings field each is, its clients.conf option
// (mandos-clients.conf(5) OPTIONS), its D-Bus property (DBUS-API
// "Properties"), and what kind of value it holds, which says how it is
// compared, read from D-Bus and saved. Registry.update(), the SIGHUP reload,
// the state file and the D-Bus properties all walk this table, so a new
// runtime setting is one row here.
//
// Row order is the order of the state file's "config" and "current"
// objects (docs/STATE.md); do not reorder rows.

import type { ClientSettings } from "./settings.js";

/** The D-Bus property names of a client, as changed-property events name them. */
export type ClientProperty =
  | "ApprovalDelay" | "ApprovalDuration" | "ApprovalPending" | "ApprovedByDefault"
  | "Checker" | "CheckerRunning" | "Created" | "Enabled" | "Expires" | "ExtendedTimeout"
  | "Fingerprint" | "Host" | "Interval" | "KeyID" | "LastApprovalRequest" | "LastCheckedOK"
  | "LastCheckerStatus" | "LastEnabled" | "Name" | "Secret" | "Timeout";

/**
 * How a value is compared and carried:
 *   string, boolean: compared with ===, D-Bus "s" / "b", saved as JSON;
 *   duration: milliseconds, compared with ===, D-Bus "t", saved as a JSON number;
 *   bytes: a Buffer, compared by content, D-Bus "ay" (write-only), saved sealed
 *          apart from the others (the state file's "secret").
 */
export type SettingKind = "string" | "boolean" | "duration" | "bytes";

export const RUNTIME_SETTINGS = [
  { field: "host", option: "host", property: "Host", kind: "string" },
  { field: "timeout", option: "timeout", property: "Timeout", kind: "duration" },
  { field: "extendedTimeout", option: "extended_timeout", property: "ExtendedTimeout", kind: "duration" },
  { field: "interval", option: "interval", property: "Interval", kind: "duration" },
  { field: "checker", option: "checker", property: "Checker", kind: "string" },
  { field: "approvedByDefault", option: "approved_by_default", property: "ApprovedByDefault", kind: "boolean" },
  { field: "approvalDelay", option: "approval_delay", property: "ApprovalDelay", kind: "duration" },
  { field: "approvalDuration", option: "approval_duration", property: "ApprovalDuration", kind: "duration" },
  // `secfile` sets the same field; the reference names the property after `secret`.
  { field: "secret", option: "secret", property: "Secret", kind: "bytes" },
  // Applied through enable/disable, which start or stop the client's timers.
  { field: "enabled", option: "enabled", property: "Enabled", kind: "boolean" },
] as const satisfies ReadonlyArray<{ field: keyof ClientSettings; option: string; property: ClientProperty; kind: SettingKind }>;

export type SettingRow = (typeof RUNTIME_SETTINGS)[number];
export type RuntimeSetting = SettingRow["field"];
/** The settings kept as plain JSON values in the state file (all but the sealed secret). */
export type PlainSetting = Exclude<SettingRow, { kind: "bytes" }>["field"];

export const PLAIN_SETTINGS: readonly PlainSetting[] = RUNTIME_SETTINGS.flatMap((r) => (r.kind === "bytes" ? [] : [r.field]));

/** Settings an operator may change at run time (D-Bus Set, mandos-ctl, SIGHUP). */
export type ClientPatch = { [K in RuntimeSetting]?: ClientSettings[K] };

export function sameSetting(kind: SettingKind, a: unknown, b: unknown): boolean {
  return kind === "bytes" ? Buffer.isBuffer(a) && Buffer.isBuffer(b) && a.equals(b) : a === b;
}

/** The settings of `after` that differ from `before`, as a patch. */
export function settingsDiff(before: ClientSettings, after: ClientSettings): ClientPatch {
  const patch: Record<string, unknown> = {};
  for (const row of RUNTIME_SETTINGS) {
    if (!sameSetting(row.kind, before[row.field], after[row.field])) patch[row.field] = after[row.field];
  }
  return patch as ClientPatch;
}
