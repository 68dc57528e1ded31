// A legacy Mandos client's identity for the TLS 1.2 server role: its
// OpenPGP key (as mandos-keygen writes seckey.txt), read with OpenPGP.js.
// The RSA primary key signs the ServerKeyExchange; the transferable public
// key goes in the Certificate (RFC 6091). Used by our test client and the
// benchmark's simulated legacy machines.

import { createHash, createPrivateKey, createPublicKey, sign, type KeyObject } from "node:crypto";
import * as openpgp from "openpgp";
import { v4KeyHashPrefix } from "../tls/tls12/openpgp-cert.js";
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

/** An OpenPGP packet: new-format header, five-octet length (RFC 4880 §4.2.2.3), any size. */
export function openPgpPacket(tag: number, body: Uint8Array): Buffer {
  const h = Buffer.allocUnsafe(6);
  h[0] = 0xc0 | tag;
  h[1] = 255;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

/**
 * A minimal OpenPGP identity over an RSA key pair, with node:crypto only:
 * a v4 public key packet created at `created` (seconds since the epoch), a
 * user ID, and its positive certification (SHA-512). The creation time is
 * part of the v4 fingerprint, so one RSA key makes as many distinct
 * identities as the benchmark's simulated legacy fleet needs without an
 * RSA key generation each (seconds for RSA-4096).
 */
export function openPgpIdentityFromRsa(privateKey: KeyObject, name: string, created: number): LegacyIdentity {
  const jwk = createPublicKey(privateKey).export({ format: "jwk" });
  const mpi = (b64url: string): Buffer => {
    let v = Buffer.from(b64url, "base64url");
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    v = v.subarray(i);
    const bits = (v.length - 1) * 8 + (32 - Math.clz32(v[0]!));
    const head = Buffer.allocUnsafe(2);
    head.writeUInt16BE(bits);
    return Buffer.concat([head, v]);
  };
  const time = Buffer.allocUnsafe(4);
  time.writeUInt32BE(created >>> 0);
  const keyBody = Buffer.concat([Buffer.of(4), time, Buffer.of(1), mpi(jwk.n!), mpi(jwk.e!)]);
  const keyPrefix = v4KeyHashPrefix(keyBody);
  const fpr = createHash("sha1").update(keyPrefix).digest();
  const uid = Buffer.from(name, "utf8");
  const uidPrefix = Buffer.alloc(5);
  uidPrefix[0] = 0xb4;
  uidPrefix.writeUInt32BE(uid.length, 1);
  // Hashed: signature creation time (2), issuer fingerprint (33); unhashed: issuer key ID (16).
  const hashed = Buffer.concat([Buffer.of(5, 2), time, Buffer.of(22, 33, 4), fpr]);
  const sigHead = Buffer.concat([Buffer.of(4, 0x13, 1, 10, hashed.length >> 8, hashed.length & 0xff), hashed]);
  const trailer = Buffer.alloc(6);
  trailer[0] = 4;
  trailer[1] = 0xff;
  trailer.writeUInt32BE(sigHead.length, 2);
  const signed = Buffer.concat([keyPrefix, uidPrefix, uid, sigHead, trailer]);
  const digest = createHash("sha512").update(signed).digest();
  const signature = sign("sha512", signed, privateKey);
  const unhashed = Buffer.concat([Buffer.of(9, 16), fpr.subarray(12)]);
  const sigBody = Buffer.concat([sigHead, Buffer.of(0, unhashed.length), unhashed, digest.subarray(0, 2), mpi(signature.toString("base64url"))]);
  return {
    privateKey,
    publicKey: Buffer.concat([openPgpPacket(6, keyBody), openPgpPacket(13, uid), openPgpPacket(2, sigBody)]),
    keyId: fpr.subarray(12),
    fingerprint: fpr.toString("hex").toUpperCase(),
  };
}
