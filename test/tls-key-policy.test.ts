// Issue 16, items 4 and 5: the raw public keys the client role accepts.
// Only what the priority string admits and GnuTLS would take (Ed25519,
// Ed448, ECDSA on the offered curves, RSA of 2,048 to 8,192 bits with a
// small exponent), and only in DER exactly. Each hostile key here comes with
// a signature that cannot verify: a refusal with the policy's alert instead
// of decrypt_error (51) shows the key was refused before any verification.

import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { errorOf, makeKey, runPair } from "./helpers/tls-pair.js";

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

/** An rsaEncryption SubjectPublicKeyInfo (RFC 8017 A.1.1) with the given sizes; no private key exists. */
function rsaSpki(modulusBits: number, exponent: Buffer): Buffer {
  const key = der(0x30, Buffer.concat([integer(modulusBits), exponent]));
  return der(0x30, Buffer.concat([RSA_ENCRYPTION, der(0x03, Buffer.concat([Buffer.of(0), key]))]));
}

const E_65537 = der(0x02, Buffer.from("010001", "hex"));

// ------------------------------------------------------------------ tests

const refused: Array<{ name: string; spki: () => Buffer; code: string; alert: number }> = [
  { name: "an RSA key with a 3,072-bit exponent", spki: () => rsaSpki(2048, integer(3072)), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  { name: "an RSA key with a 33-bit exponent", spki: () => rsaSpki(2048, integer(33)), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  { name: "an RSA key with a 16,384-bit modulus", spki: () => rsaSpki(16384, E_65537), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  { name: "an RSA-768 key", spki: () => rsaSpki(768, E_65537), code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
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
