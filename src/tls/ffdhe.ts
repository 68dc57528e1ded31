// The finite-field Diffie-Hellman groups of TLS 1.3 (RFC 7919, named
// groups ffdhe2048-ffdhe8192): their primes (generator 2), and how long a
// private exponent each needs (RFC 7919 §5.2, twice the group's strength).
// GnuTLS offers them in SECURE128; we offer them only when the priority
// string names them (docs/PROTOCOL.md, "Key exchange groups"): a peer that
// picks one makes us spend 1-107 ms of CPU where X25519 costs ~0.1.
//
// node:crypto's DiffieHellman class is not used: on Node 22 and later it
// runs OpenSSL's full DH_check on a prime given as bytes, 0.2 s for
// FFDHE2048 and 11.5 s for FFDHE6144 here, on the serving thread. Keys
// made from DER (PKCS #3 parameters) are not checked so, so a share is a
// private KeyObject made from our exponent, and the peer's Y a public one.
//
// The same keys serve TLS 1.2's DHE (tls12/flight12.ts), whose group the
// peer sends: any prime it likes, which DH_check would test for
// primality, seconds for 4,096 bits and more. Not checked, and not needed:
// the parameters come signed by a client's own key, and our exponent is
// ephemeral, so a bad group weakens only the secret that client gets.
//
// Each prime is built as RFC 7919 §A defines it, from the digits of e and
// the RFC's X, at its first use (1-4 ms), rather than written out in
// 5,888 hex digits; test/tls-key-shares.test.ts checks each against
// OpenSSL's by its SHA-256.

import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from "node:crypto";
import { drawRandom } from "./random.js";

/** The finite-field groups. */
export type FfdheGroup = "ffdhe2048" | "ffdhe3072" | "ffdhe4096" | "ffdhe6144" | "ffdhe8192";

export interface FfdheParameters {
  /** The safe prime p, big-endian; a key share is this long (RFC 8446 §4.2.8.1). */
  readonly prime: Buffer;
  /** Bits of private exponent drawn (RFC 7919 §5.2). */
  readonly exponentBits: number;
  /** DER of the AlgorithmIdentifier: PKCS #3 dhKeyAgreement with p and g = 2. */
  readonly algorithm: Buffer;
}

/** Each group's bits, the smallest X that makes p a safe prime (RFC 7919 §A), and its exponent length. */
const GROUPS: Readonly<Record<FfdheGroup, { readonly bits: number; readonly x: bigint; readonly exponentBits: number }>> = {
  ffdhe2048: { bits: 2048, x: 560316n, exponentBits: 225 },
  ffdhe3072: { bits: 3072, x: 2625351n, exponentBits: 275 },
  ffdhe4096: { bits: 4096, x: 5736041n, exponentBits: 325 },
  ffdhe6144: { bits: 6144, x: 15705020n, exponentBits: 375 },
  ffdhe8192: { bits: 8192, x: 10965728n, exponentBits: 400 },
};

/** floor(2^n e), from the series e = Σ 1/k!, with guard bits for the terms' truncation. */
function scaledE(n: bigint): bigint {
  const guard = 64n;
  let term = 1n << (n + guard);
  let sum = 0n;
  for (let k = 1n; term > 0n; k++) {
    sum += term;
    term /= k;
  }
  return sum >> guard;
}

/** p = 2^b - 2^(b-64) + (floor(2^(b-130) e) + X) 2^64 - 1. */
export function rfc7919Prime(bits: number, x: bigint): Buffer {
  const b = BigInt(bits);
  const p = (1n << b) - (1n << (b - 64n)) + ((scaledE(b - 130n) + x) << 64n) - 1n;
  return Buffer.from(p.toString(16).padStart(bits / 4, "0"), "hex");
}

const built = new Map<FfdheGroup, FfdheParameters>();

/** The group's parameters, built at the first call. */
export function ffdhe(group: FfdheGroup): FfdheParameters {
  let parameters = built.get(group);
  if (!parameters) {
    const { bits, x, exponentBits } = GROUPS[group];
    const prime = rfc7919Prime(bits, x);
    parameters = { prime, exponentBits, algorithm: dhAlgorithm(prime, Buffer.of(2)) };
    built.set(group, parameters);
  }
  return parameters;
}

/** The finite-field groups, smallest first. */
export const FFDHE_GROUPS = Object.keys(GROUPS) as readonly FfdheGroup[];

/** The length of a share of `group`: p's, known without building p. */
export function ffdheShareLength(group: FfdheGroup): number {
  return GROUPS[group].bits / 8;
}

// ----------------------------------------------------------- keys as DER

/** OBJECT IDENTIFIER 1.2.840.113549.1.3.1, PKCS #3 dhKeyAgreement. */
const DH_KEY_AGREEMENT = Buffer.from("06092a864886f70d010301", "hex");

/** One DER element (X.690 §8.1): tag, definite length, contents. */
function der(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const n = body.length;
  const length = n < 0x80 ? Buffer.of(n) : n < 0x100 ? Buffer.of(0x81, n) : Buffer.of(0x82, n >> 8, n & 0xff);
  return Buffer.concat([Buffer.of(tag), length, body]);
}

/** A non-negative INTEGER from big-endian bytes. */
function derInteger(value: Uint8Array): Buffer {
  let i = 0;
  while (i < value.length - 1 && value[i] === 0) i++;
  const digits = Buffer.from(value.subarray(i));
  return der(0x02, ...(digits[0]! & 0x80 ? [Buffer.of(0), digits] : [digits]));
}

/** The AlgorithmIdentifier of a group: PKCS #3 dhKeyAgreement with p and g (big-endian). */
export function dhAlgorithm(prime: Uint8Array, generator: Uint8Array): Buffer {
  return der(0x30, DH_KEY_AGREEMENT, der(0x30, derInteger(prime), derInteger(generator)));
}

/**
 * Bits of private exponent for a prime of `primeBits` bits: RFC 7919
 * §5.2's, twice the strength of the smallest of its groups at least as
 * large (160 below 2,048 bits).
 */
export function dhExponentBits(primeBits: number): number {
  if (primeBits < 2048) return 160;
  for (const group of Object.values(GROUPS)) if (primeBits <= group.bits) return group.exponentBits;
  return GROUPS.ffdhe8192.exponentBits;
}

/** A private key: exponent `x` in the group of `algorithm` (dhAlgorithm), as PKCS #8. */
export function dhPrivateKey(algorithm: Buffer, x: Uint8Array): KeyObject {
  const key = der(0x30, derInteger(Buffer.of(0)), algorithm, der(0x04, derInteger(x)));
  return createPrivateKey({ key, format: "der", type: "pkcs8" });
}

/** A peer's public value `y` in the group of `algorithm`, as a SubjectPublicKeyInfo. */
export function dhPublicKey(algorithm: Buffer, y: Uint8Array): KeyObject {
  const key = der(0x30, algorithm, der(0x03, Buffer.of(0), derInteger(y)));
  return createPublicKey({ key, format: "der", type: "spki" });
}

/**
 * TLS 1.2's DHE in a group given as bytes (the peer's, or a test peer's
 * own): a fresh exponent of dhExponentBits(primeBits), our public value,
 * and the premaster with the other side's Y, leading zero bytes stripped
 * (RFC 5246 §8.1.2). Throws on a Y OpenSSL refuses.
 */
export function dheShare(prime: Uint8Array, generator: Uint8Array, primeBits: number): { readonly publicValue: Buffer; agree(peerY: Uint8Array): Buffer } {
  const algorithm = dhAlgorithm(prime, generator);
  const privateKey = dhPrivateKey(algorithm, drawRandom(Math.ceil(dhExponentBits(primeBits) / 8)));
  return {
    publicValue: ffdhePublicValue(createPublicKey(privateKey)),
    agree(peerY: Uint8Array): Buffer {
      const z = diffieHellman({ privateKey, publicKey: dhPublicKey(algorithm, peerY) });
      let i = 0;
      while (i < z.length - 1 && z[i] === 0) i++;
      return z.subarray(i);
    },
  };
}

/** Our private key: the exponent `x` of `group`, as PKCS #8. */
export function ffdhePrivateKey(group: FfdheGroup, x: Uint8Array): KeyObject {
  return dhPrivateKey(ffdhe(group).algorithm, x);
}

/** The peer's public value `y` of `group`, as a SubjectPublicKeyInfo. */
export function ffdhePublicKey(group: FfdheGroup, y: Uint8Array): KeyObject {
  return dhPublicKey(ffdhe(group).algorithm, y);
}

/** Y of a public key (its magnitude, unpadded): the INTEGER inside its SubjectPublicKeyInfo's BIT STRING. */
export function ffdhePublicValue(key: KeyObject): Buffer {
  const spki = key.export({ type: "spki", format: "der" });
  // SEQUENCE { AlgorithmIdentifier, BIT STRING { unused bits, INTEGER } }
  const outer = element(spki, 0);
  const algorithm = element(spki, outer.start);
  const bits = element(spki, algorithm.end);
  const y = element(spki, bits.start + 1);
  if (outer.tag !== 0x30 || bits.tag !== 0x03 || y.tag !== 0x02) throw new Error("not a DH SubjectPublicKeyInfo");
  const value = spki.subarray(y.start, y.end);
  return value[0] === 0 ? value.subarray(1) : value;
}

/** The element at `at`: its tag, where its contents start and where it ends. */
function element(b: Buffer, at: number): { tag: number; start: number; end: number } {
  const tag = b[at]!;
  const first = b[at + 1]!;
  if (first < 0x80) return { tag, start: at + 2, end: at + 2 + first };
  const count = first & 0x7f;
  let length = 0;
  for (let i = 0; i < count; i++) length = length * 256 + b[at + 2 + i]!;
  const start = at + 2 + count;
  return { tag, start, end: start + length };
}
