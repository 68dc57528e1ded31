// The TLS 1.3 engine with RFC 7250 raw public keys: sans-IO, both roles.
// Bytes go in (receive), bytes to send come out (takeOutput), events come
// out (nextEvent), and expensive steps come out as plain-data tasks
// (takeTask -> runHandshakeTask -> completeTask) for the caller to run
// inline or on a worker thread; drive.ts does all that for a caller. No
// sockets, timers or threads in here.

export { TlsClient } from "./client.js";
export { TlsServer, type ServerIdentity } from "./server.js";
export type { TlsEvent } from "./endpoint.js";
export { EngineDriver, runLoopback, type EngineSink, type LoopbackSide, type TaskRunner, type TlsEngine } from "./drive.js";
export { TlsError, type TlsErrorCode } from "./errors.js";
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
