// The legacy client's OpenPGP key (the transferable public key, RFC 4880
// §11.1, inside the RFC 6091 Certificate that messages12.ts unframes),
// checked to the rule of docs/PROTOCOL.md ("Legacy clients", Checks): its
// key packet read here, the rest parsed and its self-signatures verified
// with OpenPGP.js. OpenPGP.js is imported the first time a legacy
// certificate gets that far, not before: a server that only serves modern
// clients never loads it. Its API is async, so this is the one async step
// of a handshake task (flight12.ts).
//
// Validation, step by step, each failure one alert; every exception
// OpenPGP.js throws becomes one of these with a message of ours (its own
// may quote the input):
//   1. the packet headers: at most MAX_OPENPGP_PACKETS, known
//      tags only, one public key and first            -> bad_certificate
//      (counted before OpenPGP.js parses anything: it spends
//      ~30 µs a packet, and 32 KiB of empty user IDs is 16,384)
//   2. the key packet, read here: a v4 RSA key in the bounds
//      of limits.ts (the WARNING names a bound crossed),
//      canonical MPIs, nothing after them             -> unsupported_certificate / bad_certificate
//   3. the key ID sent is the primary key's            -> bad_certificate
//   4. `prove`: the peer shows it holds the key (flight12.ts:
//      the ServerKeyExchange signature), then `admit` sees
//      the fingerprint (an unknown one is refused), before
//      anything dear: OpenPGP.js spent 22 ms on a key packet
//      followed by a user attribute of 15,000 subpackets
//   5. OpenPGP.js reads the key (readKey): a packet that does
//      not parse                                       -> bad_certificate
//      an unsupported version or algorithm             -> unsupported_certificate
//   6. at most MAX_SELF_SIGNATURES self-signatures, each in
//      its place; every one verifies (SignaturePacket.verify),
//      none older than the key, the key not from the future;
//      a user ID is self-certified, each subkey bound; no key
//      revocation                                      -> bad_certificate

import { createHash, createPublicKey, type KeyObject } from "node:crypto";
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

/** What step 1 leaves: the signature packets counted and the primary key packet's body. */
interface PacketWalk {
  readonly signatures: number;
  readonly primary: Buffer;
}

/**
 * Step 1: the packet headers (RFC 4880 §4.2), counted and their tags
 * checked, bodies untouched but the first's.
 */
function walkPacketHeaders(b: Buffer): PacketWalk {
  let packets = 0;
  let signatures = 0;
  let keys = 0;
  let primary: Buffer | null = null;
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
    if (packets === 1) primary = b.subarray(at, at + length);
    if (tag === TAG.Signature) signatures++;
    at += length;
  }
  if (primary === null) throw unreadable("empty");
  return { signatures, primary };
}

function bitLength(b: Uint8Array): number {
  return b.length === 0 ? 0 : (b.length - 1) * 8 + (32 - Math.clz32(b[0]!));
}

/** The primary key, read from its packet (step 2). */
interface PrimaryKey {
  readonly key: KeyObject;
  readonly bits: number;
  /** v4: SHA-1 over 0x99, the body's two-byte length and the body; 40 upper-case hex digits. */
  readonly fingerprint: string;
  /** Its last 8 bytes, in hex, upper case. */
  readonly keyId: string;
}

/** Public-key algorithms of RFC 4880 §9.1 we take: RSA (encrypt or sign) and RSA sign-only. */
const RSA_ALGORITHMS: ReadonlySet<number> = new Set([1, 3]);

/** An MPI (RFC 4880 §3.2) at `at`: its bytes and where the next field starts. */
function mpiAt(body: Buffer, at: number): { bytes: Buffer; next: number } {
  if (at + 2 > body.length) throw bad("key packet cut short", "GNUTLS_E_MPI_SCAN_FAILED");
  const bytes = Math.ceil(body.readUInt16BE(at) / 8);
  if (at + 2 + bytes > body.length) throw bad("key packet cut short", "GNUTLS_E_MPI_SCAN_FAILED");
  return { bytes: body.subarray(at + 2, at + 2 + bytes), next: at + 2 + bytes };
}

/**
 * What a v4 key's fingerprint, and every signature over the key, hash for
 * it (RFC 4880 §5.2.4, §12.2): 0x99, the packet body's two-byte length,
 * the body.
 */
export function v4KeyHashPrefix(body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.of(0x99, body.length >> 8, body.length & 0xff), body]);
}

/**
 * Step 2: a v4 RSA key packet (RFC 4880 §5.5.2: version, creation time,
 * algorithm, n, e) in our bounds, as a node:crypto key, with its
 * fingerprint and key ID (§12.2).
 */
function readPrimaryKey(body: Buffer): PrimaryKey {
  const version = body[0];
  if (version !== 4) throw unsupported(`a version ${version ?? "(none)"} key (v4 only)`);
  if (body.length < 6) throw bad("key packet cut short", "GNUTLS_E_MPI_SCAN_FAILED");
  const algo = body[5]!;
  // GnuTLS 3.5 also reads DSA keys, which no suite a legacy client offers can use (docs/PROTOCOL.md).
  if (!RSA_ALGORITHMS.has(algo)) throw unsupported(`primary key algorithm ${algo} (RSA only)`);
  const n = mpiAt(body, 6);
  const e = mpiAt(body, n.next);
  if (e.next !== body.length) throw bad("bytes after the key in its packet");
  // A leading zero byte would make the fingerprint depend on how the MPI was padded.
  if (n.bytes[0] === 0 || e.bytes[0] === 0) throw bad("RSA key MPI is not canonical");
  const bits = bitLength(n.bytes);
  // Bounds of ours alone (the reference has none): the WARNING names the one crossed (KEY_POLICY).
  if (bits < MIN_OPENPGP_RSA_MODULUS_BITS) throw tlsErrorAs("KEY_POLICY", "TLS_UNSUPPORTED_CERTIFICATE", `OpenPGP certificate: RSA key of ${bits} bits: below ${MIN_OPENPGP_RSA_MODULUS_BITS}`);
  if (bits > MAX_OPENPGP_RSA_MODULUS_BITS) throw tlsErrorAs("KEY_POLICY", "TLS_UNSUPPORTED_CERTIFICATE", `OpenPGP certificate: RSA key of ${bits} bits: above ${MAX_OPENPGP_RSA_MODULUS_BITS}`);
  const eBits = bitLength(e.bytes);
  const eLast = e.bytes[e.bytes.length - 1] ?? 0;
  if (eBits > MAX_RSA_EXPONENT_BITS || eBits === 0 || (eLast & 1) === 0 || (eBits <= 2 && eLast < 3)) {
    throw unsupported(`RSA public exponent of ${eBits} bits`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: "RSA", n: n.bytes.toString("base64url"), e: e.bytes.toString("base64url") }, format: "jwk" });
  } catch {
    throw bad("the RSA key does not import");
  }
  const fingerprint = createHash("sha1").update(v4KeyHashPrefix(body)).digest("hex").toUpperCase();
  return { key, bits, fingerprint, keyId: fingerprint.slice(-16) };
}

/**
 * The whole check (steps 1-6) of a binary transferable public key;
 * `sentKeyId` is subkey_cert's. `prove` is given the key before anything
 * dear is done and throws if the peer has not shown it holds it; `admit`
 * then throws for a fingerprint no client has.
 */
export async function checkTransferableKey(
  keyBytes: Uint8Array,
  sentKeyId: Uint8Array | null = null,
  admit?: (fingerprint: string) => void,
  now: Date = new Date(),
  prove?: (key: KeyObject) => void,
): Promise<OpenPgpCertificate> {
  // Step 1.
  const bytes = bufferView(keyBytes);
  const walk = walkPacketHeaders(bytes);
  // Step 2.
  const primary = readPrimaryKey(walk.primary);
  // Step 3.
  if (sentKeyId && Buffer.from(sentKeyId).toString("hex").toUpperCase() !== primary.keyId) throw bad("the key ID sent is not the primary key's");
  // Step 4.
  prove?.(primary.key);
  admit?.(primary.fingerprint);
  // Step 5.
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
  // The key step 2 read: OpenPGP.js writes the packet it read for its own fingerprint.
  if (key.getFingerprint().toUpperCase() !== primary.fingerprint) throw bad("the key packet does not read back the same");
  // Step 6.
  await verifySelfSignatures(openpgp, key, walk.signatures, now);
  return { fingerprint: primary.fingerprint, keyId: primary.keyId, key: primary.key, modulusBits: primary.bits };
}

/** One self-signature to verify: what it is over, as SignaturePacket.verify takes it. */
interface SelfSignature {
  readonly signature: OpenPgp.SignaturePacket;
  readonly type: OpenPgp.enums.signature;
  readonly data: object;
}

/**
 * Step 6, the reference's gnutls_openpgp_crt_verify_self and where we
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
