// Errors of the TLS engine: one class, a stable code to match on, the
// alert the engine sent (or would send) for it, for TLS_PEER_ALERT the
// alert the peer sent, and the GnuTLS error the reference's GnuTLS would
// have failed with in its place (its words are what the reference logs).
// Callers and tests match on these fields, never on the message. Messages
// never carry key material or plaintext.

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

/**
 * The GnuTLS errors (gnutls/gnutls.h) a handshake with a broken or hostile
 * peer fails with in the reference, which logs `Handshake failed: ` and
 * their gnutls_strerror() text. Found by running the same peers against it
 * (test/log-lines-reference.test.ts; legacy certificates and handshakes
 * against the reference on GnuTLS 3.5, test/server-legacy-clients.test.ts,
 * whose words for these are 3.7's but for UNEXPECTED_PACKET_LENGTH: see
 * GNUTLS_3_5_STRERROR). One is no GnuTLS error: OPENPGP_VERIFY_SELF, a
 * legacy certificate whose self-signatures gnutls_openpgp_crt_verify_self
 * refuses, which the legacy reference finds after a handshake that
 * succeeded (referenceWarning). Nor is KEY_POLICY: a raw public key the
 * reference serves and our key policy refuses (key-policy.ts), which is
 * logged with our reason, the reference having no words for it.
 */
export type GnutlsError =
  | "OPENPGP_VERIFY_SELF"
  | "KEY_POLICY"
  | "GNUTLS_E_MPI_SCAN_FAILED"
  | "GNUTLS_E_NO_CIPHER_SUITES"
  | "GNUTLS_E_SAFE_RENEGOTIATION_FAILED"
  | "GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM"
  | "GNUTLS_E_UNEXPECTED_PACKET_LENGTH"
  | "GNUTLS_E_UNEXPECTED_PACKET"
  | "GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET"
  | "GNUTLS_E_DECRYPTION_FAILED"
  | "GNUTLS_E_RECORD_OVERFLOW"
  | "GNUTLS_E_UNKNOWN_CIPHER_SUITE"
  | "GNUTLS_E_INSUFFICIENT_SECURITY"
  | "GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER"
  | "GNUTLS_E_RECEIVED_ILLEGAL_EXTENSION"
  | "GNUTLS_E_MISSING_EXTENSION"
  | "GNUTLS_E_UNSUPPORTED_VERSION_PACKET"
  | "GNUTLS_E_UNSUPPORTED_CERTIFICATE_TYPE"
  | "GNUTLS_E_ASN1_DER_ERROR"
  | "GNUTLS_E_CERTIFICATE_REQUIRED"
  | "GNUTLS_E_PK_SIG_VERIFY_FAILED"
  | "GNUTLS_E_ERROR_IN_FINISHED_PACKET"
  | "GNUTLS_E_FATAL_ALERT_RECEIVED"
  | "GNUTLS_E_WARNING_ALERT_RECEIVED"
  | "GNUTLS_E_SESSION_EOF"
  | "GNUTLS_E_PREMATURE_TERMINATION"
  | "GNUTLS_E_PUSH_ERROR"
  | "GNUTLS_E_PULL_ERROR"
  | "GNUTLS_E_INTERNAL_ERROR";

/** gnutls_strerror() of each, as GnuTLS 3.7.9 (Debian 12's, under the reference here) words it, typos and all (3.5's differences below). */
const GNUTLS_STRERROR: Record<GnutlsError, string> = {
  // The reference passes verify_self's status, a bit mask, to gnutls_strerror().
  OPENPGP_VERIFY_SELF: "(unknown error code)",
  // Never logged as such: the daemon logs the error's own message (log-serve.ts).
  KEY_POLICY: "The certificate type is not supported.",
  GNUTLS_E_MPI_SCAN_FAILED: "The scanning of a large integer has failed.",
  GNUTLS_E_NO_CIPHER_SUITES: "No supported cipher suites have been found.",
  GNUTLS_E_SAFE_RENEGOTIATION_FAILED: "Safe renegotiation failed.",
  GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM: "The signature algorithm is not supported.",
  GNUTLS_E_UNEXPECTED_PACKET_LENGTH: "Error decoding the received TLS packet.",
  GNUTLS_E_UNEXPECTED_PACKET: "An unexpected TLS packet was received.",
  GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET: "An unexpected TLS handshake packet was received.",
  GNUTLS_E_DECRYPTION_FAILED: "Decryption has failed.",
  GNUTLS_E_RECORD_OVERFLOW: "A TLS record packet with invalid length was received.",
  GNUTLS_E_UNKNOWN_CIPHER_SUITE: "Could not negotiate a supported cipher suite.",
  GNUTLS_E_INSUFFICIENT_SECURITY: "One of the involved algorithms has insufficient security level.",
  GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER: "An illegal parameter has been received.",
  GNUTLS_E_RECEIVED_ILLEGAL_EXTENSION: "An illegal TLS extension was received.",
  GNUTLS_E_MISSING_EXTENSION: "An required TLS extension was received.",
  GNUTLS_E_UNSUPPORTED_VERSION_PACKET: "A packet with illegal or unsupported version was received.",
  GNUTLS_E_UNSUPPORTED_CERTIFICATE_TYPE: "The certificate type is not supported.",
  GNUTLS_E_ASN1_DER_ERROR: "ASN1 parser: Error in DER parsing.",
  GNUTLS_E_CERTIFICATE_REQUIRED: "Certificate is required.",
  GNUTLS_E_PK_SIG_VERIFY_FAILED: "Public key signature verification has failed.",
  GNUTLS_E_ERROR_IN_FINISHED_PACKET: "An error was encountered at the TLS Finished packet calculation.",
  GNUTLS_E_FATAL_ALERT_RECEIVED: "A TLS fatal alert has been received.",
  GNUTLS_E_WARNING_ALERT_RECEIVED: "A TLS warning alert has been received.",
  GNUTLS_E_SESSION_EOF: "Peer has terminated the connection",
  GNUTLS_E_PREMATURE_TERMINATION: "The TLS connection was non-properly terminated.",
  GNUTLS_E_PUSH_ERROR: "Error in the push function.",
  GNUTLS_E_PULL_ERROR: "Error in the pull function.",
  GNUTLS_E_INTERNAL_ERROR: "GnuTLS internal error.",
};

/**
 * Where GnuTLS 3.5.19, the legacy reference's, words an error otherwise
 * than 3.7.9 (lib/errors.c of both tags compared, for every code above). A
 * legacy client (TLS 1.2, OpenPGP) meets a reference on GnuTLS 3.5, since
 * 3.7 has no OpenPGP; a modern one meets 3.7, since 3.5 has no raw public keys.
 */
const GNUTLS_3_5_STRERROR: Partial<Record<GnutlsError, string>> = {
  GNUTLS_E_UNEXPECTED_PACKET_LENGTH: "A TLS packet with unexpected length was received.",
};

/**
 * The error GnuTLS 3.5 fails with where 3.7 has one 3.5 lacks:
 * RECORD_OVERFLOW came later, and 3.5 refuses a record longer than it
 * allows with UNEXPECTED_PACKET_LENGTH (lib/record.c, recv_headers).
 */
const GNUTLS_3_5_ERROR: Partial<Record<GnutlsError, GnutlsError>> = {
  GNUTLS_E_RECORD_OVERFLOW: "GNUTLS_E_UNEXPECTED_PACKET_LENGTH",
};

/**
 * What the reference logs after `Handshake failed: ` for `error`; `legacy`:
 * in a session whose peer chose TLS 1.2, as the legacy reference words it.
 */
export function gnutlsStrerror(error: GnutlsError, legacy = false): string {
  if (!legacy) return GNUTLS_STRERROR[error];
  const its = GNUTLS_3_5_ERROR[error] ?? error;
  return GNUTLS_3_5_STRERROR[its] ?? GNUTLS_STRERROR[its];
}

/**
 * The reference's warning for a handshake that ended in `error`:
 * `Handshake failed: ` and GnuTLS's words, or, for a legacy certificate
 * its verify_self refuses (after its handshake), `Bad certificate: `.
 * `legacy`: the peer chose TLS 1.2, so the words are the legacy reference's.
 */
export function referenceWarning(error: GnutlsError, legacy = false): string {
  return `${error === "OPENPGP_VERIFY_SELF" ? "Bad certificate" : "Handshake failed"}: ${gnutlsStrerror(error, legacy)}`;
}

/**
 * The GnuTLS error of each code, where the sites that raise it do not say
 * otherwise. TLS_PEER_ALERT's depends on the alert (peerAlertError).
 */
const GNUTLS_FOR: Record<TlsErrorCode, GnutlsError> = {
  TLS_DECODE: "GNUTLS_E_UNEXPECTED_PACKET_LENGTH",
  TLS_UNEXPECTED_MESSAGE: "GNUTLS_E_UNEXPECTED_PACKET",
  TLS_BAD_RECORD_MAC: "GNUTLS_E_DECRYPTION_FAILED",
  TLS_RECORD_OVERFLOW: "GNUTLS_E_RECORD_OVERFLOW",
  TLS_HANDSHAKE_FAILURE: "GNUTLS_E_UNKNOWN_CIPHER_SUITE",
  TLS_INSUFFICIENT_SECURITY: "GNUTLS_E_INSUFFICIENT_SECURITY",
  TLS_ILLEGAL_PARAMETER: "GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER",
  TLS_UNSUPPORTED_CERTIFICATE: "GNUTLS_E_UNSUPPORTED_CERTIFICATE_TYPE",
  TLS_BAD_CERTIFICATE: "GNUTLS_E_ASN1_DER_ERROR",
  TLS_DECRYPT_ERROR: "GNUTLS_E_PK_SIG_VERIFY_FAILED",
  TLS_PROTOCOL_VERSION: "GNUTLS_E_UNSUPPORTED_VERSION_PACKET",
  TLS_MISSING_EXTENSION: "GNUTLS_E_MISSING_EXTENSION",
  TLS_UNSUPPORTED_EXTENSION: "GNUTLS_E_RECEIVED_ILLEGAL_EXTENSION",
  TLS_CERTIFICATE_REQUIRED: "GNUTLS_E_CERTIFICATE_REQUIRED",
  TLS_INTERNAL: "GNUTLS_E_INTERNAL_ERROR",
  TLS_UNKNOWN_PEER_KEY: "GNUTLS_E_INTERNAL_ERROR",
  TLS_PEER_ALERT: "GNUTLS_E_FATAL_ALERT_RECEIVED",
  TLS_CLOSED: "GNUTLS_E_INTERNAL_ERROR",
  TLS_PRIORITY_TOKEN: "GNUTLS_E_INTERNAL_ERROR",
};

export class TlsError extends Error {
  readonly code: TlsErrorCode;
  /** The alert description we send for this error; -1 when we send none. */
  readonly alert: number;
  /** TLS_PEER_ALERT: the description the peer sent; otherwise -1. */
  readonly peerAlert: number;
  /** TLS_UNKNOWN_PEER_KEY: the key ID no client has (public: it names the peer's own key). */
  readonly keyId: string | undefined;
  /** The error the reference's GnuTLS fails with in this place. */
  readonly gnutls: GnutlsError;

  constructor(code: TlsErrorCode, message: string, alert?: number, peerAlert = -1, keyId?: string, gnutls?: GnutlsError) {
    super(message);
    this.name = "TlsError";
    this.code = code;
    this.alert = alert ?? ALERT_FOR[code];
    this.peerAlert = peerAlert;
    this.keyId = keyId;
    this.gnutls = gnutls ?? GNUTLS_FOR[code];
  }
}

/** An error of `code` for which the reference's GnuTLS fails with `gnutls`, not the code's usual one. */
export function tlsErrorAs(gnutls: GnutlsError, code: TlsErrorCode, message: string): TlsError {
  return new TlsError(code, message, undefined, -1, undefined, gnutls);
}

/**
 * The peer's alert ends the connection; we send none back (RFC 8446 §6.2).
 * `level` is the alert's first byte: GnuTLS tells a fatal one (2) from any
 * other, and a close_notify that is not fatal is the end of the session.
 */
export function peerAlertError(description: number, level = 2): TlsError {
  const gnutls = level === 2 ? "GNUTLS_E_FATAL_ALERT_RECEIVED" : description === 0 ? "GNUTLS_E_SESSION_EOF" : "GNUTLS_E_WARNING_ALERT_RECEIVED";
  return new TlsError("TLS_PEER_ALERT", `peer sent ${level === 2 ? "" : "warning "}alert ${description}`, -1, description, undefined, gnutls);
}

/** An alert record that is not two bytes long (GnuTLS: an unexpected packet). */
export function malformedAlertError(): TlsError {
  return tlsErrorAs("GNUTLS_E_UNEXPECTED_PACKET", "TLS_DECODE", "malformed alert");
}

/** Plain-data form of a TlsError, for crossing to and from worker threads. */
export interface TlsErrorData {
  readonly code: TlsErrorCode;
  readonly message: string;
  readonly alert: number;
  readonly peerAlert: number;
  readonly keyId?: string;
  readonly gnutls?: GnutlsError;
}

export function toErrorData(error: unknown): TlsErrorData {
  if (error instanceof TlsError) {
    const data = { code: error.code, message: error.message, alert: error.alert, peerAlert: error.peerAlert, gnutls: error.gnutls };
    return error.keyId === undefined ? data : { ...data, keyId: error.keyId };
  }
  // Anything else is our bug or a crypto library refusal; do not leak its text.
  return { code: "TLS_INTERNAL", message: "internal error", alert: AlertDescription.InternalError, peerAlert: -1 };
}

export function fromErrorData(data: TlsErrorData): TlsError {
  return new TlsError(data.code, data.message, data.alert, data.peerAlert, data.keyId, data.gnutls);
}
