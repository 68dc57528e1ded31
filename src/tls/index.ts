// The TLS 1.3 engine with RFC 7250 raw public keys: sans-IO, both roles;
// and TLS 1.2 with RFC 6091 OpenPGP certificates for legacy Mandos clients
// (tls12/), reached from the same ClientHello.
// Bytes go in (receive), bytes to send come out (takeOutput), events come
// out (nextEvent), and expensive steps come out as plain-data tasks
// (takeTask -> runHandshakeTask -> completeTask) for the caller to run
// inline or on a worker thread; drive.ts does all that for a caller. No
// sockets, timers or threads in here.

export { TlsClient } from "./client.js";
export { TlsServer, type ServerIdentity } from "./server.js";
export { Tls12Server, type OpenPgpIdentity, type Tls12ServerOptions } from "./tls12/server12.js";
export type { TlsEvent } from "./endpoint.js";
export { EngineDriver, runLoopback, runLoopbackAsync, type EngineSink, type LoopbackSide, type TaskRunner, type TlsEngine } from "./drive.js";
export { TlsError, gnutlsStrerror, referenceWarning, type GnutlsError, type TlsErrorCode } from "./errors.js";
export { DEFAULT_PRIORITY, REFERENCE_OPENPGP_PRIORITY, REFERENCE_RPK_PRIORITY, parsePriority, type LegacySettings, type TlsSettings } from "./priority.js";
export { keyId } from "./crypto.js";
export {
  generateEphemeralKeyShares,
  runHandshakeTask,
  type EphemeralKeyShares,
  type HandshakeTask,
  type HandshakeTaskResult,
} from "./tasks.js";
export type { NamedGroup, SignatureScheme, CipherSuiteName } from "./constants.js";
export { buildKnownKeyTable, mayBeKnown } from "./known-keys.js";
export type { FlightContext } from "./flight.js";
