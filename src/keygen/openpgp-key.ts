// The OpenPGP side of mandos-keygen, done in process with OpenPGP.js where
// Debian's script runs gpg: the client's key pair (pubkey.txt, seckey.txt),
// its fingerprint, and the password encrypted (and signed) to it as
// `gpg --armor --encrypt --sign` makes it, for the mandos-client on the
// machine to decrypt with GPGME.

import * as openpgp from "openpgp";
import { KeygenError, KeygenFileError } from "./errors.js";

export interface OpenPgpKeyOptions {
  /** gpg's Key-Type: RSA, or EDDSA for an Ed25519 primary key. */
  readonly type: string;
  readonly length: number;
  /** gpg's Subkey-Type: RSA, or ECDH for a Curve25519 subkey. */
  readonly subtype: string;
  readonly sublength: number;
  readonly name: string;
  readonly email: string;
  readonly comment: string;
  /** Seconds from creation; 0 for a key that does not expire. */
  readonly expireSeconds: number;
  readonly date?: Date;
  /** Told gpg's notice, as one line, when a key size is changed (gpgRsaBits). */
  readonly notice?: (line: string) => void;
}

export interface OpenPgpKeyFiles {
  /** pubkey.txt */
  readonly publicKey: string;
  /** seckey.txt, unprotected as gpg's `%no-protection` leaves it. */
  readonly secretKey: string;
  readonly fingerprint: string;
}

// Debian's script refuses a --length under this itself, before gpg sees
// it; OpenPGP.js is told to read and make RSA keys this small too.
const MIN_KEY_BITS = 512;

// gpg 2.2's RSA key sizes (g10/keygen.c, gen_rsa), which decide what
// Debian's script makes for --length and --sublength: under 1024 bits or
// over 4096, gpg says "keysize invalid" and makes its default, or its
// maximum; sizes between are rounded up to a multiple of 32.
const GPG_RSA_MIN_BITS = 1024;
const GPG_RSA_MAX_BITS = 4096;
const GPG_RSA_DEFAULT_BITS = 3072;

/** The RSA key size gpg makes for `bits`, and the notice it prints when that is not `bits`. */
export function gpgRsaBits(bits: number): { bits: number; notice: string | null } {
  if (bits < GPG_RSA_MIN_BITS) return { bits: GPG_RSA_DEFAULT_BITS, notice: `keysize invalid; using ${GPG_RSA_DEFAULT_BITS} bits` };
  if (bits > GPG_RSA_MAX_BITS) return { bits: GPG_RSA_MAX_BITS, notice: `keysize invalid; using ${GPG_RSA_MAX_BITS} bits` };
  const rounded = Math.ceil(bits / 32) * 32;
  return { bits: rounded, notice: rounded === bits ? null : `keysize rounded up to ${rounded} bits` };
}

type KeyAlgorithm = { type: "rsa"; rsaBits: number } | { type: "ecc"; curve: "ed25519Legacy" | "curve25519Legacy" };

function algorithm(type: string, bits: number, role: "primary" | "subkey", notice?: (line: string) => void): KeyAlgorithm {
  const t = type.toUpperCase();
  if (t === "RSA" || t === "1") {
    if (!Number.isInteger(bits) || bits <= 0) throw new KeygenError("KEYGEN_BAD_KEY_LENGTH", "Invalid key length");
    const made = gpgRsaBits(bits);
    if (made.notice !== null) notice?.(made.notice);
    return { type: "rsa", rsaBits: made.bits };
  }
  if (role === "primary" && (t === "EDDSA" || t === "22")) return { type: "ecc", curve: "ed25519Legacy" };
  if (role === "subkey" && (t === "ECDH" || t === "18")) return { type: "ecc", curve: "curve25519Legacy" };
  throw new KeygenError("KEYGEN_BAD_KEY_TYPE", `Unsupported OpenPGP ${role === "primary" ? "key" : "subkey"} type: ${type}`);
}

/** The armour comment Debian's script gives both key files. */
export function keyFileComment(name: string, comment: string, email: string): string {
  let text = `Mandos client key for ${name}`;
  if (comment !== "") text += ` (${comment})`;
  if (email !== "") text += ` <${email}>`;
  return text;
}

export async function generateOpenPgpKey(options: OpenPgpKeyOptions): Promise<OpenPgpKeyFiles> {
  if (options.name === "") throw new KeygenError("KEYGEN_EMPTY_NAME", "Empty key name");
  const primary = algorithm(options.type, options.length, "primary", options.notice);
  const sub = algorithm(options.subtype, options.sublength, "subkey", options.notice);
  const userID: openpgp.UserID = { name: options.name };
  if (options.email !== "") userID.email = options.email;
  if (options.comment !== "") userID.comment = options.comment;
  const { privateKey } = await openpgp.generateKey({
    ...primary,
    userIDs: [userID],
    keyExpirationTime: options.expireSeconds,
    subkeys: [{ ...sub, sign: false }],
    format: "object",
    ...(options.date ? { date: options.date } : {}),
    config: { minRSABits: MIN_KEY_BITS },
  });
  await withoutSha3Preferences(privateKey, options.date ?? new Date());
  const armour = { ...openpgp.config, showComment: true, commentString: keyFileComment(options.name, options.comment, options.email) };
  return {
    publicKey: privateKey.toPublic().armor(armour),
    secretKey: privateKey.armor(armour),
    fingerprint: privateKey.getFingerprint().toUpperCase(),
  };
}

// Hash algorithms gpg 2.2 (Debian 12's) does not know. OpenPGP.js lists
// them in every self-signature's preferences, and gpg then warns, six
// lines long, that the key "contains preferences for unavailable
// algorithms" on each use: in Debian's `mandos-keygen --password` too.
const UNKNOWN_TO_GPG_2_2 = new Set<openpgp.enums.hash>([openpgp.enums.hash.sha3_256, openpgp.enums.hash.sha3_512]);

type SelfSign = (key: openpgp.SecretKeyPacket, data: { userID: openpgp.UserIDPacket; key: openpgp.SecretKeyPacket }, date: Date, detached: boolean, config: openpgp.Config) => Promise<void>;

/** Makes each user ID's self-signature again without the hash preferences gpg 2.2 does not know. */
async function withoutSha3Preferences(key: openpgp.PrivateKey, date: Date): Promise<void> {
  const keyPacket = key.keyPacket as openpgp.SecretKeyPacket;
  for (const user of key.users) {
    if (user.userID === null) continue;
    for (const signature of user.selfCertifications) {
      if (!signature.preferredHashAlgorithms?.some((h) => UNKNOWN_TO_GPG_2_2.has(h))) continue;
      signature.preferredHashAlgorithms = signature.preferredHashAlgorithms.filter((h) => !UNKNOWN_TO_GPG_2_2.has(h));
      // SignaturePacket.sign takes the data to sign and a config at run
      // time, which its declared type leaves out. The salt notation of the
      // first signing is kept rather than a second one added.
      await (signature.sign as unknown as SelfSign).call(signature, keyPacket, { userID: user.userID, key: keyPacket }, date, false, { ...openpgp.config, nonDeterministicSignaturesViaNotation: false });
    }
  }
}

/** The primary key's fingerprint, as gpg's first `fpr:` line gives it; `file`, where the key was read, is named if it is none. */
export async function openPgpFingerprint(armoredKey: string, file?: string): Promise<string> {
  const key = await readKey(armoredKey, file);
  return key.getFingerprint().toUpperCase();
}

/**
 * What OpenPGP.js must accept to encrypt to every key Debian's script
 * encrypts to with gpg: DSA/ElGamal keys (Mandos before 1.6 made DSA and
 * ELG-E 2048 keys by default, and Debian's NEWS keeps them working) and
 * RSA keys under 2047 bits (gpg makes them from 1024 bits up). OpenPGP.js
 * rejects both by default.
 */
const ACCEPT_OLD_KEYS: Partial<openpgp.Config> = { rejectPublicKeyAlgorithms: new Set(), minRSABits: MIN_KEY_BITS };

async function readKey(armoredKey: string, file?: string): Promise<openpgp.Key> {
  try {
    return await openpgp.readKey({ armoredKey, config: ACCEPT_OLD_KEYS });
  } catch (error) {
    const reason = (error as Error).message;
    if (file !== undefined) throw new KeygenFileError("KEYGEN_KEY_UNREADABLE", file, `not an OpenPGP key: ${reason}`);
    throw new KeygenError("KEYGEN_KEY_UNREADABLE", `Not an OpenPGP key: ${reason}`);
  }
}

const SECRET_COMMENT = "Encrypted password for a Mandos client";

/**
 * `password` encrypted to the public key (and signed with the secret key
 * when there is one, as Debian's `--encrypt --sign` does), ASCII-armoured.
 */
export async function encryptPassword(password: Uint8Array, publicKey: string, secretKey: string | null): Promise<string> {
  const encryptionKeys = await readKey(publicKey);
  const signingKeys = secretKey === null ? undefined : ((await readKey(secretKey)) as openpgp.PrivateKey);
  const message = await openpgp.createMessage({ binary: password, format: "binary" });
  try {
    return await openpgp.encrypt({
      message,
      encryptionKeys,
      ...(signingKeys ? { signingKeys } : {}),
      config: { ...ACCEPT_OLD_KEYS, showComment: true, commentString: SECRET_COMMENT },
    });
  } catch (error) {
    // A key with no usable encryption subkey (expired, revoked, sign-only).
    throw new KeygenError("KEYGEN_KEY_UNUSABLE", `Cannot encrypt to the key: ${(error as Error).message}`, { cause: error });
  }
}

// gpg's armour has 64 base64 characters a line (RFC 4880 §6.3 allows up
// to 76); OpenPGP.js writes 60. The section is made to look as Debian's.
const GPG_ARMOUR_LINE = 64;

/**
 * The `secret` option's continuation lines, as Debian's script makes them
 * from gpg's armour: the base64 body only (no headers, no CRC-24 line),
 * in lines of gpg's length, each indented four spaces.
 */
export function secretLines(armoured: string): string[] {
  const lines = armoured.split(/\r?\n/);
  const begin = lines.indexOf("-----BEGIN PGP MESSAGE-----");
  const end = lines.indexOf("-----END PGP MESSAGE-----");
  const blank = lines.indexOf("", begin);
  let body = "";
  for (const line of lines.slice(blank + 1, end)) {
    // The CRC-24 line, "=" and four characters; not a line of padding ("==").
    if (!/^=[A-Za-z0-9+/]{4}$/.test(line.trim())) body += line.trim();
  }
  const out: string[] = [];
  for (let i = 0; i < body.length; i += GPG_ARMOUR_LINE) out.push(`    ${body.slice(i, i + GPG_ARMOUR_LINE)}`);
  return out;
}
