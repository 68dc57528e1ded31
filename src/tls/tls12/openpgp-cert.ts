// The legacy client's OpenPGP key (the transferable public key, RFC 4880
// §11.1, inside the RFC 6091 Certificate that messages12.ts unframes),
// parsed and its self-signatures verified with OpenPGP.js, to the rule of
// docs/PROTOCOL.md ("Legacy clients", Checks). OpenPGP.js is imported the
// first time a legacy certificate arrives, not before: a server that only
// serves modern clients never loads it. Its API is async, so this is the
// one async step of a handshake task (flight12.ts).
//
// Validation, step by step, each failure one alert; every exception
// OpenPGP.js throws becomes one of these with a message of ours (its own
// may quote the input):
//   1. the packet headers: at most MAX_OPENPGP_PACKETS, known
//      tags only, one public key and first            -> bad_certificate
//      (counted before OpenPGP.js parses anything: it spends
//      ~30 µs a packet, and 32 KiB of empty user IDs is 16,384)
//   2. OpenPGP.js reads the key (readKey): a packet that does
//      not parse                                       -> bad_certificate
//      an unsupported version or algorithm             -> unsupported_certificate
//   3. the primary key is a v4 RSA key in the bounds of
//      limits.ts (the WARNING names a bound crossed),
//      canonical MPIs                                  -> unsupported_certificate
//   4. the key ID sent is the primary key's            -> bad_certificate
//      then `admit` sees the fingerprint (flight12.ts: an
//      unknown one is refused before any signature work)
//   5. at most MAX_SELF_SIGNATURES self-signatures, each in
//      its place; every one verifies (SignaturePacket.verify),
//      none older than the key, the key not from the future;
//      a user ID is self-certified, each subkey bound; no key
//      revocation                                      -> bad_certificate

import { createPublicKey, type KeyObject } from "node:crypto";
import type * as OpenPgp from "openpgp";
import { TlsError, tlsErrorAs, type GnutlsError } from "../errors.js";
import { MAX_OPENPGP_RSA_MODULUS_BITS, MAX_RSA_EXPONENT_BITS, MIN_OPENPGP_RSA_MODULUS_BITS } from "../limits.js";
import { bufferView } from "../record.js";

/**
 * Packets in one transferable public key. A real one has five (key, user
 * ID, certification, subkey, binding); GnuPG keys with many user IDs and
 * third-party certifications reach a few dozen. OpenPGP.js spends ~30 µs
 * parsing each, whatever its size.
 */
export const MAX_OPENPGP_PACKETS = 64;
/** Self-signatures we verify at most: each costs ~0.3 ms (RSA-4096 through OpenPGP.js). */
export const MAX_SELF_SIGNATURES = 16;

export interface OpenPgpCertificate {
  /** The primary key's v4 fingerprint, 40 upper-case hex digits. */
  readonly fingerprint: string;
  /** The primary key's key ID, 16 upper-case hex digits. */
  readonly keyId: string;
  /** The primary key, for the ServerKeyExchange signature (node:crypto). */
  readonly key: KeyObject;
  readonly modulusBits: number;
}

type OpenPgpModule = typeof OpenPgp;
let loading: Promise<OpenPgpModule> | null = null;

/**
 * OpenPGP.js, loaded once, on first use. After the server dropped its
 * privileges, so the installation must be readable by the dropped user (as
 * for a worker Piscina restarts); a failed load is tried again next time.
 */
function openPgp(): Promise<OpenPgpModule> {
  loading ??= import("openpgp").catch(() => {
    loading = null;
    throw new TlsError("TLS_INTERNAL", "OpenPGP.js could not be loaded");
  });
  return loading;
}

/** Packet tags a transferable public key may hold (RFC 4880 §11.1); trust packets are skipped by readers. */
const TAG = { Signature: 2, PublicKey: 6, Trust: 12, UserId: 13, PublicSubkey: 14, UserAttribute: 17 } as const;
const KEY_TAGS: ReadonlySet<number> = new Set(Object.values(TAG));

/** Names of OpenPGP.js's errors: the only part of one we repeat. */
const OPENPGP_ERRORS: ReadonlySet<string> = new Set(["MalformedPacketError", "UnknownPacketError", "UnsupportedError"]);

/** `gnutls`: the legacy reference's error where it is not TLS_BAD_CERTIFICATE's. */
function bad(why: string, gnutls?: GnutlsError): TlsError {
  return new TlsError("TLS_BAD_CERTIFICATE", `OpenPGP certificate: ${why}`, undefined, -1, undefined, gnutls);
}

/**
 * A key OpenCDK cannot read (GnuTLS 3.5's packet parser): the legacy
 * reference fails the handshake with `GnuTLS internal error.`. Compared
 * with it for no packet header, a header cut short and a secret key's tag
 * (test/helpers/legacy-faults.ts); the other header faults are taken to
 * fail there alike.
 */
function unreadable(why: string): TlsError {
  return bad(why, "GNUTLS_E_INTERNAL_ERROR");
}

/**
 * What the legacy reference finds only after its handshake, with
 * gnutls_openpgp_crt_verify_self: it then logs `Bad certificate: (unknown
 * error code)` (OPENPGP_VERIFY_SELF). We refuse it in the handshake.
 */
function badSelf(why: string): TlsError {
  return bad(why, "OPENPGP_VERIFY_SELF");
}

function unsupported(why: string): TlsError {
  return new TlsError("TLS_UNSUPPORTED_CERTIFICATE", `OpenPGP certificate: ${why}`);
}

/** An OpenPGP.js exception as our alert; never its message. */
function fromOpenPgp(error: unknown, during: string, gnutls?: GnutlsError): TlsError {
  if (error instanceof TlsError) return error;
  const name = error instanceof Error && OPENPGP_ERRORS.has(error.name) ? error.name : "Error";
  if (name === "UnsupportedError") return unsupported(`${during}: an unsupported version or algorithm`);
  return bad(`${during} (${name})`, gnutls);
}

/**
 * Step 1: the packet headers (RFC 4880 §4.2), counted and their tags
 * checked, bodies untouched. Returns the number of signature packets.
 */
function walkPacketHeaders(b: Buffer): number {
  let packets = 0;
  let signatures = 0;
  let keys = 0;
  for (let at = 0; at < b.length; ) {
    if (++packets > MAX_OPENPGP_PACKETS) throw unreadable(`more than ${MAX_OPENPGP_PACKETS} packets`);
    const h = b[at++]!;
    if ((h & 0x80) === 0) throw unreadable("not a packet header");
    let tag: number;
    let length: number;
    if (h & 0x40) {
      tag = h & 0x3f;
      const l0 = b[at++];
      if (l0 === undefined) throw unreadable("truncated packet header");
      if (l0 < 192) length = l0;
      else if (l0 < 224) {
        if (at >= b.length) throw unreadable("truncated packet header");
        length = ((l0 - 192) << 8) + b[at++]! + 192;
      } else if (l0 === 255) {
        if (at + 4 > b.length) throw unreadable("truncated packet header");
        length = b.readUInt32BE(at);
        at += 4;
      } else throw unreadable("partial packet length"); // for data packets only (§4.2.2.4)
    } else {
      tag = (h >> 2) & 0x0f;
      const n = [1, 2, 4, 0][h & 3]!;
      if (n === 0) throw unreadable("indeterminate packet length");
      if (at + n > b.length) throw unreadable("truncated packet header");
      length = b.readUIntBE(at, n);
      at += n;
    }
    // A body cut short: OpenCDK fails in the number the cut ends in (compared
    // for a key whose last signature lost 40 bytes), most of a key being numbers.
    if (at + length > b.length) throw bad("truncated packet", "GNUTLS_E_MPI_SCAN_FAILED");
    if (!KEY_TAGS.has(tag)) throw unreadable(`packet tag ${tag} in a public key`);
    if (packets === 1 && tag !== TAG.PublicKey) throw badSelf("does not start with a public key");
    if (tag === TAG.PublicKey && ++keys > 1) throw unreadable("more than one primary key");
    if (tag === TAG.Signature) signatures++;
    at += length;
  }
  if (packets === 0) throw unreadable("empty");
  return signatures;
}

function bitLength(b: Uint8Array): number {
  return b.length === 0 ? 0 : (b.length - 1) * 8 + (32 - Math.clz32(b[0]!));
}

/** Step 3: a v4 RSA primary key in our bounds, as a node:crypto key. */
function rsaPrimaryKey(openpgp: OpenPgpModule, packet: OpenPgp.PublicKeyPacket): { key: KeyObject; bits: number } {
  if (packet.version !== 4) throw unsupported(`a version ${packet.version} key (v4 only)`);
  const algo = packet.algorithm;
  // RSA (encrypt or sign) and RSA sign-only; GnuTLS 3.5 also reads DSA
  // keys, which no suite a legacy client offers can use (docs/PROTOCOL.md).
  if (algo !== openpgp.enums.publicKey.rsaEncryptSign && algo !== openpgp.enums.publicKey.rsaSign) {
    throw unsupported(`primary key algorithm ${Number(algo)} (RSA only)`);
  }
  const { n, e } = packet.publicParams as { n?: Uint8Array; e?: Uint8Array };
  if (!(n instanceof Uint8Array) || !(e instanceof Uint8Array)) throw bad("RSA key without n and e");
  // A leading zero byte would make the fingerprint depend on how the MPI was padded.
  if (n[0] === 0 || e[0] === 0) throw bad("RSA key MPI is not canonical");
  const bits = bitLength(n);
  // Bounds of ours alone (the reference has none): the WARNING names the one crossed (KEY_POLICY).
  if (bits < MIN_OPENPGP_RSA_MODULUS_BITS) throw tlsErrorAs("KEY_POLICY", "TLS_UNSUPPORTED_CERTIFICATE", `OpenPGP certificate: RSA key of ${bits} bits: below ${MIN_OPENPGP_RSA_MODULUS_BITS}`);
  if (bits > MAX_OPENPGP_RSA_MODULUS_BITS) throw tlsErrorAs("KEY_POLICY", "TLS_UNSUPPORTED_CERTIFICATE", `OpenPGP certificate: RSA key of ${bits} bits: above ${MAX_OPENPGP_RSA_MODULUS_BITS}`);
  const eBits = bitLength(e);
  const eLast = e[e.length - 1] ?? 0;
  if (eBits > MAX_RSA_EXPONENT_BITS || eBits === 0 || (eLast & 1) === 0 || (eBits <= 2 && eLast < 3)) {
    throw unsupported(`RSA public exponent of ${eBits} bits`);
  }
  try {
    const jwk = { kty: "RSA", n: Buffer.from(n).toString("base64url"), e: Buffer.from(e).toString("base64url") };
    return { key: createPublicKey({ key: jwk, format: "jwk" }), bits };
  } catch {
    throw bad("the RSA key does not import");
  }
}

/** The whole check (steps 1-5) of a binary transferable public key; `sentKeyId` is subkey_cert's. */
export async function checkTransferableKey(
  keyBytes: Uint8Array,
  sentKeyId: Uint8Array | null = null,
  admit?: (fingerprint: string) => void,
  now: Date = new Date(),
): Promise<OpenPgpCertificate> {
  // Step 1.
  const bytes = bufferView(keyBytes);
  const signaturePackets = walkPacketHeaders(bytes);
  // Step 2.
  const openpgp = await openPgp();
  let key: OpenPgp.PublicKey;
  try {
    // Strict: an unsupported packet is an error, not one silently left out of the key.
    key = await openpgp.readKey({ binaryKey: new Uint8Array(keyBytes), config: { ignoreUnsupportedPackets: false, ignoreMalformedPackets: false } });
  } catch (error) {
    // GnuTLS 3.5 (the legacy reference) imports the key with OpenCDK and maps
    // its parse errors to GNUTLS_E_INTERNAL_ERROR (docs/OPERATION.md, "Why a handshake failed").
    throw fromOpenPgp(error, "the key does not parse", "GNUTLS_E_INTERNAL_ERROR");
  }
  if (key.isPrivate()) throw bad("a secret key");
  // Step 3.
  const primary = key.keyPacket as OpenPgp.PublicKeyPacket;
  const rsa = rsaPrimaryKey(openpgp, primary);
  // Step 4 (before any signature work).
  const keyId = key.getKeyID();
  if (sentKeyId && Buffer.from(sentKeyId).toString("hex") !== keyId.toHex()) throw bad("the key ID sent is not the primary key's");
  const fingerprint = key.getFingerprint().toUpperCase();
  admit?.(fingerprint);
  // Step 5.
  await verifySelfSignatures(openpgp, key, signaturePackets, now);
  return { fingerprint, keyId: keyId.toHex().toUpperCase(), key: rsa.key, modulusBits: rsa.bits };
}

/** One self-signature to verify: what it is over, as SignaturePacket.verify takes it. */
interface SelfSignature {
  readonly signature: OpenPgp.SignaturePacket;
  readonly type: OpenPgp.enums.signature;
  readonly data: object;
}

/**
 * Step 5, the reference's gnutls_openpgp_crt_verify_self and where we
 * differ from it (docs/PROTOCOL.md): every signature the primary key
 * issued over a user ID, a subkey or the key itself verifies; at least one
 * user ID is self-certified and each subkey has a binding signature; a key
 * revocation refuses the key.
 */
async function verifySelfSignatures(openpgp: OpenPgpModule, key: OpenPgp.PublicKey, signaturePackets: number, now: Date): Promise<void> {
  const primary = key.keyPacket;
  const keyId = key.getKeyID();
  const self = (s: OpenPgp.SignaturePacket): boolean => s.issuerKeyID.equals(keyId);
  const sig = openpgp.enums.signature;
  const checks: SelfSignature[] = [];
  // OpenPGP.js sorts a key's signatures by what they are over, and leaves
  // out, without a word, one that is nowhere it can be (a certification
  // before any user ID, a type no key holds). Count them all: every
  // signature must have its place, as GnuTLS checks each one it reads.
  // Internal shape of the Key (directSignatures is not in the typings).
  const direct = (key as unknown as { directSignatures?: OpenPgp.SignaturePacket[] }).directSignatures ?? [];
  let placed = direct.length + key.revocationSignatures.length;
  let certifiedUserIds = 0;
  for (const user of key.users) {
    placed += user.selfCertifications.length + user.otherCertifications.length + user.revocationSignatures.length;
    const data = { userID: user.userID, userAttribute: user.userAttribute, key: primary };
    for (const s of user.selfCertifications) checks.push({ signature: s, type: sig.certGeneric, data });
    for (const s of user.revocationSignatures.filter(self)) checks.push({ signature: s, type: sig.certRevocation, data });
    if (user.userID && user.selfCertifications.length > 0) certifiedUserIds++;
  }
  for (const subkey of key.subkeys) {
    placed += subkey.bindingSignatures.length + subkey.revocationSignatures.length;
    const data = { key: primary, bind: subkey.keyPacket };
    const bindings = subkey.bindingSignatures.filter(self);
    if (bindings.length === 0) throw badSelf("a subkey without a binding signature");
    for (const s of bindings) checks.push({ signature: s, type: sig.subkeyBinding, data });
    for (const s of subkey.revocationSignatures.filter(self)) checks.push({ signature: s, type: sig.subkeyRevocation, data });
  }
  for (const s of direct.filter(self)) {
    // A certification revocation before any user ID lands here too; GnuTLS finds no user ID for it.
    if (s.signatureType !== sig.key) throw badSelf("a certification revocation outside a user ID");
    checks.push({ signature: s, type: sig.key, data: { key: primary } });
  }
  const revocations = key.revocationSignatures.filter(self);
  for (const s of revocations) checks.push({ signature: s, type: sig.keyRevocation, data: { key: primary } });
  if (placed !== signaturePackets) throw badSelf("a signature out of place");
  if (certifiedUserIds === 0) throw badSelf("no self-certified user ID");
  if (checks.length > MAX_SELF_SIGNATURES) throw badSelf(`more than ${MAX_SELF_SIGNATURES} self-signatures`);
  // As GnuTLS 3.5 (_cdk_sig_check): a key from the future, or a signature older than its key, is a time conflict.
  if (primary.created.getTime() > now.getTime()) throw badSelf("the key was created in the future");
  for (const { signature, type, data } of checks) {
    if (!signature.created || signature.created.getTime() < primary.created.getTime()) throw badSelf("a self-signature older than the key");
    try {
      // date null: no expiry, like GnuTLS's verify_self (see docs/PROTOCOL.md).
      await signature.verify(primary, type, data, null as unknown as Date, false, openpgp.config);
    } catch (error) {
      throw fromOpenPgp(error, `self-signature of type 0x${Number(signature.signatureType).toString(16)} does not verify`, "OPENPGP_VERIFY_SELF");
    }
  }
  if (revocations.length > 0) throw badSelf("the key is revoked");
}
