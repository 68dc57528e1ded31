// A legacy Mandos client's identity for the TLS 1.2 server role: its
// OpenPGP key (as mandos-keygen writes seckey.txt), read with OpenPGP.js.
// The RSA primary key signs the ServerKeyExchange; the transferable public
// key goes in the Certificate (RFC 6091). Used by our test client and the
// benchmark's simulated legacy machines.

import { createPrivateKey } from "node:crypto";
import * as openpgp from "openpgp";
import type { OpenPgpIdentity } from "../tls/tls12/server12.js";

export interface LegacyIdentity extends OpenPgpIdentity {
  /** The primary key's v4 fingerprint, 40 upper-case hex digits (clients.conf's `fingerprint`). */
  readonly fingerprint: string;
}

const big = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).toString("hex") || "0"}`);
function b64(n: bigint): string {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return Buffer.from(hex, "hex").toString("base64url");
}
function inverse(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [a % m, m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return ((s0 % m) + m) % m;
}

/** From a decrypted OpenPGP.js private key whose primary key is RSA. */
export function identityFromKey(key: openpgp.PrivateKey): LegacyIdentity {
  const packet = key.keyPacket as unknown as { publicParams: { n?: Uint8Array; e?: Uint8Array }; privateParams?: { d?: Uint8Array; p?: Uint8Array; q?: Uint8Array } };
  const { n, e } = packet.publicParams;
  const priv = packet.privateParams;
  if (!n || !e || !priv?.d || !priv.p || !priv.q) throw new Error("the OpenPGP primary key is not an unlocked RSA key");
  const d = big(priv.d);
  // OpenPGP keeps p < q and u = p^-1 mod q; a JWK's qi is q^-1 mod p: swap them.
  const p = big(priv.q);
  const q = big(priv.p);
  const privateKey = createPrivateKey({
    key: { kty: "RSA", n: b64(big(n)), e: b64(big(e)), d: b64(d), p: b64(p), q: b64(q), dp: b64(d % (p - 1n)), dq: b64(d % (q - 1n)), qi: b64(inverse(q, p)) },
    format: "jwk",
  });
  return {
    privateKey,
    publicKey: key.toPublic().write(),
    keyId: Buffer.from(key.getKeyID().toHex(), "hex"),
    fingerprint: key.getFingerprint().toUpperCase(),
  };
}

/** From an armoured secret key without passphrase (mandos-keygen's seckey.txt). */
export async function loadLegacyIdentity(armoredSecretKey: string): Promise<LegacyIdentity> {
  return identityFromKey(await openpgp.readPrivateKey({ armoredKey: armoredSecretKey }));
}

/** A fresh RSA key with a user ID and an encryption subkey, as mandos-keygen makes one. */
export async function generateLegacyIdentity(bits: 2048 | 3072 | 4096, name: string): Promise<LegacyIdentity> {
  const { privateKey } = await openpgp.generateKey({ type: "rsa", rsaBits: bits, userIDs: [{ name }], format: "object" });
  return identityFromKey(privateKey);
}
