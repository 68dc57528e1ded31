// The TLS 1.2 code points the legacy Mandos protocol needs (GnuTLS < 3.6
// peers with OpenPGP certificates): cipher suites, certificate types,
// extensions, and the signature algorithms of RFC 5246 §7.4.1.4.1. Only
// AEAD suites with ephemeral key exchange (RFC 5289, RFC 7905): no CBC, no
// RSA key transport, no export or NULL suites (docs/PROTOCOL.md, "Legacy
// clients").

import { LEGACY_VERSION } from "../constants.js";

export type Tls12KeyExchange = "ECDHE_RSA" | "DHE_RSA";

export interface Tls12Suite {
  readonly name: string;
  readonly code: number;
  readonly kx: Tls12KeyExchange;
  /** The PRF's hash and the Finished hash (RFC 5246 §5; RFC 5289 §3.2). */
  readonly hash: "sha256" | "sha384";
  readonly cipher: "aes-256-gcm" | "chacha20-poly1305";
  readonly keyLength: 32;
  /** Implicit IV bytes from the key block: 4 for GCM (RFC 5288 §3), 12 for ChaCha20 (RFC 7905 §2). */
  readonly fixedIvLength: 4 | 12;
}

export const TLS12_SUITES: readonly Tls12Suite[] = [
  { name: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", code: 0xc030, kx: "ECDHE_RSA", hash: "sha384", cipher: "aes-256-gcm", keyLength: 32, fixedIvLength: 4 },
  { name: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", code: 0xcca8, kx: "ECDHE_RSA", hash: "sha256", cipher: "chacha20-poly1305", keyLength: 32, fixedIvLength: 12 },
  { name: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", code: 0x009f, kx: "DHE_RSA", hash: "sha384", cipher: "aes-256-gcm", keyLength: 32, fixedIvLength: 4 },
  { name: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", code: 0xccaa, kx: "DHE_RSA", hash: "sha256", cipher: "chacha20-poly1305", keyLength: 32, fixedIvLength: 12 },
];

export function tls12SuiteByCode(code: number): Tls12Suite | undefined {
  return TLS12_SUITES.find((s) => s.code === code);
}

/** TLS 1.2's version number, the legacy_version every ClientHello carries. */
export const TLS12 = LEGACY_VERSION;

/** TLS 1.2 handshake message types beyond TLS 1.3's (RFC 5246 §7.4). */
export const Handshake12 = {
  HelloRequest: 0,
  ServerKeyExchange: 12,
  CertificateRequest: 13,
  ServerHelloDone: 14,
  ClientKeyExchange: 16,
} as const;

export const Extension12 = {
  /** RFC 6091 §3.1 (was RFC 5081): cert_type. */
  CertType: 9,
  /** RFC 8422 §5.1.2. */
  EcPointFormats: 11,
  /** RFC 7366. */
  EncryptThenMac: 22,
  /** RFC 7627. */
  ExtendedMasterSecret: 23,
  /** RFC 5746. */
  RenegotiationInfo: 0xff01,
} as const;

/** RFC 6091 §3.1: CertificateType values in cert_type. */
export const CertType12 = { X509: 0, OpenPgp: 1 } as const;

/** The curves we accept for ECDHE in TLS 1.2: the legacy client's SECURE256 admits only these (docs/PROTOCOL.md). */
export const TLS12_CURVES = { secp384r1: 0x0018, secp521r1: 0x0019 } as const;
export type Tls12Curve = keyof typeof TLS12_CURVES;

export function tls12CurveByCode(code: number): Tls12Curve | undefined {
  return (Object.keys(TLS12_CURVES) as Tls12Curve[]).find((c) => TLS12_CURVES[c] === code);
}

/** Uncompressed point sizes (X9.62 form 4). */
export const CURVE_POINT_LENGTH: Readonly<Record<Tls12Curve, number>> = { secp384r1: 97, secp521r1: 133 };

/**
 * SignatureAndHashAlgorithm values (RFC 5246 §7.4.1.4.1) we accept in a
 * ServerKeyExchange: RSASSA-PKCS1-v1_5 with SHA-384 or SHA-512, as the
 * legacy client's SECURE256 signs (it refuses SHA-256 for RSA).
 */
export const TLS12_SIGNATURES = { rsa_pkcs1_sha384: 0x0501, rsa_pkcs1_sha512: 0x0601 } as const;
export type Tls12Signature = keyof typeof TLS12_SIGNATURES;

export function tls12SignatureByCode(code: number): Tls12Signature | undefined {
  return (Object.keys(TLS12_SIGNATURES) as Tls12Signature[]).find((s) => TLS12_SIGNATURES[s] === code);
}

export function signatureHash(sig: Tls12Signature): "sha384" | "sha512" {
  return sig === "rsa_pkcs1_sha384" ? "sha384" : "sha512";
}

/** Finite-field DHE bounds: below 2048 bits is under 112-bit security (NIST SP 800-57); above 8192 costs us for nothing. */
export const MIN_DH_PRIME_BITS = 2048;
export const MAX_DH_PRIME_BITS = 8192;
