// The cryptographic primitives of TLS 1.3 on node:crypto: HKDF with
// HKDF-Expand-Label and Derive-Secret (RFC 8446 §7.1), record protection
// (§5.2, §5.3), (EC)DHE key shares (§4.2.8, §7.4) and signatures (§4.2.3,
// §4.4.3). All functions are pure; key material comes in and goes out as
// bytes, so they run as well on a worker thread as inline.

import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  sign as cryptoSign,
  timingSafeEqual,
  verify as cryptoVerify,
  constants as cryptoConstants,
  type JsonWebKey,
  type KeyObject,
} from "node:crypto";
import * as nodeCrypto from "node:crypto";
import type { CipherSuiteInfo, NamedGroup, SignatureScheme } from "./constants.js";
import { TlsError } from "./errors.js";
import { ffdhe, ffdhePrivateKey, ffdhePublicKey, ffdhePublicValue, ffdheShareLength, type FfdheGroup } from "./ffdhe.js";
import { MAX_INNER_PLAINTEXT } from "./limits.js";
import { drawRandom } from "./random.js";
import { bufferView, ownedCopy } from "./record.js";

export type HashName = "sha256" | "sha384";

// ---------------------------------------------------------------- HKDF

export function hkdfExtract(hash: HashName, salt: Uint8Array, ikm: Uint8Array): Buffer {
  return createHmac(hash, salt).update(ikm).digest();
}

export function hkdfExpand(hash: HashName, prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let prev: Buffer = Buffer.alloc(0);
  let filled = 0;
  for (let i = 1; filled < length; i++) {
    prev = createHmac(hash, prk).update(prev).update(info).update(Buffer.of(i)).digest();
    prev.copy(out, filled, 0, Math.min(prev.length, length - filled));
    filled += prev.length;
  }
  return out;
}

const LABEL_PREFIX = Buffer.from("tls13 ", "latin1");
const HASH_LENGTH: Record<HashName, number> = { sha256: 32, sha384: 48 };
/** "tls13 " + label, as bytes, by label: the labels are a handful of constants. */
const fullLabels = new Map<string, Buffer>();
function fullLabel(label: string): Buffer {
  let bytes = fullLabels.get(label);
  if (!bytes) {
    bytes = Buffer.concat([LABEL_PREFIX, Buffer.from(label, "latin1")]);
    fullLabels.set(label, bytes);
  }
  return bytes;
}

/**
 * HKDF-Expand-Label(Secret, Label, Context, Length), RFC 8446 §7.1. Every
 * length TLS 1.3 asks for fits in one HMAC block of output (T(1)): the
 * HkdfLabel and its counter byte go to the HMAC in one buffer, and the
 * output is T(1) itself or a view of its first bytes.
 */
export function expandLabel(hash: HashName, secret: Uint8Array, label: string, context: Uint8Array, length: number): Buffer {
  const full = fullLabel(label);
  const info = Buffer.allocUnsafe(2 + 1 + full.length + 1 + context.length + 1);
  info.writeUInt16BE(length, 0);
  info[2] = full.length;
  full.copy(info, 3);
  let o = 3 + full.length;
  info[o++] = context.length;
  info.set(context, o);
  o += context.length;
  if (length > HASH_LENGTH[hash]) return hkdfExpand(hash, secret, info.subarray(0, o), length);
  info[o] = 1;
  const t1 = createHmac(hash, secret).update(info).digest();
  return length === t1.length ? t1 : t1.subarray(0, length);
}

/**
 * `crypto.hash`, one-shot (Node 20.12 and later; package.json admits 18.20,
 * which has only createHash: a named import would fail to link there).
 */
const oneShotHash = (nodeCrypto as { hash?: typeof nodeCrypto.hash }).hash;

/**
 * One-shot where Node has it: no Hash object, whose native half a
 * worker's young-generation collection otherwise finalizes (~1 µs each,
 * on top of ~0.6 µs more to make; about forty native objects a handshake,
 * five of them hashes).
 */
export function digest(hash: HashName, data: Uint8Array): Buffer {
  return oneShotHash ? oneShotHash(hash, data, "buffer") : createHash(hash).update(data).digest();
}

/** Derive-Secret(Secret, Label, Messages) with the transcript hash already computed. */
export function deriveSecret(hash: HashName, secret: Uint8Array, label: string, transcriptHash: Uint8Array): Buffer {
  return expandLabel(hash, secret, label, transcriptHash, transcriptHash.length);
}

// ---------------------------------------------------------- key schedule

export interface HandshakeSecrets {
  readonly handshakeSecret: Buffer;
  readonly clientHandshakeTraffic: Buffer;
  readonly serverHandshakeTraffic: Buffer;
}

export interface ApplicationSecrets {
  readonly clientApplicationTraffic: Buffer;
  readonly serverApplicationTraffic: Buffer;
}

const emptyHashes = new Map<HashName, Buffer>();
function emptyHash(hash: HashName): Buffer {
  let h = emptyHashes.get(hash);
  if (!h) {
    h = digest(hash, Buffer.alloc(0));
    emptyHashes.set(hash, h);
  }
  return h;
}

// Early Secret and its "derived" successor do not depend on the handshake
// without PSK: compute them once per hash.
const derivedEarly = new Map<HashName, Buffer>();
function derivedFromEarly(hash: HashName, hashLength: number): Buffer {
  let d = derivedEarly.get(hash);
  if (!d) {
    const zeros = Buffer.alloc(hashLength);
    const early = hkdfExtract(hash, zeros, zeros);
    d = deriveSecret(hash, early, "derived", emptyHash(hash));
    derivedEarly.set(hash, d);
  }
  return d;
}

/** RFC 8446 §7.1, from the (EC)DHE shared secret and the hash of ClientHello..ServerHello. */
export function handshakeSecrets(suite: CipherSuiteInfo, sharedSecret: Uint8Array, helloHash: Uint8Array): HandshakeSecrets {
  const hs = hkdfExtract(suite.hash, derivedFromEarly(suite.hash, suite.hashLength), sharedSecret);
  return {
    handshakeSecret: hs,
    clientHandshakeTraffic: deriveSecret(suite.hash, hs, "c hs traffic", helloHash),
    serverHandshakeTraffic: deriveSecret(suite.hash, hs, "s hs traffic", helloHash),
  };
}

/** RFC 8446 §7.1, from the handshake secret and the hash of ClientHello..server Finished. */
export function applicationSecrets(suite: CipherSuiteInfo, handshakeSecret: Uint8Array, finishedHash: Uint8Array): ApplicationSecrets {
  const derived = deriveSecret(suite.hash, handshakeSecret, "derived", emptyHash(suite.hash));
  const master = hkdfExtract(suite.hash, derived, Buffer.alloc(suite.hashLength));
  return {
    clientApplicationTraffic: deriveSecret(suite.hash, master, "c ap traffic", finishedHash),
    serverApplicationTraffic: deriveSecret(suite.hash, master, "s ap traffic", finishedHash),
  };
}

/** Finished verify_data, RFC 8446 §4.4.4. */
export function finishedMac(suite: CipherSuiteInfo, trafficSecret: Uint8Array, transcriptHash: Uint8Array): Buffer {
  const key = expandLabel(suite.hash, trafficSecret, "finished", Buffer.alloc(0), suite.hashLength);
  return createHmac(suite.hash, key).update(transcriptHash).digest();
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Next application traffic secret, RFC 8446 §7.2 (KeyUpdate). */
export function nextTrafficSecret(suite: CipherSuiteInfo, secret: Uint8Array): Buffer {
  return expandLabel(suite.hash, secret, "traffic upd", Buffer.alloc(0), suite.hashLength);
}

// ----------------------------------------------------- record protection

/** Key and IV of one direction, RFC 8446 §7.3. Plain data: crosses to workers. */
export interface TrafficKeys {
  readonly key: Uint8Array;
  readonly iv: Uint8Array;
}

export function trafficKeys(suite: CipherSuiteInfo, secret: Uint8Array): TrafficKeys {
  return {
    key: expandLabel(suite.hash, secret, "key", Buffer.alloc(0), suite.keyLength),
    iv: expandLabel(suite.hash, secret, "iv", Buffer.alloc(0), 12),
  };
}

/**
 * The record's nonce (RFC 8446 §5.3) in this thread's one scratch buffer:
 * createCipheriv and createDecipheriv copy the IV into their context at
 * once, so no nonce outlives the call that made it.
 */
const NONCE = Buffer.alloc(12);
function nonce(iv: Uint8Array, seq: bigint): Buffer {
  NONCE.set(iv);
  let s = seq;
  for (let i = 11; i >= 4 && s > 0n; i--) {
    NONCE[i]! ^= Number(s & 0xffn);
    s >>= 8n;
  }
  return NONCE;
}

const TAG = 16;
/** The AEAD options, one object for every record. */
const AEAD_OPTIONS = { authTagLength: TAG } as const;

/**
 * The record header as additional data. CCM (TLS_AES_128_CCM_SHA256)
 * must be told the plaintext's length with it, as it authenticates the
 * length before the data; GCM and ChaCha20-Poly1305 take no options, and
 * keep their one call without an object made per record.
 */
function setHeaderAad(suite: CipherSuiteInfo, aead: { setAAD(aad: Uint8Array, options?: { plaintextLength: number }): unknown }, header: Uint8Array, plaintextLength: number): void {
  if (suite.cipher === "aes-128-ccm") aead.setAAD(header, { plaintextLength });
  else aead.setAAD(header);
}

/**
 * Seals one record: inner plaintext = content || type, no padding.
 * Returns the whole record, header included. The inner plaintext is laid
 * out in the record itself and encrypted in one call.
 */
export function sealRecord(suite: CipherSuiteInfo, keys: TrafficKeys, seq: bigint, type: number, content: Uint8Array): Buffer {
  const length = content.length + 1 + TAG;
  const record = Buffer.allocUnsafe(5 + length);
  record[0] = 23;
  record[1] = 3;
  record[2] = 3;
  record.writeUInt16BE(length, 3);
  record.set(content, 5);
  record[5 + content.length] = type;
  // ChaCha20-Poly1305 and CCM have the GCM interface at run time but for
  // setAAD's plaintextLength; the typings list only the GCM names in that overload.
  const cipher = createCipheriv(suite.cipher as "aes-128-gcm", keys.key, nonce(keys.iv, seq), AEAD_OPTIONS);
  setHeaderAad(suite, cipher, record.subarray(0, 5), content.length + 1);
  let o = 5;
  o += cipher.update(record.subarray(5, 6 + content.length)).copy(record, o);
  o += cipher.final().copy(record, o);
  cipher.getAuthTag().copy(record, o);
  return record;
}

export interface OpenedRecord {
  readonly type: number;
  readonly content: Buffer;
}

/** Opens one protected record (`header` is its 5 bytes, `body` the rest). */
export function openRecord(suite: CipherSuiteInfo, keys: TrafficKeys, seq: bigint, header: Uint8Array, body: Uint8Array): OpenedRecord {
  if (body.length < TAG + 1) throw new TlsError("TLS_BAD_RECORD_MAC", "record too short to be protected");
  let plain: Buffer;
  try {
    const decipher = createDecipheriv(suite.cipher as "aes-128-gcm", keys.key, nonce(keys.iv, seq), AEAD_OPTIONS);
    // The tag before the additional data: CCM decryption wants it first.
    decipher.setAuthTag(body.subarray(body.length - TAG));
    setHeaderAad(suite, decipher, header, body.length - TAG);
    const head = decipher.update(body.subarray(0, body.length - TAG));
    const tail = decipher.final();
    plain = tail.length ? Buffer.concat([head, tail]) : head;
  } catch {
    throw new TlsError("TLS_BAD_RECORD_MAC", "record authentication failed");
  }
  // RFC 8446 §5.4: the bound is on the inner plaintext, padding and type
  // byte included, not on the content alone (GnuTLS refuses 2^14 + 2 bytes
  // of it however few are content); checked before the padding is scanned.
  if (plain.length > MAX_INNER_PLAINTEXT) throw new TlsError("TLS_RECORD_OVERFLOW", "protected record plaintext too long");
  // Strip zero padding, RFC 8446 §5.4.
  let end = plain.length - 1;
  while (end >= 0 && plain[end] === 0) end--;
  if (end < 0) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "protected record without a content type");
  return { type: plain[end]!, content: plain.subarray(0, end) };
}

// ------------------------------------------------------------------ ECDHE

/**
 * One ephemeral key share (structured-cloneable: KeyObjects cross to
 * worker threads by postMessage, sharing the native key).
 */
export interface KeyShare {
  readonly group: NamedGroup;
  /**
   * Private key: raw scalar (X25519/X448: RFC 7748 bytes; NIST curves and
   * finite fields: big-endian). Empty for an X25519/X448 share made by
   * generateKeyShare, whose keyObject holds it.
   */
  readonly privateKey: Uint8Array;
  /**
   * X25519/X448 and FFDHE: the same private key as a KeyObject, made at key
   * generation and used directly (a re-import from the raw bytes would
   * cost ~40 µs, as much as the agreement).
   */
  readonly keyObject?: KeyObject | undefined;
  /** The key_exchange field: raw (X25519/X448), uncompressed point (NIST), or Y padded to p's length (FFDHE). */
  readonly publicKey: Uint8Array;
}

const NIST_CURVE: Partial<Record<NamedGroup, string>> = { secp256r1: "prime256v1", secp384r1: "secp384r1", secp521r1: "secp521r1" };
/** The JWK curve names of the Montgomery groups (RFC 8037). */
const MONTGOMERY: Partial<Record<NamedGroup, "X25519" | "X448">> = { x25519: "X25519", x448: "X448" };

/** How a runtime turns a Montgomery private key's raw bytes into a KeyObject. */
export type MontgomeryImport = (crv: "X25519" | "X448", raw: Uint8Array) => KeyObject;

/** PKCS #8 DER of an X25519 / X448 private key, before its raw bytes (RFC 8410 §7). */
const PKCS8_PREFIX = {
  X25519: Buffer.from("302e020100300506032b656e04220420", "hex"),
  X448: Buffer.from("3046020100300506032b656f043a0438", "hex"),
} as const;

/**
 * The ways to import an X25519/X448 private key from its raw bytes (RFC
 * 7748), fastest first; `montgomeryPrivateKey` is the first that gives
 * the right key on this runtime (`MONTGOMERY_IMPORT` names it). Exported
 * for the tests.
 * - `jwk`: OpenSSL 3's DER decoder costs ~360 µs a key, a JWK ~40. Node 20
 *   and 22 read only `d` of a private OKP JWK, but want an `x`, so `d`
 *   stands in for it. Node 24 and later check `x` against `d`: refused.
 * - `raw`: the `raw-private` format of Node 24 and later (~30 µs with the
 *   export of its public half); Node 20 and 22 do not know it.
 * - `pkcs8`: DER, which every runtime reads; slow, the last resort.
 */
export const MONTGOMERY_IMPORTS: ReadonlyArray<readonly [name: string, MontgomeryImport]> = [
  ["jwk", (crv, raw) => {
    const d = bufferView(raw).toString("base64url");
    return createPrivateKey({ key: { kty: "OKP", crv, d, x: d }, format: "jwk" });
  }],
  // The input's shape as Node 24 documents it; @types/node for Node 20
  // does not list the format.
  ["raw", (crv, raw) => createPrivateKey({ key: bufferView(raw), format: "raw-private", asymmetricKeyType: crv.toLowerCase() } as unknown as nodeCrypto.PrivateKeyInput)],
  ["pkcs8", (crv, raw) => createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX[crv], raw]), format: "der", type: "pkcs8" })],
];

/**
 * Whether `load` gives the right X25519 key on this runtime: Alice's private
 * key of RFC 7748 §6.1 must come out with the public key the RFC gives.
 */
export function importWorks(load: MontgomeryImport): boolean {
  const alice = Buffer.from("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "hex");
  try {
    const jwk = load("X25519", alice).export({ format: "jwk" });
    return jwk.x === "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo";
  } catch {
    return false;
  }
}

/** This runtime's import: the first that works (tried once, a few tens of µs at load). */
const CHOSEN_IMPORT = MONTGOMERY_IMPORTS.find(([, load]) => importWorks(load)) ?? MONTGOMERY_IMPORTS.at(-1)!;
/** Its name. */
export const MONTGOMERY_IMPORT: string = CHOSEN_IMPORT[0];
/** An X25519/X448 private key from its raw bytes, the fastest way this runtime gets right. */
export const montgomeryPrivateKey: MontgomeryImport = CHOSEN_IMPORT[1];

/** Expected key_exchange length per group (RFC 8446 §4.2.8.2). */
export function keyShareLength(group: NamedGroup): number {
  switch (group) {
    case "x25519":
      return 32;
    case "x448":
      return 56;
    case "secp256r1":
      return 65;
    case "secp384r1":
      return 97;
    case "secp521r1":
      return 133;
    default:
      return ffdheShareLength(group);
  }
}

const isFfdhe = (group: NamedGroup): group is FfdheGroup => group.startsWith("ffdhe");

/** `value` left-padded with zeros to `length` (RFC 8446 §4.2.8.1, §7.4.1). */
function padded(value: Buffer, length: number): Buffer {
  if (value.length === length) return value;
  const out = Buffer.alloc(length);
  value.copy(out, length - value.length);
  return out;
}

/**
 * A finite-field share: a short random exponent (RFC 7919 §5.2), so that
 * our part costs one modular exponentiation of that many bits; the
 * exponent as a KeyObject, made once (src/tls/ffdhe.ts says why no
 * DiffieHellman object).
 */
function generateFfdheShare(group: FfdheGroup): KeyShare {
  const exponent = drawRandom(Math.ceil(ffdhe(group).exponentBits / 8));
  exponent[0]! |= 0x80; // never a tiny exponent
  const keyObject = ffdhePrivateKey(group, exponent);
  const publicKey = padded(ffdhePublicValue(createPublicKey(keyObject)), ffdheShareLength(group));
  return { group, privateKey: ownedCopy(exponent), keyObject, publicKey };
}

/** g^xy mod p, padded to p's length; a Y outside 1 < Y < p-1 is refused (RFC 8446 §4.2.8.1). */
function ffdheSecret(group: FfdheGroup, share: KeyShare, peerPublic: Uint8Array): Buffer {
  const { prime } = ffdhe(group);
  const y = Buffer.from(peerPublic.buffer, peerPublic.byteOffset, peerPublic.byteLength);
  // p ends in 64 one bits, so p - 1 ends in ...fe: Y <= 1 or Y >= p - 1 is all the check needs.
  const last = prime.length - 1;
  const upper = y.compare(prime, 0, last, 0, last);
  const belowTwo = y.subarray(0, last).every((b) => b === 0) && y[last]! <= 1;
  if (belowTwo || upper > 0 || (upper === 0 && y[last]! >= 0xfe)) throw new Error("Y out of range");
  const privateKey = share.keyObject ?? ffdhePrivateKey(group, share.privateKey);
  return padded(diffieHellman({ privateKey, publicKey: ffdhePublicKey(group, y) }), prime.length);
}

export function generateKeyShare(group: NamedGroup): KeyShare {
  if (isFfdhe(group)) return generateFfdheShare(group);
  const curve = NIST_CURVE[group];
  if (curve) {
    const ecdh = createECDH(curve);
    const publicKey = ecdh.generateKeys();
    return { group, privateKey: ecdh.getPrivateKey(), publicKey };
  }
  // Not generateKeyPairSync: in Node 20 the key-generation job it leaves
  // for the garbage collector takes a mutex in its destructor, and when
  // that collection runs inside a later export of a key (which holds the
  // same mutex while it allocates the JWK's strings), the thread deadlocks
  // for good. Seen here about once per 200,000 keys under load, freezing
  // the whole server (gdb: ~KeyGenJob -> uv_mutex_lock inside a GC inside
  // NewStringFromOneByte). A private key imported from random bytes makes
  // no such job and costs the same (~40 µs); OpenSSL clamps the scalar
  // (RFC 7748 §5), so any bytes make a valid key.
  const keyObject = montgomeryPrivateKey(MONTGOMERY[group]!, drawRandom(keyShareLength(group)));
  // The public key as JWK: OpenSSL 3 encodes DER through its generic encoder
  // (~70 µs for an X25519 SPKI here), while JWK reads the raw key. The
  // private key's JWK carries it as `x` (~1.6 µs), without the second
  // KeyObject a public one would make (~2.7 µs).
  const jwk = keyObject.export({ format: "jwk" });
  return {
    group,
    privateKey: new Uint8Array(0),
    keyObject,
    // Kept until the handshake ends: its own memory, not a slice of the
    // Buffer pool (see drawRandom).
    publicKey: ownedCopy(Buffer.from(jwk.x ?? "", "base64url")),
  };
}

/**
 * Makes our share and the shared secret in one step (the server role knows
 * the peer's share before making its own): one ECDH object, no re-import.
 */
export function agreeEphemeral(group: NamedGroup, peerPublic: Uint8Array): { publicKey: Buffer; secret: Buffer } {
  const curve = NIST_CURVE[group];
  if (curve && peerPublic.length === keyShareLength(group) && peerPublic[0] === 4) {
    const ecdh = createECDH(curve);
    const publicKey = ecdh.generateKeys();
    try {
      return { publicKey, secret: ecdh.computeSecret(peerPublic) };
    } catch {
      throw new TlsError("TLS_ILLEGAL_PARAMETER", `invalid ${group} key share`);
    }
  }
  const share = generateKeyShare(group);
  return { publicKey: Buffer.from(share.publicKey), secret: computeSharedSecret(share, peerPublic) };
}

/** The shared secret; an invalid peer share is illegal_parameter (RFC 8446 §4.2.8). */
export function computeSharedSecret(share: KeyShare, peerPublic: Uint8Array): Buffer {
  if (peerPublic.length !== keyShareLength(share.group)) {
    throw new TlsError("TLS_ILLEGAL_PARAMETER", `bad ${share.group} key share length`);
  }
  const curve = NIST_CURVE[share.group];
  try {
    if (isFfdhe(share.group)) return ffdheSecret(share.group, share, peerPublic);
    if (curve) {
      if (peerPublic[0] !== 4) throw new Error("not an uncompressed point");
      const ecdh = createECDH(curve);
      ecdh.setPrivateKey(share.privateKey);
      return ecdh.computeSecret(peerPublic);
    }
    const crv = MONTGOMERY[share.group]!;
    const privateKey = share.keyObject ?? montgomeryPrivateKey(crv, share.privateKey);
    const publicKey = createPublicKey({ key: { kty: "OKP", crv, x: Buffer.from(peerPublic).toString("base64url") }, format: "jwk" });
    const secret = diffieHellman({ privateKey, publicKey });
    // RFC 8446 §7.4.2: an all-zero X25519/X448 result MUST be refused.
    if (secret.every((b) => b === 0)) throw new Error("all-zero shared secret");
    return secret;
  } catch {
    throw new TlsError("TLS_ILLEGAL_PARAMETER", `invalid ${share.group} key share`);
  }
}

// ------------------------------------------------------------- signatures

const CV_PREFIX = Buffer.alloc(64, 0x20);

/** The content a CertificateVerify signs, RFC 8446 §4.4.3. */
export function certificateVerifyContent(role: "server" | "client", transcriptHash: Uint8Array): Buffer {
  return Buffer.concat([CV_PREFIX, Buffer.from(`TLS 1.3, ${role} CertificateVerify\0`, "latin1"), transcriptHash]);
}

interface SchemeRule {
  /** node:crypto's asymmetricKeyType: "rsa" is rsaEncryption, "rsa-pss" id-RSASSA-PSS (RFC 4055 §3.1). */
  readonly keyType: "ed25519" | "ed448" | "ec" | "rsa" | "rsa-pss";
  readonly curve?: string;
  readonly hash: string | null;
}

const SCHEME_RULES: Record<SignatureScheme, SchemeRule> = {
  ed25519: { keyType: "ed25519", hash: null },
  ed448: { keyType: "ed448", hash: null },
  ecdsa_secp256r1_sha256: { keyType: "ec", curve: "prime256v1", hash: "sha256" },
  ecdsa_secp384r1_sha384: { keyType: "ec", curve: "secp384r1", hash: "sha384" },
  ecdsa_secp521r1_sha512: { keyType: "ec", curve: "secp521r1", hash: "sha512" },
  rsa_pss_rsae_sha256: { keyType: "rsa", hash: "sha256" },
  rsa_pss_rsae_sha384: { keyType: "rsa", hash: "sha384" },
  rsa_pss_rsae_sha512: { keyType: "rsa", hash: "sha512" },
  // RFC 8446 §4.2.3: the same PSS signatures, by a key whose SPKI says RSASSA-PSS.
  rsa_pss_pss_sha256: { keyType: "rsa-pss", hash: "sha256" },
  rsa_pss_pss_sha384: { keyType: "rsa-pss", hash: "sha384" },
  rsa_pss_pss_sha512: { keyType: "rsa-pss", hash: "sha512" },
};

/** Digest lengths of the PSS hashes: TLS 1.3's salt is as long (RFC 8446 §4.2.3). */
const PSS_SALT_LENGTH: Readonly<Record<string, number>> = { sha256: 32, sha384: 48, sha512: 64 };

// SPKI prefixes of the fixed-size key types (RFC 8410 §4, RFC 5480 §2),
// for a fast import: OpenSSL 3's DER decoder costs ~80 µs a key, its JWK
// import ~7 µs, and a Mandos server imports one key per connection.
const SPKI_PREFIX: ReadonlyArray<{ prefix: Buffer; length: number; jwk: (raw: Buffer) => JsonWebKey }> = [
  { prefix: Buffer.from("302a300506032b6570032100", "hex"), length: 32, jwk: (x) => ({ kty: "OKP", crv: "Ed25519", x: x.toString("base64url") }) },
  { prefix: Buffer.from("3043300506032b6571033a00", "hex"), length: 57, jwk: (x) => ({ kty: "OKP", crv: "Ed448", x: x.toString("base64url") }) },
  {
    prefix: Buffer.from("3059301306072a8648ce3d020106082a8648ce3d03010703420004", "hex"),
    length: 64,
    jwk: (p) => ({ kty: "EC", crv: "P-256", x: p.subarray(0, 32).toString("base64url"), y: p.subarray(32).toString("base64url") }),
  },
  {
    prefix: Buffer.from("3076301006072a8648ce3d020106052b8104002203620004", "hex"),
    length: 96,
    jwk: (p) => ({ kty: "EC", crv: "P-384", x: p.subarray(0, 48).toString("base64url"), y: p.subarray(48).toString("base64url") }),
  },
];

function fixedSizeKind(der: Buffer): (typeof SPKI_PREFIX)[number] | undefined {
  return SPKI_PREFIX.find((p) => der.length === p.prefix.length + p.length && der.subarray(0, p.prefix.length).equals(p.prefix));
}

/** Parses a DER SubjectPublicKeyInfo; anything unparsable is bad_certificate. */
export function parseSpki(spki: Uint8Array): KeyObject {
  const der = bufferView(spki);
  try {
    const fixed = fixedSizeKind(der);
    if (fixed) return createPublicKey({ key: fixed.jwk(der.subarray(fixed.prefix.length)), format: "jwk" });
    return createPublicKey({ key: Buffer.from(der), format: "der", type: "spki" });
  } catch {
    throw new TlsError("TLS_BAD_CERTIFICATE", "the raw public key is not a valid SubjectPublicKeyInfo");
  }
}

/**
 * Whether `spki` is exactly the DER encoding of `key`, parsed from it. Not
 * (trailing bytes, a needless leading zero, a compressed point) is
 * bad_certificate, as GnuTLS's DER decoder refuses it
 * (GNUTLS_E_ASN1_DER_ERROR): the key ID hashes these bytes, and one key
 * must have one key ID. A re-encoding costs about what the parse did;
 * the fixed-size kinds of SPKI_PREFIX are exact by construction and skip it.
 */
export function requireCanonicalSpki(key: KeyObject, spki: Uint8Array): void {
  const der = bufferView(spki);
  if (fixedSizeKind(der)) return;
  // OpenSSL re-encodes a compressed EC point compressed; GnuTLS takes
  // uncompressed points only (X9.62 form 4), so the canonical form goes
  // through JWK, which has no compressed form.
  const canonical = key.asymmetricKeyType === "ec" ? createPublicKey({ key: key.export({ format: "jwk" }), format: "jwk" }) : key;
  const openssl = canonical.export({ type: "spki", format: "der" });
  if (openssl.equals(der)) return;
  if (key.asymmetricKeyDetails?.hashAlgorithm !== undefined && pssSpkiWithoutNulls(key, openssl).equals(der)) return;
  throw new TlsError("TLS_BAD_CERTIFICATE", "the raw public key is not in DER");
}

// ------------------------------------- RSASSA-PSS parameters, two ways

/** DER object identifiers (RFC 4055 §2.1, §3.1; RFC 5754 §2) of the PSS parameters TLS 1.3 can use. */
const PSS_OID = {
  rsassaPss: "06092a864886f70d01010a",
  mgf1: "06092a864886f70d010108",
  sha256: "0609608648016503040201",
  sha384: "0609608648016503040202",
  sha512: "0609608648016503040203",
} as const;

/** One DER TLV (X.690 §8.1.3: the shortest length form). */
function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.of(tag, ...length), body]);
}

/** Where the TLV at `at` ends, its header read as DER. */
function tlvEnd(der: Buffer, at: number): { body: number; end: number } {
  const first = der[at + 1]!;
  if (first < 0x80) return { body: at + 2, end: at + 2 + first };
  const octets = first & 0x7f;
  let n = 0;
  for (let i = 0; i < octets; i++) n = n * 256 + der[at + 2 + i]!;
  return { body: at + 2 + octets, end: at + 2 + octets + n };
}

/**
 * An RSASSA-PSS SPKI with parameters as GnuTLS writes it: its hash
 * AlgorithmIdentifiers carry no NULL parameters, where OpenSSL writes
 * NULL. Both are DER (RFC 5754 §2: the parameters MUST be absent, and
 * implementations MUST accept NULL too); GnuTLS's certtool, and so the
 * key files a client is given, use the first form. Built from the key's
 * details and `openssl`'s BIT STRING; only keys a TLS 1.3 scheme fits
 * come here (SHA-2 hashes, so the [0] and [1] fields are present; a salt of
 * 20, the default, is left out).
 */
function pssSpkiWithoutNulls(key: KeyObject, openssl: Buffer): Buffer {
  const { hashAlgorithm, mgf1HashAlgorithm, saltLength } = key.asymmetricKeyDetails ?? {};
  const oid = (hash: string | undefined): Buffer | undefined =>
    hash === "sha256" || hash === "sha384" || hash === "sha512" ? Buffer.from(PSS_OID[hash], "hex") : undefined;
  const hash = oid(hashAlgorithm);
  const mgfHash = oid(mgf1HashAlgorithm);
  if (!hash || !mgfHash || saltLength === undefined) return Buffer.alloc(0);
  const fields = [
    tlv(0xa0, tlv(0x30, hash)),
    tlv(0xa1, tlv(0x30, Buffer.concat([Buffer.from(PSS_OID.mgf1, "hex"), tlv(0x30, mgfHash)]))),
  ];
  if (saltLength !== 20) fields.push(tlv(0xa2, tlv(0x02, Buffer.from(saltLength < 0x80 ? [saltLength] : [0, saltLength]))));
  const algorithm = tlv(0x30, Buffer.concat([Buffer.from(PSS_OID.rsassaPss, "hex"), tlv(0x30, Buffer.concat(fields))]));
  // The subjectPublicKey BIT STRING: what follows the AlgorithmIdentifier.
  const outer = tlvEnd(openssl, 0);
  const bitString = openssl.subarray(tlvEnd(openssl, outer.body).end, outer.end);
  return tlv(0x30, Buffer.concat([algorithm, bitString]));
}

/**
 * Whether a key can make signatures with `scheme` (TLS 1.3 ties ECDSA
 * curves to hashes). An RSASSA-PSS key whose SPKI carries parameters
 * (RFC 4055 §3.1) is bound to them: the scheme's hash must be the one they
 * pin, for the digest and for MGF1, and a minimum salt no longer than the
 * digest (TLS's salt); GnuTLS likewise refuses a scheme the parameters
 * exclude. A key without parameters fits all three hashes.
 */
export function keyFitsScheme(key: KeyObject, scheme: SignatureScheme): boolean {
  const rule = SCHEME_RULES[scheme];
  if (key.asymmetricKeyType !== rule.keyType) return false;
  if (rule.curve && key.asymmetricKeyDetails?.namedCurve !== rule.curve) return false;
  if (rule.keyType === "rsa-pss") {
    const { hashAlgorithm, mgf1HashAlgorithm, saltLength } = key.asymmetricKeyDetails ?? {};
    if (hashAlgorithm !== undefined && hashAlgorithm !== rule.hash) return false;
    if (mgf1HashAlgorithm !== undefined && mgf1HashAlgorithm !== rule.hash) return false;
    if (saltLength !== undefined && saltLength > PSS_SALT_LENGTH[rule.hash!]!) return false;
  }
  return true;
}

export function verifySignature(scheme: SignatureScheme, key: KeyObject, content: Uint8Array, signature: Uint8Array): boolean {
  const rule = SCHEME_RULES[scheme];
  try {
    if (rule.keyType === "rsa" || rule.keyType === "rsa-pss") {
      return cryptoVerify(rule.hash, content, {
        key,
        padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
        saltLength: cryptoConstants.RSA_PSS_SALTLEN_DIGEST,
      }, signature);
    }
    return cryptoVerify(rule.hash, content, key, signature);
  } catch {
    return false;
  }
}

export function makeSignature(scheme: SignatureScheme, key: KeyObject, content: Uint8Array): Buffer {
  const rule = SCHEME_RULES[scheme];
  if (rule.keyType === "rsa" || rule.keyType === "rsa-pss") {
    return cryptoSign(rule.hash, content, {
      key,
      padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
      saltLength: cryptoConstants.RSA_PSS_SALTLEN_DIGEST,
    });
  }
  return cryptoSign(rule.hash, content, key);
}

/** The Mandos key ID: SHA-256 of the DER SubjectPublicKeyInfo, uppercase hex. */
export function keyId(spkiDer: Uint8Array): string {
  return digest("sha256", spkiDer).toString("hex").toUpperCase();
}
