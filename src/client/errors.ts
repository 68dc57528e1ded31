// Errors of our Mandos client (fetch.ts): one class, its `name` set, and a
// stable `code` from FetchErrorCode that the command line prints and tests
// match on, never the message text.

import { CodedError } from "../errors.js";

export type FetchErrorCode =
  /** No secret within the time allowed, connect to close. */
  | "MANDOS_CLIENT_TIMEOUT"
  /** The server closed without sending a byte of secret (refused, unknown key). */
  | "MANDOS_CLIENT_NO_SECRET"
  /** The TLS handshake or channel failed; the message says how. */
  | "MANDOS_CLIENT_TLS"
  /** The socket failed (refused, reset); the message is the errno name. */
  | "MANDOS_CLIENT_SOCKET";

export class FetchError extends CodedError<FetchErrorCode> {}
