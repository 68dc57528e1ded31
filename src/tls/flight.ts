// The client role's expensive step as one pure function: given our key
// share, the transcript up to ServerHello and the protected records the
// server sent after it, do the key agreement and key schedule, decrypt and
// check the server's flight (EncryptedExtensions, [CertificateRequest],
// Certificate with a raw public key, CertificateVerify, Finished), and build
// our own Finished flight. This is what a worker thread runs (docs/PROTOCOL.md, "Design rules");
// input and output are plain data. A flight that arrives in several reads
// goes through several tasks, each given only the records that are new and
// the FlightProgress the previous one returned: every record is opened once.
//
// Validation, step by step, each failure one alert (RFC 8446 §6.2):
//   1. ECDHE with the server's share                    -> illegal_parameter
//   2. each record opens with the server handshake key  -> bad_record_mac
//   3. messages arrive in order EE, [CR], Cert, CV, Fin -> unexpected_message
//   4. EE names RawPublicKey as the server cert type    -> unsupported_certificate
//   5. Certificate holds exactly one SPKI, no entry
//      extensions, in DER exactly, of a kind and size
//      we admit (key-policy.ts)                        -> decode_error / bad_certificate /
//                                                         unsupported_extension / unsupported_certificate
//      and, when the task has a known-key table, its
//      key ID may belong to a client (known-keys.ts)   -> access_denied
//   6. CertificateVerify uses an offered scheme fitting
//      the key, and its signature verifies               -> illegal_parameter / decrypt_error
//   7. Finished MAC matches (constant time)              -> decrypt_error

import {
  CertificateType,
  ContentType,
  HandshakeType,
  SIGNATURE_CODES,
  schemeByCode,
  suiteByCode,
  type CipherSuiteInfo,
  type SignatureScheme,
} from "./constants.js";
import {
  applicationSecrets,
  certificateVerifyContent,
  computeSharedSecret,
  constantTimeEqual,
  digest,
  finishedMac,
  handshakeSecrets,
  keyFitsScheme,
  keyId,
  parseSpki,
  requireCanonicalSpki,
  sealRecord,
  openRecord,
  trafficKeys,
  verifySignature,
  type KeyShare,
  type TrafficKeys,
} from "./crypto.js";
import { admitPeerKey } from "./key-policy.js";
import { mayBeKnown } from "./known-keys.js";
import { TlsError, malformedAlertError, peerAlertError, tlsErrorAs, toErrorData, type TlsErrorData } from "./errors.js";
import {
  encodeEmptyCertificate,
  encodeFinished,
  parseCertificate,
  parseCertificateRequest,
  parseCertificateVerify,
  parseEncryptedExtensions,
} from "./messages.js";
import { CHANGE_CIPHER_SPEC, HandshakeAssembler, bufferView, ownedCopy } from "./record.js";
import { CLOSE_NOTIFY_SEQUENCE } from "./channel.js";
import { CLOSE_NOTIFY_ALERT } from "./record-writer.js";

/** Secrets after the key agreement; a follow-up task reuses them to skip step 1. */
export interface FlightHandshakeState {
  readonly handshakeSecret: Uint8Array;
  readonly clientHandshakeTraffic: Uint8Array;
  readonly serverHandshakeTraffic: Uint8Array;
}

/** The handshake message the flight waits for next (step 3). */
type Expect = "EE" | "CertOrCR" | "Cert" | "CV" | "Fin";

/**
 * Where an incomplete flight stopped: everything the next task needs to go
 * on from the first record it has not seen, so that each record is opened
 * once whatever the number of tasks (issue 16: re-opening the whole flight
 * in every task made a flight of one-byte records quadratic). Every field
 * is bounded by MAX_HANDSHAKE_BUFFER_BYTES.
 */
export interface FlightProgress {
  readonly handshake: FlightHandshakeState;
  /** Both handshake traffic keys, derived once by the first task and carried, not derived again by each. */
  readonly serverKeys: TrafficKeys;
  readonly clientKeys: TrafficKeys;
  /** Protected records opened so far: the next one's sequence number. */
  readonly opened: number;
  readonly expect: Expect;
  /** The whole handshake messages after ServerHello so far (the rest of the transcript). */
  readonly messages: Uint8Array;
  /** The start of a handshake message whose end is still to come. */
  readonly partial: Uint8Array;
  readonly peerSpki: Uint8Array | null;
  readonly requestContext: Uint8Array | null;
  /** The CertificateVerify's scheme once it verified (a code point). */
  readonly scheme: number | null;
  /**
   * Plaintext bytes still to come before the next handshake message can be
   * whole (its header's missing bytes, or the rest of its body): until the
   * records received since could hold that many, a task would only stop
   * again where this one did, and the caller need not send one
   * (client.ts, #flightTask; FlightBuffer.unhandedRoom). At least 1.
   */
  readonly need: number;
}

export interface ServerFlightTask {
  readonly kind: "server-flight";
  readonly suite: number;
  /** Our key share for the group the server chose. */
  readonly share: KeyShare;
  readonly serverShare: Uint8Array;
  /** The handshake messages so far, ClientHello..ServerHello (with message_hash after an HRR). */
  readonly transcript: Uint8Array;
  /**
   * The records received since the previous task (or since ServerHello),
   * whole and back to back, headers included, in one buffer: protected
   * records and the change_cipher_spec records between them (dropped
   * before the server's Finished, refused after it, RFC 8446 §5).
   */
  readonly records: Uint8Array;
  /** Signature schemes we offered (code points). */
  readonly offeredSchemes: readonly number[];
  /** Whether we sent a legacy_session_id (then a change_cipher_spec precedes our Finished). */
  readonly middleboxCompat: boolean;
  /** Where the previous task stopped; absent for the first. */
  readonly progress?: FlightProgress | undefined;
}

/**
 * What the task runner adds to every task: the key IDs the server knows
 * (known-keys.ts), so that an unknown key is refused before its signature
 * is checked. Absent: every key is checked, then looked up by the caller.
 */
export interface FlightContext {
  readonly knownKeys?: SharedArrayBuffer | null | undefined;
}

export type ServerFlightResult =
  | { readonly status: "incomplete"; readonly progress: FlightProgress }
  | {
      readonly status: "complete";
      /** Bytes of `records` up to the end of the server's Finished; later records use the application keys. */
      readonly consumedBytes: number;
      readonly peerPublicKey: Uint8Array;
      readonly keyId: string;
      readonly signatureScheme: SignatureScheme;
      /** What we send next: [change_cipher_spec], [empty Certificate], Finished, protected. */
      readonly clientFlight: Uint8Array;
      readonly clientApplicationTraffic: Uint8Array;
      readonly serverApplicationTraffic: Uint8Array;
      /** Ours; the server's application keys are made by the channel if it ever reads (after our secret the peer seldom gets to write). */
      readonly clientKeys: TrafficKeys;
      /**
       * Our close_notify, sealed under `clientKeys` at sequence number
       * CLOSE_NOTIFY_SEQUENCE: what follows one record of application
       * data (a Mandos server sends its secret, then closes), sealed here
       * so that the main thread need not (ApplicationChannel uses it only
       * when our close does come at that sequence number).
       */
      readonly closeNotify: Uint8Array;
    }
  | {
      readonly status: "error";
      readonly error: TlsErrorData;
      /** The alert to send, protected with our handshake key when we have it. */
      readonly alertRecord: Uint8Array | null;
    };

/** Runs the task; never throws. */
export function processServerFlight(task: ServerFlightTask, context: FlightContext = {}): ServerFlightResult {
  const suite = suiteByCode(task.suite);
  let clientHsKeys: TrafficKeys | null = null;
  try {
    if (!suite) throw new TlsError("TLS_INTERNAL", "unknown suite in task");
    const p = task.progress;
    // Step 1.
    const handshake = p?.handshake ?? keyAgreement(task, suite);
    const serverHsKeys = p?.serverKeys ?? trafficKeys(suite, handshake.serverHandshakeTraffic);
    clientHsKeys = p?.clientKeys ?? trafficKeys(suite, handshake.clientHandshakeTraffic);

    const transcript: Uint8Array[] = [task.transcript];
    if (p && p.messages.length > 0) transcript.push(p.messages);
    const assembler = new HandshakeAssembler();
    if (p && p.partial.length > 0) assembler.push(p.partial);
    let opened = p?.opened ?? 0;
    let expect: Expect = p?.expect ?? "EE";
    let peerSpki: Buffer | null = p?.peerSpki ? Buffer.from(p.peerSpki) : null;
    /** Computed at the Certificate when the known-key table asks for it; otherwise at the end. */
    let peerKeyId: string | null = null;
    // Parsed again when Certificate and CertificateVerify come in different tasks (KeyObjects do not cross threads).
    let peerKey: ReturnType<typeof parseSpki> | null = peerSpki && expect === "CV" ? parseSpki(peerSpki) : null;
    let requestContext: Buffer | null = p?.requestContext ? Buffer.from(p.requestContext) : null;
    let scheme: SignatureScheme | null = p?.scheme == null ? null : schemeByCode(p.scheme) ?? null;

    const records = bufferView(task.records);
    for (let at = 0; at < records.length; ) {
      if (records.length - at < 5) throw new TlsError("TLS_INTERNAL", "torn record in task");
      const type = records[at]!;
      const end = at + 5 + records.readUInt16BE(at + 3);
      if (end > records.length) throw new TlsError("TLS_INTERNAL", "torn record in task");
      const header = records.subarray(at, at + 5);
      const body = records.subarray(at + 5, end);
      at = end;
      // Checked by the endpoint; before the server's Finished it is dropped (RFC 8446 §5).
      if (type === ContentType.ChangeCipherSpec) continue;
      // Step 2.
      const rec = openRecord(suite, serverHsKeys, BigInt(opened++), header, body);
      if (rec.type === ContentType.Alert) throw peerAlert(rec.content);
      if (rec.type !== ContentType.Handshake) {
        throw new TlsError("TLS_UNEXPECTED_MESSAGE", `record type ${rec.type} during the handshake`);
      }
      assembler.push(rec.content);
      for (let msg = assembler.next(); msg; msg = assembler.next()) {
        // Step 3.
        switch (msg.type) {
          case HandshakeType.EncryptedExtensions: {
            if (expect !== "EE") throw unexpected(msg.type);
            // Step 4.
            const ee = parseEncryptedExtensions(msg.body);
            if (ee.serverCertType !== CertificateType.RawPublicKey) {
              throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", "server did not agree to a raw public key");
            }
            expect = "CertOrCR";
            break;
          }
          case HandshakeType.CertificateRequest:
            if (expect !== "CertOrCR") throw unexpected(msg.type);
            requestContext = parseCertificateRequest(msg.body).context;
            expect = "Cert";
            break;
          case HandshakeType.Certificate: {
            if (expect !== "CertOrCR" && expect !== "Cert") throw unexpected(msg.type);
            // Step 5.
            const cert = parseCertificate(msg.body);
            if (cert.context.length !== 0) throw new TlsError("TLS_ILLEGAL_PARAMETER", "server Certificate with a request context");
            if (cert.entries.length === 0) throw new TlsError("TLS_DECODE", "server sent no key");
            if (cert.entries.length > 1) throw new TlsError("TLS_BAD_CERTIFICATE", "more than one raw public key");
            // RFC 8446 §4.4.2: a server's entry extensions must answer ours, and we ask for none (§4.2: unsupported_extension).
            if (cert.entries[0]!.extensions.length !== 0) {
              throw new TlsError("TLS_UNSUPPORTED_EXTENSION", "unsolicited extensions in the server's Certificate entry");
            }
            peerSpki = Buffer.from(cert.entries[0]!.data);
            // The policy first: it needs no crypto, and the DER check costs a re-encoding.
            peerKey = parseSpki(peerSpki);
            admitPeerKey(peerKey, task.offeredSchemes);
            requireCanonicalSpki(peerKey, peerSpki);
            if (context.knownKeys) {
              peerKeyId = keyId(peerSpki);
              if (!mayBeKnown(context.knownKeys, peerKeyId)) throw new TlsError("TLS_UNKNOWN_PEER_KEY", "the key belongs to no client", undefined, -1, peerKeyId);
            }
            expect = "CV";
            break;
          }
          case HandshakeType.CertificateVerify: {
            if (expect !== "CV" || !peerKey) throw unexpected(msg.type);
            // Step 6.
            const cv = parseCertificateVerify(msg.body);
            const s = schemeByCode(cv.scheme);
            if (!s || !task.offeredSchemes.includes(cv.scheme)) {
              throw new TlsError("TLS_ILLEGAL_PARAMETER", `signature scheme 0x${cv.scheme.toString(16)} was not offered`);
            }
            if (!keyFitsScheme(peerKey, s)) throw new TlsError("TLS_ILLEGAL_PARAMETER", `the key cannot make ${s} signatures`);
            const content = certificateVerifyContent("server", transcriptHash(suite, transcript));
            if (!verifySignature(s, peerKey, content, cv.signature)) {
              throw new TlsError("TLS_DECRYPT_ERROR", "CertificateVerify signature does not verify");
            }
            scheme = s;
            expect = "Fin";
            break;
          }
          case HandshakeType.Finished: {
            if (expect !== "Fin" || !peerSpki || !scheme) throw unexpected(msg.type);
            // Step 7.
            const expected = finishedMac(suite, handshake.serverHandshakeTraffic, transcriptHash(suite, transcript));
            if (!constantTimeEqual(expected, msg.body)) throw tlsErrorAs("GNUTLS_E_ERROR_IN_FINISHED_PACKET", "TLS_DECRYPT_ERROR", "server Finished does not verify");
            transcript.push(msg.raw);
            if (assembler.partial || assembler.next()) {
              throw new TlsError("TLS_UNEXPECTED_MESSAGE", "handshake data after server Finished in the same record");
            }
            return finish(task, suite, handshake, clientHsKeys, transcript, at, peerSpki, peerKeyId ?? keyId(peerSpki), scheme, requestContext);
          }
          default:
            throw unexpected(msg.type);
        }
        transcript.push(msg.raw);
      }
    }
    const partial = assembler.pending;
    return {
      status: "incomplete",
      progress: {
        handshake,
        serverKeys: serverHsKeys,
        clientKeys: clientHsKeys,
        opened,
        expect,
        messages: transcript.length === 1 ? new Uint8Array(0) : Buffer.concat(transcript.slice(1)),
        partial,
        peerSpki,
        requestContext,
        scheme: scheme === null ? null : SIGNATURE_CODES[scheme],
        need: bytesToNextMessage(partial),
      },
    };
  } catch (error) {
    const data = toErrorData(error);
    let alertRecord: Uint8Array | null = null;
    if (data.alert >= 0 && suite) {
      const alert = Buffer.of(2, data.alert);
      alertRecord = clientHsKeys ? sealRecord(suite, clientHsKeys, 0n, ContentType.Alert, alert) : null;
    }
    return { status: "error", error: data, alertRecord };
  }
}

/** Plaintext bytes a handshake message begun with `partial` (maybe empty) still lacks: its 4-byte header's, then its body's (RFC 8446 §4). */
function bytesToNextMessage(partial: Uint8Array): number {
  if (partial.length < 4) return 4 - partial.length;
  const length = (partial[1]! << 16) | (partial[2]! << 8) | partial[3]!;
  return Math.max(1, 4 + length - partial.length);
}

function keyAgreement(task: ServerFlightTask, suite: CipherSuiteInfo): FlightHandshakeState {
  const shared = computeSharedSecret(task.share, task.serverShare);
  return handshakeSecrets(suite, shared, digest(suite.hash, task.transcript));
}

function transcriptHash(suite: CipherSuiteInfo, parts: readonly Uint8Array[]): Buffer {
  return digest(suite.hash, parts.length === 1 ? parts[0]! : Buffer.concat(parts));
}

function finish(
  task: ServerFlightTask,
  suite: CipherSuiteInfo,
  handshake: FlightHandshakeState,
  clientHsKeys: TrafficKeys,
  transcript: Uint8Array[],
  consumedBytes: number,
  peerSpki: Buffer,
  peerKeyId: string,
  scheme: SignatureScheme,
  requestContext: Buffer | null,
): ServerFlightResult {
  const serverFinishedHash = transcriptHash(suite, transcript);
  const app = applicationSecrets(suite, handshake.handshakeSecret, serverFinishedHash);
  const out: Uint8Array[] = [];
  if (task.middleboxCompat) out.push(CHANGE_CIPHER_SPEC);
  let seq = 0n;
  if (requestContext !== null) {
    // We have no key to show; an empty Certificate says so (RFC 8446 §4.4.2).
    const empty = encodeEmptyCertificate(requestContext);
    transcript.push(empty);
    out.push(sealRecord(suite, clientHsKeys, seq++, ContentType.Handshake, empty));
  }
  const fin = encodeFinished(finishedMac(suite, handshake.clientHandshakeTraffic, transcriptHash(suite, transcript)));
  out.push(sealRecord(suite, clientHsKeys, seq, ContentType.Handshake, fin));
  const clientKeys = trafficKeys(suite, app.clientApplicationTraffic);
  return {
    status: "complete",
    consumedBytes,
    peerPublicKey: peerSpki,
    keyId: peerKeyId,
    signatureScheme: scheme,
    clientFlight: Buffer.concat(out),
    clientApplicationTraffic: app.clientApplicationTraffic,
    serverApplicationTraffic: app.serverApplicationTraffic,
    clientKeys,
    // Kept until the connection closes: not a slice of the Buffer pool (ownedCopy).
    closeNotify: ownedCopy(sealRecord(suite, clientKeys, CLOSE_NOTIFY_SEQUENCE, ContentType.Alert, CLOSE_NOTIFY_ALERT)),
  };
}

function unexpected(type: number): TlsError {
  return tlsErrorAs("GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET", "TLS_UNEXPECTED_MESSAGE", `unexpected handshake message ${type}`);
}

export function peerAlert(content: Uint8Array): TlsError {
  if (content.length !== 2) return malformedAlertError();
  return peerAlertError(content[1]!, content[0]);
}

/** Code points of schemes, for the task (plain numbers cross threads cheaply). */
export function schemeCodes(schemes: readonly SignatureScheme[]): number[] {
  return schemes.map((s) => SIGNATURE_CODES[s]);
}
