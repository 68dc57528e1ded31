// Issue 16, items 4 and 5: the raw public keys the client role accepts.
// Only what the priority string admits and GnuTLS would take (Ed25519,
// Ed448, ECDSA on the offered curves, RSA and RSA-PSS of 1,024 to 16,384
// bits with a small exponent), and only in DER exactly. Each hostile key here comes with
// a signature that cannot verify: a refusal with the policy's alert instead
// of decrypt_error (51) shows the key was refused before any verification.

import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes, type KeyObject, type RSAPSSKeyPairKeyObjectOptions } from "node:crypto";
import { errorOf, makeKey, runPair } from "./helpers/tls-pair.js";
import { TlsError } from "../src/tls/index.js";

// ------------------------------------------------ DER, just enough for RSA

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function der(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.of(tag), derLength(content.length), content]);
}

/** A positive INTEGER of exactly `bits` bits, odd, random below its top bit. */
function integer(bits: number): Buffer {
  const bytes = randomBytes(Math.ceil(bits / 8));
  const top = (bits - 1) % 8;
  bytes[0] = (bytes[0]! & ((1 << top) - 1)) | (1 << top);
  bytes[bytes.length - 1]! |= 1;
  return der(0x02, bytes[0]! & 0x80 ? Buffer.concat([Buffer.of(0), bytes]) : bytes);
}

const RSA_ENCRYPTION = Buffer.from("300d06092a864886f70d0101010500", "hex");
/** id-RSASSA-PSS without parameters (RFC 4055 §3.1), as certtool writes it. */
const RSASSA_PSS = Buffer.from("300b06092a864886f70d01010a", "hex");

/** An rsaEncryption (or `algorithm`) SubjectPublicKeyInfo (RFC 8017 A.1.1) with the given sizes; no private key exists. */
function rsaSpki(modulusBits: number, exponent: Buffer, algorithm = RSA_ENCRYPTION): Buffer {
  const key = der(0x30, Buffer.concat([integer(modulusBits), exponent]));
  return der(0x30, Buffer.concat([algorithm, der(0x03, Buffer.concat([Buffer.of(0), key]))]));
}

const E_65537 = der(0x02, Buffer.from("010001", "hex"));

// ------------------------------------------------------------------ tests

const refused: Array<{ name: string; spki: () => Buffer; code: string; alert: number }> = [
  { name: "an RSA key with a 3,072-bit exponent", spki: () => rsaSpki(2048, integer(3072)), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  { name: "an RSA key with a 33-bit exponent", spki: () => rsaSpki(2048, integer(33)), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  { name: "an RSA key with a 16,392-bit modulus", spki: () => rsaSpki(16392, E_65537), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  { name: "an RSA-768 key", spki: () => rsaSpki(768, E_65537), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  { name: "an RSA-PSS key of 768 bits", spki: () => rsaSpki(768, E_65537, RSASSA_PSS), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  { name: "an RSA-PSS key of 16,392 bits", spki: () => rsaSpki(16392, E_65537, RSASSA_PSS), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  { name: "an RSA key with an even exponent", spki: () => rsaSpki(2048, der(0x02, Buffer.of(4))), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  {
    name: "an X25519 key (no signature scheme fits it)",
    spki: () => generateKeyPairSync("x25519").publicKey.export({ type: "spki", format: "der" }),
    code: "TLS_UNSUPPORTED_CERTIFICATE",
    alert: 43,
  },
  {
    name: "an ECDSA key on secp256k1 (not a curve we offered)",
    spki: () => generateKeyPairSync("ec", { namedCurve: "secp256k1" }).publicKey.export({ type: "spki", format: "der" }),
    code: "TLS_UNSUPPORTED_CERTIFICATE",
    alert: 43,
  },
  {
    name: "an Ed25519 key followed by a zero byte",
    spki: () => Buffer.concat([makeKey("ed25519").publicKeySpki, Buffer.of(0)]),
    code: "TLS_BAD_CERTIFICATE",
    alert: 42,
  },
  {
    name: "an RSA-2048 key followed by a zero byte",
    spki: () => Buffer.concat([makeKey("rsa").publicKeySpki, Buffer.of(0)]),
    code: "TLS_BAD_CERTIFICATE",
    alert: 42,
  },
  {
    name: "an RSA key whose modulus has a needless leading zero (BER, not DER)",
    spki: () => {
      const good = makeKey("rsa").publicKeySpki;
      // 30 82 01 22 | 30 0d ... 05 00 | 03 82 01 0f 00 | 30 82 01 0a | 02 82 01 01 00 <256 bytes> | 02 03 010001
      const modulus = good.subarray(28, 28 + 261);
      assert.equal(modulus[0], 0x02);
      const padded = der(0x02, Buffer.concat([Buffer.of(0), modulus.subarray(4)]));
      const key = der(0x30, Buffer.concat([padded, E_65537]));
      return der(0x30, Buffer.concat([RSA_ENCRYPTION, der(0x03, Buffer.concat([Buffer.of(0), key]))]));
    },
    code: "TLS_BAD_CERTIFICATE",
    alert: 42,
  },
];

for (const r of refused) {
  test(`refused before any verification: ${r.name} (alert ${r.alert})`, () => {
    const result = runPair({ faults: { presentKey: r.spki() }, message: Buffer.from("secret") });
    assert.deepEqual(errorOf(result.clientEvents), { code: r.code, alert: r.alert });
    assert.ok(!result.clientEvents.some((e) => e.type === "handshake-complete"));
    assert.equal(result.clientEvents.filter((e) => e.type === "error").length, 1);
    assert.ok(!result.serverEvents.some((e) => e.type === "data"));
  });
}

test("a P-256 key sent as a compressed point is bad_certificate (one key, one key ID)", () => {
  const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = pair.publicKey.export({ format: "jwk" });
  const x = Buffer.from(jwk.x!, "base64url");
  const y = Buffer.from(jwk.y!, "base64url");
  const prefix = Buffer.from("3039301306072a8648ce3d020106082a8648ce3d030107032200", "hex");
  const compressed = Buffer.concat([prefix, Buffer.of(2 + (y[31]! & 1)), x]);
  const result = runPair({ key: { privateKey: pair.privateKey, publicKeySpki: compressed } });
  assert.deepEqual(errorOf(result.clientEvents), { code: "TLS_BAD_CERTIFICATE", alert: 42 });
});

for (const bits of [2048, 3072]) {
  test(`an RSA-${bits} key with exponent 65537 is accepted`, () => {
    const pair = generateKeyPairSync("rsa", { modulusLength: bits });
    const key = { privateKey: pair.privateKey, publicKeySpki: pair.publicKey.export({ type: "spki", format: "der" }) };
    const result = runPair({ key });
    assert.equal(errorOf(result.clientEvents), null);
    assert.ok(result.clientEvents.some((e) => e.type === "handshake-complete"));
  });
}

test("an RSA key with exponent 3 is accepted", () => {
  const pair = generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 3 });
  const result = runPair({ key: { privateKey: pair.privateKey, publicKeySpki: pair.publicKey.export({ type: "spki", format: "der" }) } });
  assert.equal(errorOf(result.clientEvents), null);
});

test("a key the priority string does not admit is refused though it could sign", () => {
  const result = runPair({
    clientPriority: "NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+AES-128-GCM:+GROUP-ALL:+SIGN-EDDSA-ED25519",
    key: makeKey("ed448"),
    faults: { scheme: "ed448" },
  });
  assert.deepEqual(errorOf(result.clientEvents), { code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 });
});

// Our bounds alone (the reference's GnuTLS serves RSA-768): the error says
// so (KEY_POLICY), and its message, the daemon's WARNING, names the bound.
for (const [bits, algorithm, words] of [
  [768, RSA_ENCRYPTION, "RSA key of 768 bits: below 1024"],
  [16392, RSASSA_PSS, "RSA key of 16392 bits: above 16384"],
] as const) {
  test(`the WARNING's words for a key of ${bits} bits: ${words}`, () => {
    const result = runPair({ faults: { presentKey: rsaSpki(bits, E_65537, algorithm) } });
    const event = result.clientEvents.find((e) => e.type === "error");
    const error = event?.type === "error" ? event.error : undefined;
    assert.ok(error instanceof TlsError);
    assert.equal(error.gnutls, "KEY_POLICY");
    assert.equal(error.message, words);
  });
}

test("an RSA-1024 key is accepted (the reference serves it)", () => {
  const pair = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const result = runPair({ key: { privateKey: pair.privateKey, publicKeySpki: pair.publicKey.export({ type: "spki", format: "der" }) } });
  assert.equal(errorOf(result.clientEvents), null);
});

test("an RSA key of 16,384 bits gets as far as its CertificateVerify (the bound admits it)", () => {
  // The server signs with its own Ed25519 key: a scheme this key cannot make.
  const result = runPair({ faults: { presentKey: rsaSpki(16384, E_65537) } });
  assert.deepEqual(errorOf(result.clientEvents), { code: "TLS_ILLEGAL_PARAMETER", alert: 47 });
});

const SALT = { sha256: 32, sha384: 48, sha512: 64 } as const;

/** An RSA-PSS key pair of 2,048 bits, its SPKI pinned to `hash` (for digest and MGF1, salt as long) or without parameters. */
function pssKey(hash?: keyof typeof SALT): { privateKey: KeyObject; publicKeySpki: Buffer } {
  // @types/node types saltLength as a string; Node takes a number.
  const options = { modulusLength: 2048, ...(hash && { hashAlgorithm: hash, mgf1HashAlgorithm: hash, saltLength: SALT[hash] }) } as unknown as RSAPSSKeyPairKeyObjectOptions;
  const pair = generateKeyPairSync("rsa-pss", options);
  return { privateKey: pair.privateKey, publicKeySpki: pair.publicKey.export({ type: "spki", format: "der" }) };
}

// RSASSA-PSS keys (RFC 8446 §4.2.3, rsa_pss_pss_*): without parameters any
// of the three hashes; with parameters, only the hash they pin.
for (const hash of [undefined, "sha256", "sha384", "sha512"] as const) {
  test(`an RSA-PSS key${hash ? ` pinned to ${hash}` : ""} signs with rsa_pss_pss_${hash ?? "sha256"} and is accepted`, () => {
    const result = runPair({ key: pssKey(hash), message: Buffer.from("secret") });
    assert.equal(errorOf(result.clientEvents), null);
    const done = result.clientEvents.find((e) => e.type === "handshake-complete");
    assert.equal(done?.type === "handshake-complete" ? done.signatureScheme : undefined, `rsa_pss_pss_${hash ?? "sha256"}`);
  });
}

test("an RSA-PSS key pinned to SHA-384 that signs with rsa_pss_pss_sha256 is illegal_parameter", () => {
  const key = pssKey("sha384");
  const result = runPair({ key, faults: { scheme: "rsa_pss_pss_sha256" } });
  assert.deepEqual(errorOf(result.clientEvents), { code: "TLS_ILLEGAL_PARAMETER", alert: 47 });
});

test("an RSA-PSS key pinned to SHA-384 when only rsa_pss_pss_sha256 was offered is unsupported_certificate", () => {
  const key = pssKey("sha384");
  const result = runPair({
    clientPriority: "NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+AES-128-GCM:+GROUP-ALL:+SIGN-RSA-PSS-SHA256",
    key,
    faults: { scheme: "rsa_pss_pss_sha256" },
  });
  assert.deepEqual(errorOf(result.clientEvents), { code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 });
});

test("an RSA-PSS SPKI with parameters in GnuTLS's form (no NULL after the hash OIDs) is DER, and accepted", () => {
  const { privateKey, publicKeySpki: openssl } = pssKey("sha384");
  // OpenSSL: ... 06 09 <sha384> 05 00 ...; GnuTLS's certtool leaves the NULLs out.
  const sha384 = "0609608648016503040202";
  const params = der(0x30, Buffer.concat([
    der(0xa0, der(0x30, Buffer.from(sha384, "hex"))),
    der(0xa1, der(0x30, Buffer.concat([Buffer.from("06092a864886f70d010108", "hex"), der(0x30, Buffer.from(sha384, "hex"))]))),
    der(0xa2, der(0x02, Buffer.of(48))),
  ]));
  const algorithm = der(0x30, Buffer.concat([Buffer.from("06092a864886f70d01010a", "hex"), params]));
  const bitString = openssl.subarray(openssl.indexOf(Buffer.from("0382", "hex"), 20));
  const gnutls = der(0x30, Buffer.concat([algorithm, bitString]));
  assert.notDeepEqual(gnutls, openssl);
  const result = runPair({ key: { privateKey, publicKeySpki: gnutls } });
  assert.equal(errorOf(result.clientEvents), null);
});
