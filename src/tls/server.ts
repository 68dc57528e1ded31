// The TLS 1.3 server role, sans-IO: what mandos-client is in the Mandos
// protocol, presenting a raw public key (RFC 7250). Our test client and the
// benchmark's simulated machines run it. Its crypto runs inline: a client
// machine serves one handshake, not thousands.
//
// States: ExpectClientHello -> (HRR) ExpectClientHello (once)
//         -> ExpectFinished -> Connected; any -> Failed.

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
import { TlsError } from "./errors.js";
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
import type { TlsEvent } from "./client.js";
import type { TlsSettings } from "./priority.js";
import { CHANGE_CIPHER_SPEC, HandshakeAssembler, RecordFramer, handshakeHeader, plainRecord, type RawRecord } from "./record.js";

export interface ServerIdentity {
  readonly privateKey: KeyObject;
  /** DER SubjectPublicKeyInfo of the matching public key. */
  readonly publicKeySpki: Buffer;
}

/**
 * Deliberate misbehaviour, for the engine's negative tests only: what a
 * broken or hostile TLS server would send to our client role.
 */
export interface ServerFaults {
  /** Present this SPKI instead of our own (the signature then cannot verify). */
  readonly presentKey?: Buffer;
  /** Sign with this scheme whatever the key (wrong key type for the scheme). */
  readonly scheme?: SignatureScheme;
  /** Flip a bit in the Finished MAC. */
  readonly badFinished?: boolean;
  /** Flip a bit in the signature. */
  readonly badSignature?: boolean;
  /** Send Certificate before EncryptedExtensions. */
  readonly outOfOrder?: boolean;
  /** Leave server_certificate_type out of EncryptedExtensions (X.509 implied). */
  readonly noRawKey?: boolean;
  /** Split the encrypted flight into records of this many bytes. */
  readonly fragment?: number;
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
  | { readonly name: "Connected"; readonly channel: ApplicationChannel }
  | { readonly name: "Failed" };

export class TlsServer {
  readonly #settings: TlsSettings;
  readonly #identity: ServerIdentity;
  readonly #framer = new RecordFramer();
  readonly #assembler = new HandshakeAssembler();
  #state: ServerState = { name: "ExpectClientHello", retry: null };
  #output: Buffer[] = [];
  readonly #events: TlsEvent[] = [];
  #ccsSent = false;
  readonly #faults: ServerFaults;

  constructor(settings: TlsSettings, identity: ServerIdentity, faults: ServerFaults = {}) {
    this.#settings = settings;
    this.#identity = identity;
    this.#faults = faults;
  }

  get state(): string {
    return this.#state.name;
  }

  receive(data: Uint8Array): void {
    if (this.#state.name === "Failed" || data.length === 0) return;
    try {
      this.#framer.push(data);
      for (let rec = this.#framer.next(); rec; rec = this.#framer.next()) {
        this.#onRecord(rec);
        if (this.#failed()) return;
      }
    } catch (error) {
      this.#fail(error);
    }
  }

  takeOutput(): Buffer | null {
    if (this.#output.length === 0) return null;
    const out = this.#output.length === 1 ? this.#output[0]! : Buffer.concat(this.#output);
    this.#output = [];
    return out;
  }

  nextEvent(): TlsEvent | null {
    return this.#events.shift() ?? null;
  }

  /** The server role runs its crypto inline; it never has a task. */
  takeTask(): null {
    return null;
  }

  send(data: Uint8Array): void {
    if (this.#state.name !== "Connected") {
      this.#fail(new TlsError("TLS_INTERNAL", "send before the handshake is complete"));
      return;
    }
    this.#state.channel.send(data, this.#output);
  }

  close(): void {
    if (this.#state.name === "Connected") this.#state.channel.close(this.#output);
  }

  /** Sends a KeyUpdate (RFC 8446 §4.6.3) and switches our write keys. */
  keyUpdate(requestUpdate: boolean): void {
    if (this.#state.name === "Connected") this.#state.channel.keyUpdate(requestUpdate, this.#output);
  }

  /** Sends a NewSessionTicket the client must ignore (we never resume). */
  sendTicket(): void {
    if (this.#state.name !== "Connected") return;
    // lifetime, age_add, nonce, ticket, no extensions (RFC 8446 §4.6.1).
    const body = Buffer.concat([Buffer.from("0000a8c0" + "01020304" + "01" + "00" + "0004" + "deadbeef" + "0000", "hex")]);
    this.#state.channel.sendHandshake(handshakeHeader(HandshakeType.NewSessionTicket, body), this.#output);
  }

  #failed(): boolean {
    return this.#state.name === "Failed";
  }

  #onRecord(rec: RawRecord): void {
    const state = this.#state;
    if (rec.type === ContentType.ChangeCipherSpec) {
      if (state.name === "Connected" || rec.body.length !== 1 || rec.body[0] !== 1) {
        throw new TlsError("TLS_UNEXPECTED_MESSAGE", "change_cipher_spec out of place");
      }
      return;
    }
    if (rec.type === ContentType.Alert && state.name !== "Connected") {
      if (rec.body.length !== 2) throw new TlsError("TLS_DECODE", "malformed alert");
      throw new TlsError("TLS_PEER_ALERT", `peer sent alert ${rec.body[1]}`, -1);
    }
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
          throw new TlsError("TLS_PEER_ALERT", `peer sent alert ${opened.content[1] ?? "?"}`, -1);
        }
        if (opened.type !== ContentType.Handshake) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "application data before Finished");
        this.#assembler.push(opened.content);
        const msg = this.#assembler.next();
        if (!msg) return;
        if (msg.type !== HandshakeType.Finished) throw new TlsError("TLS_UNEXPECTED_MESSAGE", `expected Finished, got ${msg.type}`);
        if (this.#assembler.partial || this.#assembler.next()) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "data after Finished");
        const expected = finishedMac(state.suite, state.clientHandshakeTraffic, state.transcriptHash);
        if (!constantTimeEqual(expected, msg.body)) throw new TlsError("TLS_DECRYPT_ERROR", "client Finished does not verify");
        this.#state = {
          name: "Connected",
          channel: new ApplicationChannel(state.suite, state.clientApplicationTraffic, state.serverApplicationTraffic),
        };
        this.#events.push({
          type: "handshake-complete",
          peerPublicKey: Buffer.alloc(0),
          keyId: "",
          cipherSuite: state.suite.name,
          group: state.group,
          signatureScheme: state.scheme,
        });
        return;
      }
      case "Connected": {
        const got = state.channel.receive(rec, this.#output);
        if (got.kind === "data") this.#events.push({ type: "data", data: got.data });
        else if (got.kind === "closed") this.#events.push({ type: "closed" });
        return;
      }
      case "Failed":
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
    const scheme =
      this.#faults.scheme ??
      this.#settings.signatureSchemes.find(
        (s) => ch.signatureSchemes.includes(SIGNATURE_CODES[s]) && keyFitsScheme(this.#identity.privateKey, s),
      );
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
      this.#output.push(plainRecord(ContentType.Handshake, hrr));
      if (ch.sessionId.length > 0) {
        this.#output.push(CHANGE_CIPHER_SPEC);
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

    const f = this.#faults;
    const ee = encodeEncryptedExtensions(!f.noRawKey);
    const cert = encodeRawKeyCertificate(f.presentKey ?? this.#identity.publicKeySpki);
    const first = f.outOfOrder ? [cert, ee] : [ee, cert];
    const toSign = digest(suite.hash, Buffer.concat([helloTranscript, ...first]));
    let signature: Buffer;
    try {
      signature = makeSignature(scheme, this.#identity.privateKey, certificateVerifyContent("server", toSign));
    } catch {
      signature = Buffer.alloc(64, 1); // a fault test's impossible scheme
    }
    if (f.badSignature) signature[signature.length - 1]! ^= 1;
    const cv = encodeCertificateVerify(scheme, signature);
    const beforeFinished = Buffer.concat([helloTranscript, ...first, cv]);
    const mac = finishedMac(suite, hs.serverHandshakeTraffic, digest(suite.hash, beforeFinished));
    if (f.badFinished) mac[0]! ^= 0x80;
    const fin = encodeFinished(mac);
    const full = Buffer.concat([beforeFinished, fin]);
    const fullHash = digest(suite.hash, full);
    const app = applicationSecrets(suite, hs.handshakeSecret, fullHash);

    this.#output.push(plainRecord(ContentType.Handshake, sh));
    if (ch.sessionId.length > 0 && !this.#ccsSent) this.#output.push(CHANGE_CIPHER_SPEC);
    const flight = Buffer.concat([...first, cv, fin]);
    const size = f.fragment ?? flight.length;
    let seq = 0n;
    for (let i = 0; i < flight.length; i += size) {
      this.#output.push(sealRecord(suite, serverKeys, seq++, ContentType.Handshake, flight.subarray(i, i + size)));
    }
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

  #fail(error: unknown): void {
    if (this.#state.name === "Failed") return;
    const tlsError = error instanceof TlsError ? error : new TlsError("TLS_INTERNAL", "internal error");
    if (tlsError.alert >= 0) {
      const state = this.#state;
      if (state.name === "Connected") {
        const rec = state.channel.alert(tlsError.alert);
        if (rec) this.#output.push(rec);
      } else {
        this.#output.push(plainRecord(ContentType.Alert, Buffer.of(2, tlsError.alert)));
      }
    }
    this.#state = { name: "Failed" };
    this.#events.push({ type: "error", error: tlsError });
  }
}
