// Errors of the D-Bus interface, with stable codes, and the D-Bus error
// names we answer method calls with.

import { CodedError } from "../../errors.js";

export const DBUS_ERROR = {
  connectFailed: "MANDOS_DBUS_CONNECT_FAILED",
  nameTaken: "MANDOS_DBUS_NAME_TAKEN",
  disconnected: "MANDOS_DBUS_DISCONNECTED",
  remote: "MANDOS_DBUS_REMOTE_ERROR",
  marshal: "MANDOS_DBUS_MARSHAL",
  /** A message longer than the bus takes (connection.ts, BUS_MAX_MESSAGE_BYTES): not sent. */
  tooLarge: "MANDOS_DBUS_MESSAGE_TOO_LARGE",
  /** A call given a time limit had no answer within it. */
  timeout: "MANDOS_DBUS_TIMEOUT",
} as const;

export type DbusErrorCode = (typeof DBUS_ERROR)[keyof typeof DBUS_ERROR];

export class DbusError extends CodedError<DbusErrorCode> {
  /** A remote error's D-Bus name ("org.freedesktop.Avahi.CollisionError"); "" otherwise. */
  readonly errorName: string;
  constructor(code: DbusErrorCode, message: string, errorName = "") {
    super(code, message);
    this.errorName = errorName;
  }
}

/**
 * A failed method call: `errorName` goes on the wire. The standard names of
 * the D-Bus specification where one fits (the Python reference answers with
 * dbus-python's generated "org.freedesktop.DBus.Python.<Exception>" names).
 */
export class MethodError extends Error {
  readonly errorName: string;
  constructor(errorName: string, message: string) {
    super(message);
    this.name = "MethodError";
    this.errorName = errorName;
  }
}

export const ERROR_NAME = {
  unknownMethod: "org.freedesktop.DBus.Error.UnknownMethod",
  unknownObject: "org.freedesktop.DBus.Error.UnknownObject",
  unknownProperty: "org.freedesktop.DBus.Error.UnknownProperty",
  propertyReadOnly: "org.freedesktop.DBus.Error.PropertyReadOnly",
  accessDenied: "org.freedesktop.DBus.Error.AccessDenied",
  invalidArgs: "org.freedesktop.DBus.Error.InvalidArgs",
  failed: "org.freedesktop.DBus.Error.Failed",
  limitsExceeded: "org.freedesktop.DBus.Error.LimitsExceeded",
} as const;
