// TLS key pairs as Debian's mandos-keygen makes them with `certtool
// --generate-privkey --sec-param ultra --pkcs8` (tls-privkey.pem, PKCS#8)
// and `--pubkey-info` (tls-pubkey.pem, SubjectPublicKeyInfo), and the key ID
// the server knows a client by (`certtool --key-id --hash=sha256`).

import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { KeygenError, KeygenFileError } from "./errors.js";

export type TlsKeyType = "ed25519" | "ed448" | "ecdsa" | "rsa";

export interface TlsKeyPair {
  /** PKCS#8 PEM, unencrypted. */
  readonly privateKeyPem: string;
  /** SubjectPublicKeyInfo PEM. */
  readonly publicKeyPem: string;
}

// certtool's "ultra" security parameter: 256-bit security, which GnuTLS
// maps to secp521r1 for ECDSA and to 15424-bit moduli for RSA
// (gnutls_sec_param_to_pk_bits, lib/algorithms/secparams.c).
const ULTRA_RSA_BITS = 15424;
const ULTRA_EC_CURVE = "P-521";

export function parseTlsKeyType(text: string): TlsKeyType {
  const t = text.toLowerCase();
  if (t === "ed25519" || t === "ed448" || t === "ecdsa" || t === "rsa") return t;
  if (t === "ecc" || t === "ec") return "ecdsa";
  throw new KeygenError("KEYGEN_BAD_KEY_TYPE", `Unsupported TLS key type: ${text} (ed25519, ed448, ecdsa or rsa)`);
}

export function generateTlsKey(type: TlsKeyType): TlsKeyPair {
  const pair =
    type === "rsa"
      ? generateKeyPairSync("rsa", { modulusLength: ULTRA_RSA_BITS })
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
