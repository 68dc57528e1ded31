// Errors of the TLS engine: one class, a stable code to match on, the
// alert the engine sent (or would send) for it, and for TLS_PEER_ALERT the
// alert the peer sent. Callers and tests match on these fields, never on
// the message. Messages never carry key material or plaintext.

import { AlertDescription } from "./constants.js";

export type TlsErrorCode =
  | "TLS_DECODE"
  | "TLS_UNEXPECTED_MESSAGE"
  | "TLS_BAD_RECORD_MAC"
  | "TLS_RECORD_OVERFLOW"
  | "TLS_HANDSHAKE_FAILURE"
  | "TLS_INSUFFICIENT_SECURITY"
  | "TLS_ILLEGAL_PARAMETER"
  | "TLS_UNSUPPORTED_CERTIFICATE"
  | "TLS_BAD_CERTIFICATE"
  | "TLS_DECRYPT_ERROR"
  | "TLS_PROTOCOL_VERSION"
  | "TLS_MISSING_EXTENSION"
  | "TLS_UNSUPPORTED_EXTENSION"
  | "TLS_CERTIFICATE_REQUIRED"
  | "TLS_INTERNAL"
  | "TLS_UNKNOWN_PEER_KEY"
  | "TLS_PEER_ALERT"
  | "TLS_CLOSED"
  | "TLS_PRIORITY_TOKEN";

const ALERT_FOR: Record<TlsErrorCode, number> = {
  TLS_DECODE: AlertDescription.DecodeError,
  TLS_UNEXPECTED_MESSAGE: AlertDescription.UnexpectedMessage,
  TLS_BAD_RECORD_MAC: AlertDescription.BadRecordMac,
  TLS_RECORD_OVERFLOW: AlertDescription.RecordOverflow,
  TLS_HANDSHAKE_FAILURE: AlertDescription.HandshakeFailure,
  TLS_INSUFFICIENT_SECURITY: AlertDescription.InsufficientSecurity,
  TLS_ILLEGAL_PARAMETER: AlertDescription.IllegalParameter,
  TLS_UNSUPPORTED_CERTIFICATE: AlertDescription.UnsupportedCertificate,
  TLS_BAD_CERTIFICATE: AlertDescription.BadCertificate,
  TLS_DECRYPT_ERROR: AlertDescription.DecryptError,
  TLS_PROTOCOL_VERSION: AlertDescription.ProtocolVersion,
  TLS_MISSING_EXTENSION: AlertDescription.MissingExtension,
  TLS_UNSUPPORTED_EXTENSION: AlertDescription.UnsupportedExtension,
  TLS_CERTIFICATE_REQUIRED: AlertDescription.CertificateRequired,
  TLS_INTERNAL: AlertDescription.InternalError,
  // RFC 8446 §6.2: "access control was applied" and the sender chose not to proceed.
  TLS_UNKNOWN_PEER_KEY: AlertDescription.AccessDenied,
  TLS_PEER_ALERT: -1,
  TLS_CLOSED: -1,
  TLS_PRIORITY_TOKEN: -1,
};

export class TlsError extends Error {
  readonly code: TlsErrorCode;
  /** The alert description we send for this error; -1 when we send none. */
  readonly alert: number;
  /** TLS_PEER_ALERT: the description the peer sent; otherwise -1. */
  readonly peerAlert: number;
  /** TLS_UNKNOWN_PEER_KEY: the key ID no client has (public: it names the peer's own key). */
  readonly keyId: string | undefined;

  constructor(code: TlsErrorCode, message: string, alert?: number, peerAlert = -1, keyId?: string) {
    super(message);
    this.name = "TlsError";
    this.code = code;
    this.alert = alert ?? ALERT_FOR[code];
    this.peerAlert = peerAlert;
    this.keyId = keyId;
  }
}

/** The peer's fatal alert ends the connection; we send none back (RFC 8446 §6.2). */
export function peerAlertError(description: number): TlsError {
  return new TlsError("TLS_PEER_ALERT", `peer sent alert ${description}`, -1, description);
}

/** Plain-data form of a TlsError, for crossing to and from worker threads. */
export interface TlsErrorData {
  readonly code: TlsErrorCode;
  readonly message: string;
  readonly alert: number;
  readonly peerAlert: number;
  readonly keyId?: string;
}

export function toErrorData(error: unknown): TlsErrorData {
  if (error instanceof TlsError) {
    const data = { code: error.code, message: error.message, alert: error.alert, peerAlert: error.peerAlert };
    return error.keyId === undefined ? data : { ...data, keyId: error.keyId };
  }
  // Anything else is our bug or a crypto library refusal; do not leak its text.
  return { code: "TLS_INTERNAL", message: "internal error", alert: AlertDescription.InternalError, peerAlert: -1 };
}

export function fromErrorData(data: TlsErrorData): TlsError {
  return new TlsError(data.code, data.message, data.alert, data.peerAlert, data.keyId);
}
