// TLS key pairs as Debian's mandos-keygen makes them with `certtool
// --generate-privkey --sec-param ultra --pkcs8` (tls-privkey.pem, PKCS#8)
// and `--pubkey-info` (tls-pubkey.pem, SubjectPublicKeyInfo), and the key ID
// the server knows a client by (`certtool --key-id --hash=sha256`).

import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { KeygenError, KeygenFileError } from "./errors.js";

export type TlsKeyType = "ed25519" | "ed448" | "ecdsa" | "rsa" | "rsa-pss";

export interface TlsKeyPair {
  /** PKCS#8 PEM, unencrypted. */
  readonly privateKeyPem: string;
  /** SubjectPublicKeyInfo PEM. */
  readonly publicKeyPem: string;
}

// certtool's "ultra" security parameter, as certtool 3.7.9 (Debian 12's)
// applies it, which need not be what GnuTLS's table says
// (lib/algorithms/secparams.c: 15424-bit RSA, 256-bit curves): it makes
// 8192-bit RSA and RSA-PSS keys ("Generating a 8192 bit RSA private key")
// and P-384 ECDSA keys ("Generating a 384 bit EC/ECDSA private key"), and
// so does Debian's mandos-keygen. Ours makes what theirs makes.
const ULTRA_RSA_BITS = 8192;
const ULTRA_EC_CURVE = "P-384";

export function parseTlsKeyType(text: string): TlsKeyType {
  const t = text.toLowerCase();
  if (t === "ed25519" || t === "ed448" || t === "ecdsa" || t === "rsa" || t === "rsa-pss") return t;
  if (t === "ecc" || t === "ec") return "ecdsa";
  throw new KeygenError("KEYGEN_BAD_KEY_TYPE", `Unsupported TLS key type: ${text} (ed25519, ed448, ecdsa, rsa or rsa-pss)`);
}

/** `rsaBits`: the modulus of an RSA or RSA-PSS key (tests make smaller ones: an 8,192-bit key takes Node seconds to minutes). */
export function generateTlsKey(type: TlsKeyType, rsaBits = ULTRA_RSA_BITS): TlsKeyPair {
  const pair =
    type === "rsa"
      ? generateKeyPairSync("rsa", { modulusLength: rsaBits })
      // No hashAlgorithm: an RSASSA-PSS SPKI without parameters, as
      // certtool writes one, which may sign with SHA-256, -384 or -512.
      : type === "rsa-pss"
        ? generateKeyPairSync("rsa-pss", { modulusLength: rsaBits })
      : type === "ecdsa"
        ? generateKeyPairSync("ec", { namedCurve: ULTRA_EC_CURVE })
        : type === "ed448"
          ? generateKeyPairSync("ed448")
          : generateKeyPairSync("ed25519");
  return {
    privateKeyPem: pair.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    publicKeyPem: pair.publicKey.export({ type: "spki", format: "pem" }) as string,
  };
}

/**
 * The key ID: SHA-256 of the DER SubjectPublicKeyInfo, in lowercase hex as
 * certtool prints it (clients.conf compares it without regard to case).
 * `file`, where a PEM text was read, is named if the text is no public key.
 */
export function tlsKeyId(publicKey: string | Buffer | KeyObject, file?: string): string {
  let key: KeyObject;
  try {
    key = typeof publicKey === "object" && "export" in publicKey && !Buffer.isBuffer(publicKey) ? publicKey : createPublicKey(publicKey);
  } catch (error) {
    if (file === undefined) throw error;
    throw new KeygenFileError("KEYGEN_KEY_UNREADABLE", file, `not a public key: ${(error as Error).message}`, { cause: error });
  }
  return createHash("sha256").update(key.export({ type: "spki", format: "der" })).digest("hex");
}
