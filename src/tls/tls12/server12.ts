// The TLS 1.2 server role with an OpenPGP certificate, sans-IO: what a
// legacy mandos-client (GnuTLS 3.5) is in the Mandos protocol. Our tests
// and the benchmark's simulated legacy machines run it against our client
// role; it sends what the recorded real peer sends (docs/PROTOCOL.md,
// "Legacy clients"): each handshake message of its flight in its own
// record, a 32-byte session ID, cert_type OpenPGP, the subkey_cert form.
// Its crypto runs inline: a client machine serves one handshake.
//
// States: ExpectClientHello -> ExpectClientKeyExchange
//         -> ExpectChangeCipherSpec -> ExpectFinished -> Connected.
//
// `Tls12ServerFaults` makes it send what a broken or hostile legacy peer
// would, for the negative tests; none is set in normal use.

import { createECDH, createHash, randomBytes, sign as cryptoSign, type KeyObject } from "node:crypto";
import { ContentType, HandshakeType } from "../constants.js";
import { constantTimeEqual } from "../crypto.js";
import { TlsEndpoint, plainAlert } from "../endpoint.js";
import { TlsError } from "../errors.js";
import { dheShare } from "../ffdhe.js";
import { parseClientHello } from "../messages.js";
import { CHANGE_CIPHER_SPEC, HandshakeAssembler, handshakeHeader, plainRecord, type RawRecord } from "../record.js";
import { Tls12Channel } from "./channel12.js";
import { finished12, keyBlock12, masterSecret12, open12, seal12, type Tls12Keys } from "./crypto12.js";
import {
  HELLO_REQUEST,
  SERVER_HELLO_DONE,
  encodeDheParams,
  encodeEcdheParams,
  encodeOpenPgpCertificateMessage,
  encodeServerHello12,
  encodeServerKeyExchange,
  parseClientKeyExchange,
  serverKeyExchangeContent,
} from "./messages12.js";
import { CertType12, Extension12, TLS12_SUITES, TLS12_CURVES, tls12SuiteByCode, type Tls12Suite } from "./suites.js";

export interface OpenPgpIdentity {
  /** The primary key's private half (RSA). */
  readonly privateKey: KeyObject;
  /** The binary transferable public key (RFC 4880 §11.1) sent in Certificate. */
  readonly publicKey: Uint8Array;
  /** The primary key's 8-byte key ID. */
  readonly keyId: Uint8Array;
}

export interface Tls12ServerOptions {
  /** Finite-field DH parameters: with them DHE_RSA suites are chosen first (mandos-client --dh-params). */
  readonly dhParams?: { readonly prime: Uint8Array; readonly generator: Uint8Array };
  /** Prefer ChaCha20-Poly1305 over AES-256-GCM. */
  readonly preferChaCha?: boolean;
  /** Curve for ECDHE (a code point); default secp384r1. */
  readonly curve?: number;
  readonly faults?: Tls12ServerFaults;
}

export interface Tls12ServerFaults {
  /** Choose this suite whatever was offered. */
  readonly suite?: number;
  /** server_version in ServerHello. */
  readonly version?: number;
  /** cert_type in ServerHello: a value, or null to leave it out. */
  readonly certType?: number | null;
  /** Add server_certificate_type (RFC 7250) = RawPublicKey to the ServerHello. */
  readonly rawKeyExtension?: boolean;
  /** A TLS 1.3 downgrade sentinel at the end of ServerHello.random. */
  readonly downgradeSentinel?: boolean;
  /** Leave out extended_master_secret even when offered. */
  readonly noExtendedMasterSecret?: boolean;
  /** A non-empty renegotiated_connection in renegotiation_info. */
  readonly renegotiationInfo?: boolean;
  /** The Certificate body as sent (instead of ours). */
  readonly certificateBody?: Uint8Array;
  /** Change one byte of the ServerKeyExchange signature. */
  readonly tamperSignature?: boolean;
  /** The SignatureAndHashAlgorithm to claim (and sign with, when it is RSA PKCS#1). */
  readonly signatureScheme?: number;
  /** A HelloRequest once connected (a renegotiation attempt). */
  readonly helloRequestAfterHandshake?: boolean;
  /** A HelloRequest in the middle of the flight. */
  readonly helloRequestInFlight?: boolean;
  /** A CertificateRequest before ServerHelloDone. */
  readonly certificateRequest?: boolean;
  /** Change one byte of our Finished's verify_data before sealing it. */
  readonly badFinished?: boolean;
  /** Send the flight's handshake bytes in records of this many bytes (RFC 5246 §6.2.1 allows any split). */
  readonly fragment?: number;
  /** After our change_cipher_spec, a protected fatal alert of this description instead of our Finished. */
  readonly alertInsteadOfFinished?: number;
  /** After the ServerHello, the header of a handshake record of 2^16 − 1 bytes (RFC 5246 §6.2.1 allows 2^14), and nothing more. */
  readonly oversizedRecord?: boolean;
  /** After the ServerHello, the first 20 bytes of the Certificate's record, then the end of the stream (a failure, for the driver to close). */
  readonly cutInsideRecord?: boolean;
}

type State =
  | { readonly name: "ExpectClientHello" }
  | { readonly name: "ExpectClientKeyExchange"; readonly ctx: Context }
  | { readonly name: "ExpectChangeCipherSpec"; readonly ctx: Context; readonly master: Buffer; readonly keys: { client: Tls12Keys; server: Tls12Keys } }
  | { readonly name: "ExpectFinished"; readonly ctx: Context; readonly master: Buffer; readonly keys: { client: Tls12Keys; server: Tls12Keys } }
  | { readonly name: "Done" };

interface Context {
  readonly suite: Tls12Suite;
  readonly clientRandom: Buffer;
  readonly serverRandom: Buffer;
  readonly ems: boolean;
  readonly transcript: Buffer[];
  readonly agree: (peer: Buffer) => Buffer;
}

export class Tls12Server extends TlsEndpoint {
  readonly #identity: OpenPgpIdentity;
  readonly #options: Tls12ServerOptions;
  readonly #faults: Tls12ServerFaults;
  readonly #hs = new HandshakeAssembler();
  #state: State = { name: "ExpectClientHello" };

  constructor(identity: OpenPgpIdentity, options: Tls12ServerOptions = {}) {
    super();
    this.#identity = identity;
    this.#options = options;
    this.#faults = options.faults ?? {};
  }

  protected get handshakeState(): string {
    return this.#state.name;
  }

  protected override get alertsProtected(): boolean {
    return this.#state.name === "ExpectFinished";
  }

  /** Crypto runs inline. */
  takeTask(): null {
    return null;
  }

  completeTask(): void {}

  protected onHandshakeRecord(rec: RawRecord): void {
    const state = this.#state;
    if (state.name === "ExpectFinished") return this.#onFinished(state, rec);
    if (rec.type !== ContentType.Handshake) throw new TlsError("TLS_UNEXPECTED_MESSAGE", `record type ${rec.type} in ${state.name}`);
    this.#hs.push(rec.body);
    for (let msg = this.#hs.next(); msg; msg = this.#hs.next()) {
      const s = this.#state;
      if (s.name === "ExpectClientHello" && msg.type === HandshakeType.ClientHello) this.#onClientHello(msg.raw, msg.body);
      else if (s.name === "ExpectClientKeyExchange" && msg.type === 16) this.#onClientKeyExchange(s.ctx, msg.raw, msg.body);
      else throw new TlsError("TLS_UNEXPECTED_MESSAGE", `handshake message ${msg.type} in ${s.name}`);
    }
  }

  protected override onChangeCipherSpec(): void {
    const s = this.#state;
    if (s.name !== "ExpectChangeCipherSpec" || this.#hs.partial) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "change_cipher_spec out of place");
    this.#state = { name: "ExpectFinished", ctx: s.ctx, master: s.master, keys: s.keys };
  }

  protected handshakeAlert(description: number): Buffer {
    return plainAlert(description);
  }

  #onClientHello(raw: Buffer, body: Buffer): void {
    const ch = parseClientHello(body);
    const f = this.#faults;
    // What GnuTLS 3.5 with the legacy priority needs of the client (docs/PROTOCOL.md).
    const certTypes = ch.extensions.get(Extension12.CertType);
    if (!certTypes || !certTypes.subarray(1).includes(CertType12.OpenPgp)) throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", "client does not take OpenPGP certificates");
    const dh = this.#options.dhParams;
    const preference = [...TLS12_SUITES]
      .filter((s) => (s.kx === "DHE_RSA" ? Boolean(dh) : true))
      .sort((a, b) => rank(a) - rank(b));
    function rank(s: Tls12Suite): number {
      return (s.kx === "DHE_RSA" ? 0 : 2) + (s.cipher === "chacha20-poly1305" ? 1 : 0);
    }
    if (this.#options.preferChaCha) preference.sort((a, b) => (a.cipher === b.cipher ? 0 : a.cipher === "chacha20-poly1305" ? -1 : 1));
    const chosen = f.suite ?? preference.find((s) => ch.cipherSuites.includes(s.code))?.code;
    if (chosen === undefined) throw new TlsError("TLS_HANDSHAKE_FAILURE", "no common cipher suite");
    const suite = tls12SuiteByCode(chosen) ?? { ...TLS12_SUITES[0]!, code: chosen };
    const curve = this.#options.curve ?? TLS12_CURVES.secp384r1;
    if (suite.kx === "ECDHE_RSA" && !ch.groups.includes(curve) && f.suite === undefined && this.#options.curve === undefined) {
      throw new TlsError("TLS_HANDSHAKE_FAILURE", "no common curve");
    }
    const ems = ch.extensions.has(Extension12.ExtendedMasterSecret) && !f.noExtendedMasterSecret;
    const serverRandom = randomBytes(32);
    if (f.downgradeSentinel) Buffer.from("444f574e47524401", "hex").copy(serverRandom, 24);
    const extra = f.rawKeyExtension ? [{ type: 20, data: Buffer.of(2) }] : [];
    const serverHello = encodeServerHello12({
      random: serverRandom,
      sessionId: randomBytes(32),
      cipherSuite: chosen,
      certType: f.certType === undefined ? CertType12.OpenPgp : f.certType,
      extendedMasterSecret: ems,
      renegotiationInfo: !f.renegotiationInfo,
      extra: f.renegotiationInfo ? [...extra, { type: Extension12.RenegotiationInfo, data: Buffer.from("0c0102030405060708090a0b0c", "hex") }] : extra,
    });
    if (f.version !== undefined) serverHello.writeUInt16BE(f.version, 4);
    const certificate = handshakeHeader(
      HandshakeType.Certificate,
      f.certificateBody ?? encodeOpenPgpCertificateMessage(this.#identity.keyId, this.#identity.publicKey),
    );
    // The key exchange.
    let params: Buffer;
    let agree: (peer: Buffer) => Buffer;
    if (suite.kx === "DHE_RSA" && dh) {
      // As flight12.ts does, without DH_check's primality test (ffdhe.ts).
      const share = dheShare(dh.prime, dh.generator, dh.prime.length * 8);
      params = encodeDheParams(dh.prime, dh.generator, share.publicValue);
      agree = (peer) => share.agree(peer);
    } else {
      const name = curve === 0x17 ? "prime256v1" : curve === 0x19 ? "secp521r1" : curve === 0x1d ? "x25519" : "secp384r1";
      if (name === "x25519") {
        params = encodeEcdheParams(curve, randomBytes(32));
        agree = () => {
          throw new TlsError("TLS_HANDSHAKE_FAILURE", "test server cannot finish x25519");
        };
      } else {
        const e = createECDH(name);
        params = encodeEcdheParams(curve, e.generateKeys());
        agree = (peer) => {
          try {
            return e.computeSecret(peer);
          } catch {
            throw new TlsError("TLS_ILLEGAL_PARAMETER", "bad client point");
          }
        };
      }
    }
    const scheme = f.signatureScheme ?? 0x0501;
    const hash = scheme === 0x0601 ? "sha512" : scheme === 0x0401 ? "sha256" : "sha384";
    const signature = cryptoSign(hash, serverKeyExchangeContent(ch.random, serverRandom, params), this.#identity.privateKey);
    if (f.tamperSignature) signature[signature.length - 7]! ^= 0x40;
    const ske = encodeServerKeyExchange(params, scheme, signature);
    const flight = [serverHello, certificate];
    if (f.helloRequestInFlight) flight.push(HELLO_REQUEST);
    flight.push(ske);
    if (f.certificateRequest) flight.push(handshakeHeader(13, Buffer.from("01010000", "hex")));
    flight.push(SERVER_HELLO_DONE);
    if (f.cutInsideRecord) {
      this.output(plainRecord(ContentType.Handshake, serverHello));
      this.output(plainRecord(ContentType.Handshake, certificate).subarray(0, 20));
      this.fail(new TlsError("TLS_INTERNAL", "fault: the stream ends inside a record"), true);
      return;
    }
    if (f.oversizedRecord) {
      this.output(plainRecord(ContentType.Handshake, serverHello));
      this.output(Buffer.of(ContentType.Handshake, 3, 3, 0xff, 0xff));
    } else if (f.fragment) {
      const all = Buffer.concat(flight);
      for (let i = 0; i < all.length; i += f.fragment) this.output(plainRecord(ContentType.Handshake, all.subarray(i, i + f.fragment)));
    } else {
      for (const m of flight) this.output(plainRecord(ContentType.Handshake, m));
    }
    const ctx: Context = {
      suite: tls12SuiteByCode(chosen) ?? TLS12_SUITES[0]!,
      clientRandom: Buffer.from(ch.random),
      serverRandom,
      ems,
      transcript: [raw, ...flight],
      agree,
    };
    this.#state = { name: "ExpectClientKeyExchange", ctx };
  }

  #onClientKeyExchange(ctx: Context, raw: Buffer, body: Buffer): void {
    const pub = parseClientKeyExchange(body, ctx.suite.kx);
    const pms = ctx.agree(pub);
    ctx.transcript.push(raw);
    const master = ctx.ems
      ? masterSecret12(ctx.suite, pms, { sessionHash: this.#hash(ctx, ctx.transcript) })
      : masterSecret12(ctx.suite, pms, { clientRandom: ctx.clientRandom, serverRandom: ctx.serverRandom });
    const keys = keyBlock12(ctx.suite, master, ctx.clientRandom, ctx.serverRandom);
    this.#state = { name: "ExpectChangeCipherSpec", ctx, master, keys };
  }

  #onFinished(state: Extract<State, { name: "ExpectFinished" }>, rec: RawRecord): void {
    const { ctx, master, keys } = state;
    const plain = open12(ctx.suite, keys.client, 0n, rec.type, rec.body);
    if (rec.type === ContentType.Alert) throw new TlsError("TLS_PEER_ALERT", `peer sent alert ${plain[1] ?? -1}`, -1, plain[1] ?? -1);
    if (rec.type !== ContentType.Handshake || plain.length !== 16 || plain[0] !== HandshakeType.Finished) {
      throw new TlsError("TLS_UNEXPECTED_MESSAGE", "not the client's Finished");
    }
    const expected = finished12(ctx.suite, master, "client", this.#hash(ctx, ctx.transcript));
    if (!constantTimeEqual(expected, plain.subarray(4))) throw new TlsError("TLS_DECRYPT_ERROR", "client Finished does not verify");
    ctx.transcript.push(plain);
    const verify = finished12(ctx.suite, master, "server", this.#hash(ctx, ctx.transcript));
    if (this.#faults.badFinished) verify[0]! ^= 1;
    this.output(CHANGE_CIPHER_SPEC);
    if (this.#faults.alertInsteadOfFinished !== undefined) {
      this.output(seal12(ctx.suite, keys.server, 0n, ContentType.Alert, Buffer.of(2, this.#faults.alertInsteadOfFinished)));
      this.#state = { name: "Done" };
      return;
    }
    this.output(seal12(ctx.suite, keys.server, 0n, ContentType.Handshake, handshakeHeader(HandshakeType.Finished, verify)));
    this.#state = { name: "Done" };
    const channel = new Tls12Channel(ctx.suite, keys.client, keys.server);
    this.connect(channel, {
      type: "handshake-complete",
      peerPublicKey: Buffer.alloc(0),
      keyId: "",
      cipherSuite: ctx.suite.name,
      group: "",
      signatureScheme: "",
      version: "TLS1.2",
    });
    if (this.#faults.helloRequestAfterHandshake) this.sendHandshakeMessage(HELLO_REQUEST);
  }

  #hash(ctx: Context, parts: readonly Uint8Array[]): Buffer {
    const h = createHash(ctx.suite.hash);
    for (const p of parts) h.update(p);
    return h.digest();
  }
}
