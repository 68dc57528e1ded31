// The TLS 1.3 server role, sans-IO: what mandos-client is in the Mandos
// protocol, presenting a raw public key (RFC 7250). Our test client and the
// benchmark's simulated machines run it. Its crypto runs inline: a client
// machine serves one handshake, not thousands.
//
// Handshake states: ExpectClientHello -> (HRR) ExpectClientHello (once)
//                   -> ExpectFinished -> Connected (endpoint.ts).
//
// The encrypted flight is built in two overridable steps (selectScheme,
// encryptedFlight) so that test/helpers/faulty-server.ts can send what a
// broken or hostile server would; the engine itself carries no fault code.

import type { KeyObject } from "node:crypto";
import {
  CertificateType,
  ContentType,
  GROUP_CODES,
  HandshakeType,
  SIGNATURE_CODES,
  TLS13,
  suiteByName,
  type CipherSuiteInfo,
  type NamedGroup,
  type SignatureScheme,
} from "./constants.js";
import {
  applicationSecrets,
  certificateVerifyContent,
  agreeEphemeral,
  constantTimeEqual,
  digest,
  finishedMac,
  handshakeSecrets,
  keyFitsScheme,
  makeSignature,
  openRecord,
  sealRecord,
  trafficKeys,
  type TrafficKeys,
} from "./crypto.js";
import { TlsError, peerAlertError } from "./errors.js";
import {
  encodeCertificateVerify,
  encodeEncryptedExtensions,
  encodeFinished,
  encodeRawKeyCertificate,
  encodeServerHello,
  messageHash,
  parseClientHello,
} from "./messages.js";
import { ApplicationChannel } from "./channel.js";
import { TlsEndpoint, plainAlert } from "./endpoint.js";
import type { TlsSettings } from "./priority.js";
import { CHANGE_CIPHER_SPEC, HandshakeAssembler, plainRecord, type RawRecord } from "./record.js";

export interface ServerIdentity {
  readonly privateKey: KeyObject;
  /** DER SubjectPublicKeyInfo of the matching public key. */
  readonly publicKeySpki: Buffer;
}

/** What the encrypted part of the server's flight is made from (RFC 8446 §4.3, §4.4). */
export interface ServerFlightContext {
  readonly suite: CipherSuiteInfo;
  readonly scheme: SignatureScheme;
  /** Transcript-Hash of ClientHello..ServerHello followed by `messages`. */
  transcriptHash(messages: readonly Uint8Array[]): Buffer;
  /** The server's Finished MAC over ClientHello..ServerHello followed by `messages`. */
  finishedMac(messages: readonly Uint8Array[]): Buffer;
}

type ServerState =
  | { readonly name: "ExpectClientHello"; readonly retry: { transcript: Buffer; suite: CipherSuiteInfo; group: NamedGroup; sessionId: Buffer } | null }
  | {
      readonly name: "ExpectFinished";
      readonly suite: CipherSuiteInfo;
      readonly group: NamedGroup;
      readonly scheme: SignatureScheme;
      readonly transcriptHash: Buffer;
      readonly clientHandshakeTraffic: Buffer;
      readonly clientHandshakeKeys: TrafficKeys;
      readonly clientApplicationTraffic: Buffer;
      readonly serverApplicationTraffic: Buffer;
      seq: bigint;
    }
  | { readonly name: "Done" };

export class TlsServer extends TlsEndpoint {
  readonly #settings: TlsSettings;
  readonly #identity: ServerIdentity;
  readonly #assembler = new HandshakeAssembler();
  #state: ServerState = { name: "ExpectClientHello", retry: null };
  #ccsSent = false;

  constructor(settings: TlsSettings, identity: ServerIdentity) {
    super();
    this.#settings = settings;
    this.#identity = identity;
  }

  protected get handshakeState(): string {
    return this.#state.name;
  }

  /** The server role runs its crypto inline; it never has a task. */
  takeTask(): null {
    return null;
  }

  /** Never called: there is never a task (drive.ts treats both roles alike). */
  completeTask(): void {}

  /** Our signature scheme: the first of ours the client offers that fits our key (RFC 8446 §4.2.3). */
  protected selectScheme(offered: readonly number[]): SignatureScheme | undefined {
    return this.#settings.signatureSchemes.find((s) => offered.includes(SIGNATURE_CODES[s]) && keyFitsScheme(this.#identity.privateKey, s));
  }

  /**
   * The handshake bytes of the encrypted flight, one element per record:
   * EncryptedExtensions with server_certificate_type RawPublicKey (RFC 7250
   * §4.2), Certificate with our SPKI, CertificateVerify, Finished.
   */
  protected encryptedFlight(c: ServerFlightContext): Buffer[] {
    const ee = encodeEncryptedExtensions(true);
    const cert = encodeRawKeyCertificate(this.#identity.publicKeySpki);
    const signed = certificateVerifyContent("server", c.transcriptHash([ee, cert]));
    const cv = encodeCertificateVerify(c.scheme, makeSignature(c.scheme, this.#identity.privateKey, signed));
    const fin = encodeFinished(c.finishedMac([ee, cert, cv]));
    return [Buffer.concat([ee, cert, cv, fin])];
  }

  protected handshakeAlert(description: number): Buffer {
    return plainAlert(description);
  }

  protected onHandshakeRecord(rec: RawRecord): void {
    const state = this.#state;
    switch (state.name) {
      case "ExpectClientHello": {
        if (rec.type !== ContentType.Handshake) throw new TlsError("TLS_UNEXPECTED_MESSAGE", `record type ${rec.type} before ClientHello`);
        this.#assembler.push(rec.body);
        const msg = this.#assembler.next();
        if (!msg) return;
        if (msg.type !== HandshakeType.ClientHello) throw new TlsError("TLS_UNEXPECTED_MESSAGE", `expected ClientHello, got ${msg.type}`);
        if (this.#assembler.partial || this.#assembler.next()) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "data after ClientHello");
        this.#onClientHello(state, msg.raw, msg.body);
        return;
      }
      case "ExpectFinished": {
        if (rec.type !== ContentType.ApplicationData) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "unprotected record after ServerHello");
        const opened = openRecord(state.suite, state.clientHandshakeKeys, state.seq++, rec.header, rec.body);
        if (opened.type === ContentType.Alert) {
          throw peerAlertError(opened.content[1] ?? -1, opened.content[0]);
        }
        if (opened.type !== ContentType.Handshake) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "application data before Finished");
        this.#assembler.push(opened.content);
        const msg = this.#assembler.next();
        if (!msg) return;
        if (msg.type !== HandshakeType.Finished) throw new TlsError("TLS_UNEXPECTED_MESSAGE", `expected Finished, got ${msg.type}`);
        if (this.#assembler.partial || this.#assembler.next()) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "data after Finished");
        const expected = finishedMac(state.suite, state.clientHandshakeTraffic, state.transcriptHash);
        if (!constantTimeEqual(expected, msg.body)) throw new TlsError("TLS_DECRYPT_ERROR", "client Finished does not verify");
        this.#state = { name: "Done" };
        this.connect(new ApplicationChannel(state.suite, state.clientApplicationTraffic, state.serverApplicationTraffic), {
          type: "handshake-complete",
          peerPublicKey: Buffer.alloc(0),
          keyId: "",
          cipherSuite: state.suite.name,
          group: state.group,
          signatureScheme: state.scheme,
        });
        return;
      }
      case "Done":
        return;
    }
  }

  #onClientHello(state: Extract<ServerState, { name: "ExpectClientHello" }>, raw: Buffer, body: Buffer): void {
    const ch = parseClientHello(body);
    if (!ch.supportedVersions.includes(TLS13)) throw new TlsError("TLS_PROTOCOL_VERSION", "client does not offer TLS 1.3");
    if (!ch.extensions.has(51)) throw new TlsError("TLS_MISSING_EXTENSION", "ClientHello without key_share");
    if (ch.signatureSchemes.length === 0) throw new TlsError("TLS_MISSING_EXTENSION", "ClientHello without signature_algorithms");
    if (!ch.serverCertTypes || !ch.serverCertTypes.includes(CertificateType.RawPublicKey)) {
      throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", "client does not accept a raw public key");
    }
    const suite = this.#settings.cipherSuites.map(suiteByName).find((s) => ch.cipherSuites.includes(s.code));
    if (!suite) throw new TlsError("TLS_HANDSHAKE_FAILURE", "no common cipher suite");
    const scheme = this.selectScheme(ch.signatureSchemes);
    if (!scheme) throw new TlsError("TLS_HANDSHAKE_FAILURE", "no common signature scheme for our key");
    const common = this.#settings.groups.filter((g) => ch.groups.includes(GROUP_CODES[g]));
    const shared = common.find((g) => ch.shares.some((s) => s.group === GROUP_CODES[g]));

    if (state.retry) {
      // RFC 8446 §4.1.2: the second ClientHello must answer the retry.
      if (!shared || shared !== state.retry.group || suite.code !== state.retry.suite.code) {
        throw new TlsError("TLS_ILLEGAL_PARAMETER", "second ClientHello does not answer the HelloRetryRequest");
      }
    } else if (!shared) {
      const group = common[0];
      if (!group) throw new TlsError("TLS_HANDSHAKE_FAILURE", "no common group");
      const hrr = encodeServerHello({ retry: true, sessionId: ch.sessionId, cipherSuite: suite.code, selectedGroup: group });
      this.output(plainRecord(ContentType.Handshake, hrr));
      if (ch.sessionId.length > 0) {
        this.output(CHANGE_CIPHER_SPEC);
        this.#ccsSent = true;
      }
      const transcript = Buffer.concat([messageHash(digest(suite.hash, raw)), hrr]);
      this.#state = { name: "ExpectClientHello", retry: { transcript, suite, group, sessionId: ch.sessionId } };
      return;
    }

    const group = shared!;
    const clientShare = ch.shares.find((s) => s.group === GROUP_CODES[group])!;
    const ours = agreeEphemeral(group, clientShare.key);
    const secret = ours.secret;
    const sh = encodeServerHello({ retry: false, sessionId: ch.sessionId, cipherSuite: suite.code, keyShare: { group, publicKey: ours.publicKey } });
    const prior = state.retry ? state.retry.transcript : Buffer.alloc(0);
    const helloTranscript = Buffer.concat([prior, raw, sh]);
    const hs = handshakeSecrets(suite, secret, digest(suite.hash, helloTranscript));
    const serverKeys = trafficKeys(suite, hs.serverHandshakeTraffic);

    const records = this.encryptedFlight({
      suite,
      scheme,
      transcriptHash: (messages) => digest(suite.hash, Buffer.concat([helloTranscript, ...messages])),
      finishedMac: (messages) =>
        finishedMac(suite, hs.serverHandshakeTraffic, digest(suite.hash, Buffer.concat([helloTranscript, ...messages]))),
    });
    const fullHash = digest(suite.hash, Buffer.concat([helloTranscript, ...records]));
    const app = applicationSecrets(suite, hs.handshakeSecret, fullHash);

    this.output(plainRecord(ContentType.Handshake, sh));
    if (ch.sessionId.length > 0 && !this.#ccsSent) this.output(CHANGE_CIPHER_SPEC);
    let seq = 0n;
    for (const content of records) this.output(sealRecord(suite, serverKeys, seq++, ContentType.Handshake, content));
    this.#state = {
      name: "ExpectFinished",
      suite,
      group,
      scheme,
      transcriptHash: fullHash,
      clientHandshakeTraffic: hs.clientHandshakeTraffic,
      clientHandshakeKeys: trafficKeys(suite, hs.clientHandshakeTraffic),
      clientApplicationTraffic: app.clientApplicationTraffic,
      serverApplicationTraffic: app.serverApplicationTraffic,
      seq: 0n,
    };
  }
}
