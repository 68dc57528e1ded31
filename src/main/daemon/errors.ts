// Errors of the daemon's own layer (settings, privileges, pid
// file, detaching) that a caller may act on: one class per failure, each
// with its `name` set and a stable `code` from DaemonErrorCode. Tests and
// main.ts match on `code`, never on message text. The engine's errors are
// in src/tls/errors.ts, the configuration files' in src/main/config/errors.ts.

import { CodedError } from "../../errors.js";

export type DaemonErrorCode =
  /** No port and no socket while Zeroconf is off: nothing to listen on. */
  | "MANDOS_NEEDS_PORT"
  /** debuglevel names no log level. */
  | "MANDOS_BAD_DEBUGLEVEL"
  /** metrics is not HOST:PORT, [IPV6]:PORT or :PORT. */
  | "MANDOS_BAD_METRICS_ADDRESS"
  /** priority is not a GnuTLS priority string we can serve with (tls/priority.ts). */
  | "MANDOS_BAD_PRIORITY"
  /** etcd options given without their partner (etcd_cert without etcd_key, etcd_user without etcd_password_file). */
  | "MANDOS_ETCD_OPTIONS"
  /** servicename or interface holds a NUL character, which D-Bus (Avahi) cannot carry. */
  | "MANDOS_BAD_TEXT"
  /** setuid/setgid failed for a reason other than not being root. */
  | "MANDOS_SETUID"
  /** The pid file cannot be opened or written. */
  | "MANDOS_PIDFILE"
  /** The detached daemon did not report ready. */
  | "MANDOS_DAEMON_START";

export class SettingsError extends CodedError<Extract<DaemonErrorCode, "MANDOS_NEEDS_PORT" | "MANDOS_BAD_DEBUGLEVEL" | "MANDOS_BAD_METRICS_ADDRESS" | "MANDOS_BAD_PRIORITY" | "MANDOS_ETCD_OPTIONS" | "MANDOS_BAD_TEXT">> {}

export class PrivilegeError extends CodedError<"MANDOS_SETUID"> {
  constructor(message: string, options?: ErrorOptions) {
    super("MANDOS_SETUID", message, options);
  }
}

export class PidFileError extends CodedError<"MANDOS_PIDFILE"> {
  constructor(message: string, options?: ErrorOptions) {
    super("MANDOS_PIDFILE", message, options);
  }
}

export class DaemonStartError extends CodedError<"MANDOS_DAEMON_START"> {
  constructor(message: string) {
    super("MANDOS_DAEMON_START", message);
  }
}
