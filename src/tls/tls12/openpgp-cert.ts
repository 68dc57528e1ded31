// The legacy client's certificate: an RFC 6091 OpenPGP Certificate message
// holding a whole transferable public key (RFC 4880 §11.1), checked as the
// reference checks it (gnutls_openpgp_crt_verify_self, then the primary
// key's v4 fingerprint). Synchronous and on node:crypto only, because it runs
// inside the TLS 1.2 flight task (flight12.ts), which is a pure synchronous
// function like the TLS 1.3 one; OpenPGP.js has only an async API, and the
// tests use it as an independent oracle for the fingerprint and the
// self-signatures (test/tls12-known-answers.test.ts).
//
// Validation, step by step, each failure one alert:
//   1. the Certificate's framing: descriptor type 2 (subkey_cert, key ID
//      + key) or 1 (key only), no trailing bytes            -> decode_error
//      type 0/3 (a fingerprint to look up; we keep no key
//      ring, as the reference does not)                     -> unsupported_certificate
//   2. the packets: one v4 primary key first, then user IDs,
//      subkeys and signatures, lengths exact                -> bad_certificate
//   3. the primary key is RSA in the bounds of limits.ts    -> unsupported_certificate
//   4. the key ID sent is the primary key's                 -> bad_certificate
//      then `admit` sees the fingerprint before any signature
//      is checked (flight12.ts: an unknown one is refused)
//   5. every self-signature over a user ID, a subkey or the
//      key verifies, there is at least one user ID
//      certification, and the key carries no valid key
//      revocation                                           -> bad_certificate

import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from "node:crypto";
import { TlsError } from "../errors.js";
import { MAX_RSA_EXPONENT_BITS, MAX_RSA_MODULUS_BITS, MIN_RSA_MODULUS_BITS } from "../limits.js";
import { Reader, Writer } from "../reader.js";

/** RFC 6091 §3.3 descriptor types. */
const DESCRIPTOR = { KeyFingerprint: 0, Key: 1, SubkeyCert: 2, SubkeyCertFingerprint: 3 } as const;

/**
 * Packets in one transferable public key. A real one has five (key, user
 * ID, certification, subkey, binding); GnuPG keys with many user IDs and
 * third-party certifications reach a few dozen. Each verification costs us
 * ~0.1 ms (RSA-4096), so a bound keeps a hostile peer from buying many.
 */
export const MAX_OPENPGP_PACKETS = 64;
/** Self-signatures we verify at most (the same reason). */
export const MAX_SELF_SIGNATURES = 16;

const TAG = { Signature: 2, PublicKey: 6, Trust: 12, UserId: 13, PublicSubkey: 14, UserAttribute: 17 } as const;
const HASHES: Readonly<Record<number, string>> = { 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224" };

export interface OpenPgpCertificate {
  /** The primary key's v4 fingerprint, 40 upper-case hex digits. */
  readonly fingerprint: string;
  /** The primary key's key ID, 16 upper-case hex digits. */
  readonly keyId: string;
  /** The primary key, for the ServerKeyExchange signature. */
  readonly key: KeyObject;
  readonly modulusBits: number;
}

interface Packet {
  readonly tag: number;
  readonly body: Buffer;
}

function bad(why: string): TlsError {
  return new TlsError("TLS_BAD_CERTIFICATE", `OpenPGP certificate: ${why}`);
}

/** Steps 1-5: the Certificate message body to a checked primary key. */
export function parseOpenPgpCertificate(body: Uint8Array, admit?: (fingerprint: string) => void): OpenPgpCertificate {
  // Step 1.
  const r = new Reader(body);
  // The outer length: RFC 6091 §3.3 makes it the length of the rest; GnuTLS
  // 3.5 writes the key's length + 6 for a subkey_cert (the recorded session
  // has 2237 for 2244 bytes) and reads it only as "is there a certificate".
  // Either form is taken; anything else is decode_error.
  const outer = r.u24("certificate length");
  if (outer === 0) throw bad("empty");
  const cert = new Reader(r.bytes(r.remaining, "OpenPGP certificate"));
  const type = cert.u8("descriptor type");
  let sentKeyId: Buffer | null = null;
  let keyBytes: Buffer;
  if (type === DESCRIPTOR.SubkeyCert) {
    sentKeyId = cert.vector(1, "key ID", 8);
    if (sentKeyId.length !== 8) throw new TlsError("TLS_DECODE", "OpenPGP key ID is not 8 bytes");
    keyBytes = cert.vector(3, "OpenPGP key", 1);
  } else if (type === DESCRIPTOR.Key) {
    keyBytes = cert.vector(3, "OpenPGP key");
    // RFC 5081 §3.3: an empty key is no certificate at all.
    if (keyBytes.length === 0) throw bad("empty");
  } else if (type === DESCRIPTOR.KeyFingerprint || type === DESCRIPTOR.SubkeyCertFingerprint) {
    throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", "an OpenPGP fingerprint instead of a key");
  } else {
    throw new TlsError("TLS_DECODE", `unknown OpenPGP descriptor type ${type}`);
  }
  cert.end("OpenPGP certificate");
  const whole = body.length - 3;
  if (outer !== whole && !(type === DESCRIPTOR.SubkeyCert && outer === keyBytes.length + 6)) {
    throw new TlsError("TLS_DECODE", "OpenPGP certificate length does not match");
  }
  return checkTransferableKey(keyBytes, sentKeyId, admit);
}

/** Steps 2-5 on the binary transferable public key (exported, for tests and the server role). */
export function checkTransferableKey(keyBytes: Uint8Array, sentKeyId: Uint8Array | null = null, admit?: (fingerprint: string) => void): OpenPgpCertificate {
  // Step 2.
  const packets = readPackets(keyBytes);
  const primary = packets[0];
  if (!primary || primary.tag !== TAG.PublicKey) throw bad("does not start with a public key");
  const pk = parsePublicKey(primary.body);
  const fpr = v4Fingerprint(primary.body);
  const keyId = fpr.subarray(12);
  // Step 4 (before any signature work).
  if (sentKeyId && !Buffer.from(sentKeyId).equals(keyId)) throw bad("the key ID sent is not the primary key's");
  const fingerprint = fpr.toString("hex").toUpperCase();
  admit?.(fingerprint);

  // Step 5: walk the key's structure (RFC 4880 §11.1).
  const prefix = keyHashPrefix(primary.body);
  let subject: Buffer | null = null; // what the signatures that follow are about
  let subjectKind: "key" | "uid" | "subkey" = "key";
  let certifications = 0;
  let verified = 0;
  for (const p of packets.slice(1)) {
    switch (p.tag) {
      case TAG.UserId:
      case TAG.UserAttribute: {
        const h = Buffer.allocUnsafe(5);
        h[0] = p.tag === TAG.UserId ? 0xb4 : 0xd1;
        h.writeUInt32BE(p.body.length, 1);
        subject = Buffer.concat([h, p.body]);
        subjectKind = "uid";
        break;
      }
      case TAG.PublicSubkey:
        parsePublicKeyPacketVersion(p.body);
        subject = keyHashPrefix(p.body);
        subjectKind = "subkey";
        break;
      case TAG.Trust:
        break;
      case TAG.Signature: {
        const sig = parseSignature(p.body);
        if (sig.issuer && !sig.issuer.equals(keyId)) break; // a third party's certification: not ours to check
        const expected = sigTypeFits(sig.type, subjectKind);
        if (!expected) break; // e.g. a certification revocation: GnuTLS does not judge those either
        if (++verified > MAX_SELF_SIGNATURES) throw bad(`more than ${MAX_SELF_SIGNATURES} self-signatures`);
        const signed = subjectKind === "key" ? prefix : Buffer.concat([prefix, subject!]);
        const ok = verifySelfSignature(pk.key, pk.bytes, sig, signed);
        if (sig.type === 0x20) {
          if (ok) throw bad("the key is revoked");
          break;
        }
        if (!ok) throw bad(`self-signature of type 0x${sig.type.toString(16)} does not verify`);
        if (subjectKind === "uid") certifications++;
        break;
      }
      default:
        throw bad(`unexpected packet tag ${p.tag}`);
    }
  }
  if (certifications === 0) throw bad("no self-certified user ID");
  return { fingerprint, keyId: keyId.toString("hex").toUpperCase(), key: pk.key, modulusBits: pk.bits };
}

function sigTypeFits(type: number, subject: "key" | "uid" | "subkey"): boolean {
  if (subject === "uid") return type >= 0x10 && type <= 0x13;
  if (subject === "subkey") return type === 0x18;
  return type === 0x1f || type === 0x20;
}

function readPackets(bytes: Uint8Array): Packet[] {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Packet[] = [];
  for (let at = 0; at < b.length; ) {
    if (out.length >= MAX_OPENPGP_PACKETS) throw bad(`more than ${MAX_OPENPGP_PACKETS} packets`);
    const h = b[at++]!;
    if ((h & 0x80) === 0) throw bad("not a packet header");
    let tag: number;
    let length: number;
    if (h & 0x40) {
      // New format (RFC 4880 §4.2.2); partial lengths are for data packets only.
      tag = h & 0x3f;
      const l0 = b[at++];
      if (l0 === undefined) throw bad("truncated packet header");
      if (l0 < 192) length = l0;
      else if (l0 < 224) {
        if (at >= b.length) throw bad("truncated packet header");
        length = ((l0 - 192) << 8) + b[at++]! + 192;
      } else if (l0 === 255) {
        if (at + 4 > b.length) throw bad("truncated packet header");
        length = b.readUInt32BE(at);
        at += 4;
      } else throw bad("partial packet length");
    } else {
      tag = (h >> 2) & 0x0f;
      const n = [1, 2, 4, 0][h & 3]!;
      if (n === 0) throw bad("indeterminate packet length");
      if (at + n > b.length) throw bad("truncated packet header");
      length = b.readUIntBE(at, n);
      at += n;
    }
    if (at + length > b.length) throw bad("truncated packet");
    out.push({ tag, body: b.subarray(at, at + length) });
    at += length;
  }
  return out;
}

/** Reads an MPI (RFC 4880 §3.2): a bit count, then the bytes; a leading zero bit count beyond the first byte is refused. */
function mpi(r: Reader, what: string): Buffer {
  const bits = r.u16(what);
  const v = r.bytes((bits + 7) >> 3, what);
  if (bits > 0 && (v[0]! >> ((bits - 1) & 7)) !== 1) throw bad(`${what} MPI bit count is wrong`);
  return v;
}

function parsePublicKeyPacketVersion(body: Buffer): void {
  if (body[0] !== 4) throw bad(`version ${body[0] ?? "?"} key packet (v4 only)`);
}

function parsePublicKey(body: Buffer): { key: KeyObject; bits: number; bytes: number } {
  parsePublicKeyPacketVersion(body);
  const r = new Reader(body, 5);
  const algo = r.u8("public key algorithm");
  // Step 3: RSA (1: encrypt or sign, 3: sign only). GnuTLS 3.5 also takes DSA (17); see docs/PROTOCOL.md.
  if (algo !== 1 && algo !== 3) throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", `OpenPGP primary key algorithm ${algo} (RSA only)`);
  const wrap = (fn: () => Buffer) => {
    try {
      return fn();
    } catch (error) {
      throw error instanceof TlsError && error.code === "TLS_DECODE" ? bad("truncated key packet") : error;
    }
  };
  const n = wrap(() => mpi(r, "RSA n"));
  const e = wrap(() => mpi(r, "RSA e"));
  if (r.remaining !== 0) throw bad("trailing bytes in the key packet");
  const bits = n.length === 0 ? 0 : (n.length - 1) * 8 + (32 - Math.clz32(n[0]!));
  if (bits < MIN_RSA_MODULUS_BITS || bits > MAX_RSA_MODULUS_BITS) throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", `RSA modulus of ${bits} bits`);
  const eBits = e.length === 0 ? 0 : (e.length - 1) * 8 + (32 - Math.clz32(e[0]!));
  if (eBits > MAX_RSA_EXPONENT_BITS || e.length === 0 || (e[e.length - 1]! & 1) === 0 || (eBits <= 2 && e[e.length - 1]! < 3)) {
    throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", `RSA public exponent of ${eBits} bits`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: "RSA", n: n.toString("base64url"), e: e.toString("base64url") }, format: "jwk" });
  } catch {
    throw bad("the RSA key does not import");
  }
  return { key, bits, bytes: n.length };
}

/** SHA-1 over 0x99 || length || key packet body (RFC 4880 §12.2). */
export function v4Fingerprint(keyPacketBody: Uint8Array): Buffer {
  return createHash("sha1").update(keyHashPrefix(keyPacketBody)).digest();
}

function keyHashPrefix(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(3 + body.length);
  out[0] = 0x99;
  out.writeUInt16BE(body.length, 1);
  out.set(body, 3);
  return out;
}

interface Signature {
  readonly type: number;
  readonly hash: string | undefined;
  readonly pkAlgo: number;
  /** Version through the hashed subpackets: what is hashed with the trailer. */
  readonly hashedPart: Buffer;
  readonly left16: Buffer;
  readonly value: Buffer;
  readonly issuer: Buffer | null;
}

function parseSignature(body: Buffer): Signature {
  try {
    const r = new Reader(body);
    if (r.u8("signature version") !== 4) throw bad("not a v4 signature");
    const type = r.u8("signature type");
    const pkAlgo = r.u8("signature key algorithm");
    const hashAlgo = r.u8("signature hash algorithm");
    const hashed = r.vector(2, "hashed subpackets");
    const hashedPart = body.subarray(0, 6 + hashed.length);
    const unhashed = r.vector(2, "unhashed subpackets");
    const left16 = r.bytes(2, "left 16 bits");
    const value = pkAlgo === 1 || pkAlgo === 3 ? mpi(r, "RSA signature") : Buffer.alloc(0);
    const issuer = findIssuer(hashed) ?? findIssuer(unhashed);
    return { type, hash: HASHES[hashAlgo], pkAlgo, hashedPart, left16, value, issuer };
  } catch (error) {
    throw error instanceof TlsError && error.code === "TLS_DECODE" ? bad("malformed signature packet") : error;
  }
}

function findIssuer(sub: Buffer): Buffer | null {
  for (let at = 0; at < sub.length; ) {
    const l0 = sub[at++]!;
    let len: number;
    if (l0 < 192) len = l0;
    else if (l0 < 255) len = ((l0 - 192) << 8) + (sub[at++] ?? 0) + 192;
    else {
      if (at + 4 > sub.length) throw bad("truncated subpacket");
      len = sub.readUInt32BE(at);
      at += 4;
    }
    if (len < 1 || at + len > sub.length) throw bad("truncated subpacket");
    const type = sub[at]! & 0x7f;
    const data = sub.subarray(at + 1, at + len);
    at += len;
    if (type === 16 && data.length === 8) return data;
    if (type === 33 && data.length === 21 && data[0] === 4) return data.subarray(13);
  }
  return null;
}

function verifySelfSignature(key: KeyObject, modulusBytes: number, sig: Signature, signed: Buffer): boolean {
  if ((sig.pkAlgo !== 1 && sig.pkAlgo !== 3) || !sig.hash) return false;
  const trailer = Buffer.allocUnsafe(6);
  trailer[0] = 4;
  trailer[1] = 0xff;
  trailer.writeUInt32BE(sig.hashedPart.length, 2);
  const data = Buffer.concat([signed, sig.hashedPart, trailer]);
  if (!createHash(sig.hash).update(data).digest().subarray(0, 2).equals(sig.left16)) return false;
  if (sig.value.length > modulusBytes) return false;
  const s = Buffer.alloc(modulusBytes);
  sig.value.copy(s, modulusBytes - sig.value.length);
  try {
    return cryptoVerify(sig.hash, data, key, s);
  } catch {
    return false;
  }
}

/** The Certificate message body the legacy client sends: subkey_cert with the primary key's ID (RFC 6091 §3.3). */
export function encodeOpenPgpCertificateBody(keyId: Uint8Array, keyBytes: Uint8Array): Buffer {
  const w = new Writer(keyBytes.length + 32);
  // The outer length as GnuTLS 3.5 writes it (see parseOpenPgpCertificate).
  w.u24(keyBytes.length + 6).u8(DESCRIPTOR.SubkeyCert);
  w.open(1).bytes(keyId).close();
  w.open(3).bytes(keyBytes).close();
  return w.finish();
}
