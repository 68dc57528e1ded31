// Encoding and decoding of the TLS 1.2 handshake messages of the legacy
// Mandos protocol (RFC 5246 §7.4, RFC 8422 §5.4 for ECDHE, RFC 6091 for
// cert_type and the OpenPGP Certificate): the TLS 1.2 ServerHello,
// Certificate, ServerKeyExchange, ServerHelloDone, ClientKeyExchange.
// Decoders check every length; the state machines decide what is
// acceptable. The OpenPGP key inside the Certificate is openpgp-cert.ts's.

import { verify as cryptoVerify, type KeyObject } from "node:crypto";
import { HandshakeType, LEGACY_VERSION } from "../constants.js";
import { TlsError } from "../errors.js";
import { readExtensions } from "../messages.js";
import { Reader, Writer } from "../reader.js";
import { handshakeHeader } from "../record.js";
import { CertType12, Extension12, Handshake12, TLS12, tls12SignatureByCode, signatureHash, type Tls12KeyExchange } from "./suites.js";

export interface ParsedServerHello12 {
  readonly version: number;
  readonly random: Buffer;
  readonly sessionId: Buffer;
  readonly cipherSuite: number;
  /** RFC 6091 server form: one byte; null when absent (X.509 implied). */
  readonly certType: number | null;
  readonly extendedMasterSecret: boolean;
  /** renegotiation_info's renegotiated_connection; null when absent. */
  readonly renegotiationInfo: Buffer | null;
  /** RFC 7250 server_certificate_type, which we offer for TLS 1.3 only; null when absent. */
  readonly serverCertType: number | null;
}

/** Whether a ServerHello body names TLS 1.3 (RFC 8446 §4.2.1: supported_versions); cheap, for the dispatch. */
export function serverHelloIsTls13(body: Buffer): boolean {
  const r = new Reader(body);
  r.u16("legacy_version");
  r.bytes(32, "random");
  r.vector(1, "legacy_session_id_echo");
  r.u16("cipher_suite");
  r.u8("compression");
  if (r.remaining === 0) return false;
  return readExtensions(r, "ServerHello").some((e) => e.type === 43);
}

/**
 * A TLS 1.2 ServerHello. Extensions we did not offer, or offered but in a
 * form we did not ask for, are unsupported_extension (RFC 5246 §7.4.1.4).
 */
export function parseServerHello12(body: Buffer): ParsedServerHello12 {
  const r = new Reader(body);
  const version = r.u16("server_version");
  const random = r.bytes(32, "random");
  const sessionId = r.vector(1, "session_id");
  if (sessionId.length > 32) throw new TlsError("TLS_DECODE", "session_id longer than 32");
  const cipherSuite = r.u16("cipher_suite");
  const compression = r.u8("compression_method");
  if (compression !== 0) throw new TlsError("TLS_ILLEGAL_PARAMETER", "ServerHello compression is not null");
  let certType: number | null = null;
  let extendedMasterSecret = false;
  let renegotiationInfo: Buffer | null = null;
  let serverCertType: number | null = null;
  if (r.remaining > 0) {
    for (const ext of readExtensions(r, "ServerHello")) {
      const x = new Reader(ext.data);
      switch (ext.type) {
        case Extension12.CertType:
          certType = x.u8("cert_type");
          break;
        case Extension12.ExtendedMasterSecret:
          extendedMasterSecret = true;
          break;
        case Extension12.RenegotiationInfo:
          renegotiationInfo = x.vector(1, "renegotiated_connection");
          break;
        case 20:
          serverCertType = x.u8("server_certificate_type");
          break;
        case Extension12.EcPointFormats: {
          const formats = x.vector(1, "ec_point_formats", 1);
          // RFC 8422 §5.2: uncompressed must be among them.
          if (!formats.includes(0)) throw new TlsError("TLS_ILLEGAL_PARAMETER", "server cannot take uncompressed points");
          break;
        }
        default:
          throw new TlsError("TLS_UNSUPPORTED_EXTENSION", `unexpected extension ${ext.type} in a TLS 1.2 ServerHello`);
      }
      x.end(`extension ${ext.type}`);
    }
  }
  r.end("ServerHello");
  return { version, random, sessionId, cipherSuite, certType, extendedMasterSecret, renegotiationInfo, serverCertType };
}

export function encodeServerHello12(p: {
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cipherSuite: number;
  readonly certType: number | null;
  readonly extendedMasterSecret: boolean;
  readonly renegotiationInfo: boolean;
  readonly extra?: ReadonlyArray<{ type: number; data: Uint8Array }>;
}): Buffer {
  const w = new Writer(128);
  w.u16(TLS12).bytes(p.random).open(1).bytes(p.sessionId).close().u16(p.cipherSuite).u8(0);
  w.open(2);
  if (p.extendedMasterSecret) w.u16(Extension12.ExtendedMasterSecret).u16(0);
  if (p.certType !== null) w.u16(Extension12.CertType).u16(1).u8(p.certType);
  if (p.renegotiationInfo) w.u16(Extension12.RenegotiationInfo).u16(1).u8(0);
  w.u16(Extension12.EcPointFormats).u16(2).u8(1).u8(0);
  for (const e of p.extra ?? []) w.u16(e.type).open(2).bytes(e.data).close();
  w.close();
  return handshakeHeader(HandshakeType.ServerHello, w.finish());
}

export { CertType12, LEGACY_VERSION };

// ------------------------------------------------------ Certificate (RFC 6091 §3.3)

/** RFC 6091 §3.3 descriptor types. */
const DESCRIPTOR = { KeyFingerprint: 0, Key: 1, SubkeyCert: 2, SubkeyCertFingerprint: 3 } as const;

export interface OpenPgpCertificateMessage {
  /** The binary transferable public key (RFC 4880 §11.1), not yet parsed. */
  readonly key: Buffer;
  /** subkey_cert: the key ID the peer says it signs with (8 bytes); null for a bare key. */
  readonly keyId: Buffer | null;
}

/**
 * The Certificate body's TLS framing: descriptor type 2 (subkey_cert: key
 * ID + key) or 1 (key only), no trailing bytes (decode_error); types 0 and
 * 3 name a fingerprint to look up in a key ring, which we keep no more than
 * the reference does (unsupported_certificate); an empty certificate is
 * bad_certificate (RFC 5081 §3.3).
 */
export function parseOpenPgpCertificateMessage(body: Uint8Array): OpenPgpCertificateMessage {
  const r = new Reader(body);
  // The outer length: RFC 6091 §3.3 makes it the length of the rest; GnuTLS
  // 3.5 writes the key's length + 6 for a subkey_cert (the recorded session
  // has 2237 for 2244 bytes) and reads it only as "is there a certificate".
  // Either form is taken; anything else is decode_error.
  const outer = r.u24("certificate length");
  if (outer === 0) throw new TlsError("TLS_BAD_CERTIFICATE", "OpenPGP certificate: empty");
  const cert = new Reader(r.bytes(r.remaining, "OpenPGP certificate"));
  const type = cert.u8("descriptor type");
  let keyId: Buffer | null = null;
  let key: Buffer;
  if (type === DESCRIPTOR.SubkeyCert) {
    keyId = cert.vector(1, "key ID", 8);
    if (keyId.length !== 8) throw new TlsError("TLS_DECODE", "OpenPGP key ID is not 8 bytes");
    key = cert.vector(3, "OpenPGP key", 1);
  } else if (type === DESCRIPTOR.Key) {
    key = cert.vector(3, "OpenPGP key");
    if (key.length === 0) throw new TlsError("TLS_BAD_CERTIFICATE", "OpenPGP certificate: empty");
  } else if (type === DESCRIPTOR.KeyFingerprint || type === DESCRIPTOR.SubkeyCertFingerprint) {
    throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", "an OpenPGP fingerprint instead of a key");
  } else {
    throw new TlsError("TLS_DECODE", `unknown OpenPGP descriptor type ${type}`);
  }
  cert.end("OpenPGP certificate");
  const whole = body.length - 3;
  if (outer !== whole && !(type === DESCRIPTOR.SubkeyCert && outer === key.length + 6)) {
    throw new TlsError("TLS_DECODE", "OpenPGP certificate length does not match");
  }
  return { key, keyId };
}

/** The Certificate body a legacy client sends: subkey_cert with the primary key's ID, the outer length as GnuTLS 3.5 writes it. */
export function encodeOpenPgpCertificateMessage(keyId: Uint8Array, key: Uint8Array): Buffer {
  const w = new Writer(key.length + 32);
  w.u24(key.length + 6).u8(DESCRIPTOR.SubkeyCert);
  w.open(1).bytes(keyId).close();
  w.open(3).bytes(key).close();
  return w.finish();
}

// ------------------------------------------------------ ServerKeyExchange

export type KeyExchangeParams =
  | { readonly kind: "ecdhe"; readonly curve: number; readonly point: Buffer }
  | { readonly kind: "dhe"; readonly p: Buffer; readonly g: Buffer; readonly ys: Buffer };

export interface ParsedServerKeyExchange {
  /** The params bytes as sent: what the signature covers after the randoms. */
  readonly params: Buffer;
  readonly exchange: KeyExchangeParams;
  readonly signatureScheme: number;
  readonly signature: Buffer;
  /** Verifies the signature (RSASSA-PKCS1-v1_5 with the scheme's hash) over `content` with `key`. */
  verify(key: KeyObject, content: Uint8Array): boolean;
}

export function parseServerKeyExchange(body: Buffer, kx: Tls12KeyExchange): ParsedServerKeyExchange {
  const r = new Reader(body);
  let exchange: KeyExchangeParams;
  if (kx === "ECDHE_RSA") {
    const curveType = r.u8("curve_type");
    // RFC 8422 §5.4: named_curve (3) only; explicit curves are deprecated.
    if (curveType !== 3) throw new TlsError("TLS_ILLEGAL_PARAMETER", `ECParameters curve_type ${curveType}`);
    const curve = r.u16("named_curve");
    exchange = { kind: "ecdhe", curve, point: r.vector(1, "ECPoint", 1) };
  } else {
    exchange = { kind: "dhe", p: r.vector(2, "dh_p", 1), g: r.vector(2, "dh_g", 1), ys: r.vector(2, "dh_Ys", 1) };
  }
  const paramsLength = body.length - r.remaining;
  const signatureScheme = r.u16("SignatureAndHashAlgorithm");
  const signature = r.vector(2, "signature", 1);
  r.end("ServerKeyExchange");
  return {
    params: body.subarray(0, paramsLength),
    exchange,
    signatureScheme,
    signature,
    verify(key: KeyObject, content: Uint8Array): boolean {
      const s = tls12SignatureByCode(signatureScheme);
      if (!s) return false;
      try {
        return cryptoVerify(signatureHash(s), content, key, signature);
      } catch {
        return false;
      }
    },
  };
}

/** What the ServerKeyExchange signature covers (RFC 5246 §7.4.3). */
export function serverKeyExchangeContent(clientRandom: Uint8Array, serverRandom: Uint8Array, params: Uint8Array): Buffer {
  return Buffer.concat([clientRandom, serverRandom, params]);
}

export function encodeServerKeyExchange(params: Uint8Array, scheme: number, signature: Uint8Array): Buffer {
  const w = new Writer(params.length + signature.length + 8);
  w.bytes(params).u16(scheme).open(2).bytes(signature).close();
  return handshakeHeader(Handshake12.ServerKeyExchange, w.finish());
}

export function encodeEcdheParams(curve: number, point: Uint8Array): Buffer {
  return new Writer(point.length + 8).u8(3).u16(curve).open(1).bytes(point).close().finish();
}

export function encodeDheParams(p: Uint8Array, g: Uint8Array, ys: Uint8Array): Buffer {
  return new Writer(p.length * 2 + 16).open(2).bytes(p).close().open(2).bytes(g).close().open(2).bytes(ys).close().finish();
}

// ------------------------------------------------------ ClientKeyExchange

export function encodeClientKeyExchange(kx: Tls12KeyExchange, publicValue: Uint8Array): Buffer {
  const w = new Writer(publicValue.length + 8);
  if (kx === "ECDHE_RSA") w.open(1).bytes(publicValue).close();
  else w.open(2).bytes(publicValue).close();
  return handshakeHeader(Handshake12.ClientKeyExchange, w.finish());
}

export function parseClientKeyExchange(body: Buffer, kx: Tls12KeyExchange): Buffer {
  const r = new Reader(body);
  const v = kx === "ECDHE_RSA" ? r.vector(1, "ECPoint", 1) : r.vector(2, "dh_Yc", 1);
  r.end("ClientKeyExchange");
  return v;
}

export const SERVER_HELLO_DONE = handshakeHeader(Handshake12.ServerHelloDone, Buffer.alloc(0));
export const HELLO_REQUEST = handshakeHeader(Handshake12.HelloRequest, Buffer.alloc(0));
