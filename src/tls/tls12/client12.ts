// The TLS 1.2 part of the client role, for legacy Mandos clients (GnuTLS
// < 3.6, OpenPGP certificates; docs/PROTOCOL.md, "Legacy clients"). The
// TLS 1.3 client role (client.ts) sends one ClientHello for both
// generations and hands over to this when the ServerHello names TLS 1.2.
// Sans-IO like the rest: the host (TlsClient) gives it records and task
// results, it gives back bytes, tasks and the connected channel.
//
// States, named after what each waits for:
//   ExpectCertificate -> ExpectServerKeyExchange -> ExpectServerHelloDone
//   -> AwaitFlightTask (flight12.ts runs) -> ExpectChangeCipherSpec
//   -> ExpectFinished -> Done (the host is connected)
//
// ServerHello checks, each one alert (RFC 5246 §7.4.1.3, RFC 8446 §4.1.3):
//   server_version is TLS 1.2                         -> protocol_version
//   no TLS 1.3 downgrade sentinel when we offered 1.3 -> illegal_parameter
//   a suite we offered for TLS 1.2                     -> illegal_parameter
//   cert_type names OpenPGP (absent means X.509; a raw
//   key through server_certificate_type is TLS 1.3's) -> unsupported_certificate
//   renegotiation_info, when present, is empty         -> handshake_failure
// No CertificateRequest, HelloRequest or anything out of order while
// handshaking (unexpected_message); everything up to ServerHelloDone must
// end with it (no trailing handshake data, no record of another type).

import { ContentType, HandshakeType } from "../constants.js";
import { constantTimeEqual } from "../crypto.js";
import { plainAlert, type HandshakeCompleteEvent, type RecordChannel } from "../endpoint.js";
import { TlsError, fromErrorData, malformedAlertError, peerAlertError, tlsErrorAs } from "../errors.js";
import { MAX_FLIGHT_RECORDS } from "../limits.js";
import { HandshakeAssembler, type RawRecord } from "../record.js";
import { Tls12Channel } from "./channel12.js";
import { open12, seal12 } from "./crypto12.js";
import type { Tls12FlightResult, Tls12FlightTask } from "./flight12.js";
import { CertType12, parseServerHello12 } from "./messages12.js";
import { Handshake12, TLS12, tls12SuiteByCode, type Tls12Suite } from "./suites.js";

const DOWNGRADE_12 = Buffer.from("444f574e47524401", "hex");
const DOWNGRADE_11 = Buffer.from("444f574e47524400", "hex");

/** What the TLS 1.2 handshake needs from the TLS client role. */
export interface Tls12Host {
  output(bytes: Buffer): void;
  connect(channel: RecordChannel, event: HandshakeCompleteEvent): void;
}

/** What we offered for TLS 1.2 in the ClientHello. */
export interface Tls12Offer {
  readonly suites: readonly number[];
  readonly signatures: readonly number[];
  /** Whether TLS 1.3 was offered too (then the downgrade sentinel is checked). */
  readonly offeredTls13: boolean;
}

type State =
  | "ExpectCertificate"
  | "ExpectServerKeyExchange"
  | "ExpectServerHelloDone"
  | "AwaitFlightTask"
  | "ExpectChangeCipherSpec"
  | "ExpectFinished"
  | "Done";

export class Tls12ClientHandshake {
  #state: State = "ExpectCertificate";
  readonly #host: Tls12Host;
  readonly #offer: Tls12Offer;
  readonly #suite: Tls12Suite;
  readonly #clientRandom: Uint8Array;
  readonly #serverRandom: Buffer;
  readonly #ems: boolean;
  readonly #assembler = new HandshakeAssembler();
  readonly #transcript: Buffer[];
  #certificate: Buffer | null = null;
  #serverKeyExchange: Buffer | null = null;
  #task: Tls12FlightTask | null = null;
  #records = 0;
  #result: Extract<Tls12FlightResult, { status: "complete" }> | null = null;

  /** Checks the ServerHello (see above); `rest` is handshake data that came after it in the same record. */
  constructor(host: Tls12Host, offer: Tls12Offer, clientHello: Buffer, clientRandom: Uint8Array, serverHelloRaw: Buffer, rest: Buffer) {
    this.#host = host;
    this.#offer = offer;
    const sh = parseServerHello12(serverHelloRaw.subarray(4));
    if (sh.version !== TLS12) {
      // TLS 1.0 or 1.1 with a suite we offered (all of them TLS 1.2's): the legacy reference's GnuTLS 3.5 finds no suite.
      const older = sh.version === 0x0301 || sh.version === 0x0302;
      throw tlsErrorAs(older ? "GNUTLS_E_NO_CIPHER_SUITES" : "GNUTLS_E_UNSUPPORTED_VERSION_PACKET", "TLS_PROTOCOL_VERSION", `server_version 0x${sh.version.toString(16)}`);
    }
    const tail = sh.random.subarray(24);
    if (offer.offeredTls13 && (tail.equals(DOWNGRADE_12) || tail.equals(DOWNGRADE_11))) {
      throw new TlsError("TLS_ILLEGAL_PARAMETER", "downgrade sentinel in ServerHello.random");
    }
    const suite = tls12SuiteByCode(sh.cipherSuite);
    if (!suite || !offer.suites.includes(sh.cipherSuite)) throw tlsErrorAs("GNUTLS_E_UNKNOWN_CIPHER_SUITE", "TLS_ILLEGAL_PARAMETER", "server chose a cipher suite we did not offer for TLS 1.2");
    if (sh.serverCertType !== null) {
      // GnuTLS 3.5 knows no server_certificate_type: an extension it did not offer.
      throw tlsErrorAs("GNUTLS_E_RECEIVED_ILLEGAL_EXTENSION", "TLS_UNSUPPORTED_CERTIFICATE", "a raw public key in TLS 1.2; legacy clients present OpenPGP keys");
    }
    if (sh.certType !== CertType12.OpenPgp) {
      throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", sh.certType === null ? "no cert_type: an X.509 certificate" : `certificate type ${sh.certType}`);
    }
    if (sh.renegotiationInfo && sh.renegotiationInfo.length !== 0) throw tlsErrorAs("GNUTLS_E_SAFE_RENEGOTIATION_FAILED", "TLS_HANDSHAKE_FAILURE", "renegotiation_info is not empty");
    this.#suite = suite;
    this.#clientRandom = clientRandom;
    this.#serverRandom = Buffer.from(sh.random);
    this.#ems = sh.extendedMasterSecret;
    this.#transcript = [clientHello, serverHelloRaw];
    if (rest.length > 0) this.#pushHandshake(rest);
  }

  get name(): string {
    return `Tls12${this.#state}`;
  }

  /** After the server's change_cipher_spec its alerts are protected. */
  get alertsProtected(): boolean {
    return this.#state === "ExpectFinished";
  }

  onRecord(rec: RawRecord): void {
    if (++this.#records > MAX_FLIGHT_RECORDS) throw new TlsError("TLS_DECODE", `more than ${MAX_FLIGHT_RECORDS} records in the server's flight`);
    switch (this.#state) {
      case "ExpectCertificate":
      case "ExpectServerKeyExchange":
      case "ExpectServerHelloDone":
        if (rec.type !== ContentType.Handshake) throw new TlsError("TLS_UNEXPECTED_MESSAGE", `record type ${rec.type} in the server's flight`);
        this.#pushHandshake(rec.body);
        return;
      case "ExpectFinished":
        return this.#onFinished(rec);
      case "AwaitFlightTask":
      case "ExpectChangeCipherSpec":
        throw new TlsError("TLS_UNEXPECTED_MESSAGE", `record type ${rec.type} before the server's change_cipher_spec`);
      case "Done":
        return;
    }
  }

  /** A fatal alert: protected once our change_cipher_spec is out (RFC 5246 §7.1), plain before. */
  alert(description: number): Buffer {
    const result = this.#result;
    if (result && (this.#state === "ExpectChangeCipherSpec" || this.#state === "ExpectFinished")) {
      return seal12(this.#suite, result.clientKeys, 1n, ContentType.Alert, Buffer.of(2, description));
    }
    return plainAlert(description);
  }

  onChangeCipherSpec(): void {
    if (this.#state !== "ExpectChangeCipherSpec") throw new TlsError("TLS_UNEXPECTED_MESSAGE", "change_cipher_spec out of place");
    if (this.#assembler.partial) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "handshake message spans change_cipher_spec");
    this.#state = "ExpectFinished";
  }

  takeTask(): Tls12FlightTask | null {
    const task = this.#task;
    this.#task = null;
    return task;
  }

  onTaskResult(result: Tls12FlightResult): void {
    if (this.#state !== "AwaitFlightTask") return;
    if (result.status === "error") throw fromErrorData(result.error);
    this.#result = result;
    this.#host.output(Buffer.from(result.clientFlight));
    this.#state = "ExpectChangeCipherSpec";
  }

  #pushHandshake(bytes: Buffer): void {
    this.#assembler.push(bytes);
    for (let msg = this.#assembler.next(); msg; msg = this.#assembler.next()) {
      switch (this.#state) {
        case "ExpectCertificate":
          if (msg.type !== HandshakeType.Certificate) throw unexpected(msg.type);
          this.#certificate = msg.body;
          this.#state = "ExpectServerKeyExchange";
          break;
        case "ExpectServerKeyExchange":
          if (msg.type !== Handshake12.ServerKeyExchange) throw unexpected(msg.type);
          this.#serverKeyExchange = msg.body;
          this.#state = "ExpectServerHelloDone";
          break;
        case "ExpectServerHelloDone":
          // A CertificateRequest would ask us for a key we do not have; Mandos clients never send one.
          if (msg.type !== Handshake12.ServerHelloDone) throw unexpected(msg.type);
          if (msg.body.length !== 0) throw new TlsError("TLS_DECODE", "ServerHelloDone with a body");
          this.#transcript.push(msg.raw);
          if (this.#assembler.partial || this.#assembler.next()) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "handshake data after ServerHelloDone");
          this.#state = "AwaitFlightTask";
          this.#task = {
            kind: "tls12-flight",
            suite: this.#suite.code,
            clientRandom: this.#clientRandom,
            serverRandom: this.#serverRandom,
            transcript: Buffer.concat(this.#transcript),
            certificate: this.#certificate!,
            serverKeyExchange: this.#serverKeyExchange!,
            extendedMasterSecret: this.#ems,
            offeredSignatures: this.#offer.signatures,
          };
          return;
        default:
          throw unexpected(msg.type);
      }
      this.#transcript.push(msg.raw);
    }
  }

  #onFinished(rec: RawRecord): void {
    const result = this.#result!;
    if (rec.type === ContentType.Alert) {
      // Protected since the server's change_cipher_spec (RFC 5246 §7.1).
      const alert = open12(this.#suite, result.serverKeys, 0n, ContentType.Alert, rec.body);
      if (alert.length !== 2) throw malformedAlertError();
      throw peerAlertError(alert[1]!, alert[0]);
    }
    if (rec.type !== ContentType.Handshake) throw new TlsError("TLS_UNEXPECTED_MESSAGE", `record type ${rec.type} instead of the server's Finished`);
    const content = open12(this.#suite, result.serverKeys, 0n, ContentType.Handshake, rec.body);
    if (content.length !== 16 || content[0] !== HandshakeType.Finished || content.readUIntBE(1, 3) !== 12) {
      throw new TlsError("TLS_UNEXPECTED_MESSAGE", "not exactly one Finished in the server's first protected record");
    }
    if (!constantTimeEqual(content.subarray(4), result.expectedServerFinished)) throw tlsErrorAs("GNUTLS_E_ERROR_IN_FINISHED_PACKET", "TLS_DECRYPT_ERROR", "server Finished does not verify");
    this.#state = "Done";
    this.#host.connect(new Tls12Channel(this.#suite, result.serverKeys, result.clientKeys), {
      type: "handshake-complete",
      peerPublicKey: Buffer.alloc(0),
      keyId: "",
      cipherSuite: this.#suite.name,
      group: result.group,
      signatureScheme: result.signatureScheme,
      version: "TLS1.2",
      fingerprint: result.fingerprint,
    });
  }
}

function unexpected(type: number): TlsError {
  return tlsErrorAs("GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET", "TLS_UNEXPECTED_MESSAGE", `unexpected handshake message ${type} in the TLS 1.2 flight`);
}
