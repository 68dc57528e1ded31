// OpenPGP identities for the TLS 1.2 server role (a simulated legacy
// mandos-client): the recorded session's key from project test data, or a
// fresh one. OpenPGP.js reads and makes them; its RSA private numbers
// become a node:crypto key for signing the ServerKeyExchange.

import { createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import * as openpgp from "openpgp";
import type { OpenPgpIdentity } from "../../src/tls/tls12/server12.js";
import { LEGACY_DATA } from "./legacy-session.js";

export interface TestOpenPgpIdentity extends OpenPgpIdentity {
  readonly fingerprint: string;
}

const big = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).toString("hex") || "0"}`);
const b64 = (n: bigint): string => {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return Buffer.from(hex, "hex").toString("base64url");
};
function inverse(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [a % m, m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return ((s0 % m) + m) % m;
}

export async function identityFromKey(key: openpgp.PrivateKey): Promise<TestOpenPgpIdentity> {
  const packet = key.keyPacket as unknown as { publicParams: { n: Uint8Array; e: Uint8Array }; privateParams: { d: Uint8Array; p: Uint8Array; q: Uint8Array } };
  const n = big(packet.publicParams.n);
  const e = big(packet.publicParams.e);
  const d = big(packet.privateParams.d);
  // OpenPGP keeps p < q and u = p^-1 mod q; a JWK's qi is q^-1 mod p: swap them.
  const p = big(packet.privateParams.q);
  const q = big(packet.privateParams.p);
  const privateKey = createPrivateKey({
    key: { kty: "RSA", n: b64(n), e: b64(e), d: b64(d), p: b64(p), q: b64(q), dp: b64(d % (p - 1n)), dq: b64(d % (q - 1n)), qi: b64(inverse(q, p)) },
    format: "jwk",
  });
  return {
    privateKey,
    publicKey: key.toPublic().write(),
    keyId: Buffer.from(key.getKeyID().toHex(), "hex"),
    fingerprint: key.getFingerprint().toUpperCase(),
  };
}

/** The key of the recorded legacy client (fingerprint 9A2BE965...). */
export async function recordedIdentity(): Promise<TestOpenPgpIdentity> {
  const key = await openpgp.readPrivateKey({ armoredKey: readFileSync(`${LEGACY_DATA}seckey.txt`, "latin1") });
  return identityFromKey(key);
}

/** A fresh RSA key as mandos-keygen would make one (a user ID, an encryption subkey). */
export async function freshIdentity(bits: 2048 | 3072 | 4096, name = "legacy-fresh"): Promise<TestOpenPgpIdentity> {
  const { privateKey } = await openpgp.generateKey({ type: "rsa", rsaBits: bits, userIDs: [{ name }], format: "object" });
  return identityFromKey(privateKey);
}
