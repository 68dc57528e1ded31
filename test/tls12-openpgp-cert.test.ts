// The legacy client's OpenPGP certificate as the server checks it (through
// OpenPGP.js, src/tls/tls12/openpgp-cert.ts): a table of broken, hostile
// and unsupported keys, each sent by our TLS 1.2 server role and ending in
// the alert docs/PROTOCOL.md names, with the number of signatures OpenPGP.js
// was asked to verify counted (the bounds and the key checks come before
// any); keys the reference takes that we take too; and the RFC 6091
// framing's own table.

import assert from "node:assert/strict";
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import * as openpgp from "openpgp";
import { openPgpIdentityFromRsa, openPgpPacket } from "../src/client/openpgp-identity.js";
import { buildKnownKeyTable, type TlsEvent } from "../src/tls/index.js";
import { encodeOpenPgpCertificateMessage, parseOpenPgpCertificateMessage } from "../src/tls/tls12/messages12.js";
import { MAX_OPENPGP_PACKETS, MAX_SELF_SIGNATURES, checkTransferableKey } from "../src/tls/tls12/openpgp-cert.js";
import { freshIdentity, recordedIdentity, type TestOpenPgpIdentity } from "./helpers/legacy-keys.js";
import { runLegacyPair } from "./helpers/tls12-pair.js";

/** Calls `counted` at each call of `proto[method]` while the suite (or file) around it runs. */
function countCalls<P extends object, K extends keyof P>(proto: P, method: K, counted: () => void): void {
  const real = proto[method] as (...args: unknown[]) => unknown;
  before(() => {
    proto[method] = function (this: unknown, ...args: unknown[]) {
      counted();
      return real.apply(this, args);
    } as P[K];
  });
  after(() => {
    proto[method] = real as P[K];
  });
}

// Every signature OpenPGP.js verifies goes through this method: count the calls.
let verifications = 0;
countCalls(openpgp.SignaturePacket.prototype, "verify", () => verifications++);

const packet = openPgpPacket;

function mpi(v: Buffer): Buffer {
  const bits = (v.length - 1) * 8 + (32 - Math.clz32(v[0]!));
  return Buffer.concat([Buffer.of(bits >> 8, bits & 0xff), v]);
}

/** A v4 (or other version) public key packet body with these MPIs, created in 2020. */
function keyBody(algorithm: number, mpis: Buffer[], version = 4): Buffer {
  const time = Buffer.alloc(4);
  time.writeUInt32BE(1_600_000_000);
  const v3Validity = version === 3 ? Buffer.alloc(2) : Buffer.alloc(0);
  return Buffer.concat([Buffer.of(version), time, v3Validity, Buffer.of(algorithm), ...mpis.map(mpi)]);
}

/** Random bytes of exactly `bits` bits, odd. */
function number(bits: number): Buffer {
  const b = randomBytes(Math.ceil(bits / 8));
  b[0] = (b[0]! & (0xff >> (b.length * 8 - bits))) | (1 << ((bits - 1) % 8));
  b[b.length - 1]! |= 1;
  return b;
}

const UID = packet(13, Buffer.from("legacy-test"));
const E65537 = Buffer.of(1, 0, 1);

let recorded: TestOpenPgpIdentity;
let rsa2048: TestOpenPgpIdentity;
/** An OpenPGP.js key whose parts the table takes apart (RSA-2048, a user ID, an encryption subkey). */
let pgp: openpgp.PrivateKey;
let pgpKeyId: Buffer;
let revoked: Uint8Array;
let manySubkeys: Uint8Array;
let thirdPartyCertified: Uint8Array;
let ecc: openpgp.PrivateKey;

before(async () => {
  recorded = await recordedIdentity();
  rsa2048 = await freshIdentity(2048, "legacy-table");
  ({ privateKey: pgp } = await openpgp.generateKey({ type: "rsa", rsaBits: 2048, userIDs: [{ name: "legacy-test" }], format: "object" }));
  pgpKeyId = Buffer.from(pgp.getKeyID().toHex(), "hex");
  revoked = (await openpgp.revokeKey({ key: pgp, format: "object" })).publicKey.write();
  // Ed25519 subkeys: one binding signature each, cheap to make.
  let many = pgp;
  for (let i = 0; i < MAX_SELF_SIGNATURES; i++) many = await many.addSubkey({ type: "ecc", curve: "ed25519Legacy", sign: false });
  manySubkeys = many.toPublic().write();
  const { privateKey: other } = await openpgp.generateKey({ type: "ecc", curve: "ed25519Legacy", userIDs: [{ name: "a third party" }], format: "object" });
  const withThird = pgp.toPublic();
  withThird.users[0] = await withThird.users[0]!.certify([other], undefined, openpgp.config);
  thirdPartyCertified = withThird.write();
  ({ privateKey: ecc } = await openpgp.generateKey({ type: "ecc", curve: "ed25519Legacy", userIDs: [{ name: "legacy-test" }], format: "object" }));
});

/** pgp's public key with `change` applied to a copy of its structure. */
function pgpWith(change: (key: openpgp.PublicKey) => void): Uint8Array {
  const key = pgp.toPublic();
  change(key);
  return key.write();
}

/**
 * pgp's private key for node:crypto: the peer signs its ServerKeyExchange
 * with the key of the certificate it sends, as it must before the
 * certificate itself is looked at (openpgp-cert.ts, step 4).
 */
function pgpSigner(): KeyObject {
  const { n, e } = pgp.keyPacket.publicParams as { n: Uint8Array; e: Uint8Array };
  const { d, p, q, u } = (pgp.keyPacket as unknown as { privateParams: Record<"d" | "p" | "q" | "u", Uint8Array> }).privateParams;
  const big = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).toString("hex")}`);
  const b64 = (v: bigint): string => Buffer.from(v.toString(16).padStart(2 * Math.ceil(v.toString(16).length / 2), "0"), "hex").toString("base64url");
  // OpenPGP's u is p⁻¹ mod q: with the primes swapped it is JWK's qi (q⁻¹ mod p).
  const [jp, jq, D] = [big(q), big(p), big(d)];
  return createPrivateKey({ key: { kty: "RSA", n: b64(big(n)), e: b64(big(e)), d: b64(D), p: b64(jp), q: b64(jq), dp: b64(D % (jp - 1n)), dq: b64(D % (jq - 1n)), qi: b64(big(u)) }, format: "jwk" });
}

function certificate(key: Uint8Array, keyId: Uint8Array = pgpKeyId): Buffer {
  return encodeOpenPgpCertificateMessage(keyId, key);
}

function refusal(events: TlsEvent[]): { code: string; alert: number } {
  assert.ok(!events.some((e) => e.type === "handshake-complete"), "handshake must not complete");
  const err = events.find((e) => e.type === "error");
  assert.ok(err?.type === "error", "an error event");
  return { code: err.error.code, alert: err.error.alert };
}

describe("OpenPGP certificates the server refuses, and what each costs", () => {
  // [name, certificate body, code, alert, signatures verified at most, the key the peer signs with (default: recorded's)]
  const table: Array<[string, () => Buffer, string, number, number, (() => KeyObject)?]> = [
    ["a self-signature that does not verify (the user ID changed)", () => certificate(pgpWith((k) => {
      const user = k.users[0]!;
      (user as { userID: openpgp.UserIDPacket }).userID = openpgp.UserIDPacket.fromObject({ name: "legacy-tesT" });
    })), "TLS_BAD_CERTIFICATE", 42, 1, pgpSigner],
    ["a key ID that is not the primary key's", () => certificate(pgp.toPublic().write(), rsa2048.keyId), "TLS_BAD_CERTIFICATE", 42, 0],
    ["a revoked key (a valid key revocation)", () => certificate(revoked), "TLS_BAD_CERTIFICATE", 42, 3, pgpSigner],
    ["no user ID", () => certificate(pgpWith((k) => void (k.users = []))), "TLS_BAD_CERTIFICATE", 42, 0, pgpSigner],
    ["a user ID without its self-certification", () => certificate(pgpWith((k) => void (k.users[0]!.selfCertifications = []))), "TLS_BAD_CERTIFICATE", 42, 0, pgpSigner],
    ["a subkey without its binding signature", () => certificate(pgpWith((k) => void (k.subkeys[0]!.bindingSignatures = []))), "TLS_BAD_CERTIFICATE", 42, 0, pgpSigner],
    [`more than ${MAX_SELF_SIGNATURES} self-signatures (many subkeys)`, () => certificate(manySubkeys), "TLS_BAD_CERTIFICATE", 42, 0, pgpSigner],
    [`more than ${MAX_OPENPGP_PACKETS} packets (empty user IDs)`, () => certificate(Buffer.concat([pgp.toPublic().write(), ...Array.from({ length: MAX_OPENPGP_PACKETS }, () => Buffer.of(0xcd, 0))])), "TLS_BAD_CERTIFICATE", 42, 0],
    // OpenPGP.js would spend ~0.2 s parsing these; the headers are counted first.
    ["8,000 empty user IDs (16 KB, one record)", () => certificate(Buffer.concat([packet(6, keyBody(1, [number(2048), E65537])), Buffer.alloc(2 * 8_000, Buffer.of(0xcd, 0))]), Buffer.alloc(8)), "TLS_BAD_CERTIFICATE", 42, 0],
    // A DSA primary key: GnuTLS 3.5 reads it, but no suite a legacy
    // client offers can carry a DSA key (no DHE_DSS; docs/PROTOCOL.md),
    // so it could never complete a handshake with the reference either.
    ["a DSA primary key", () => certificate(Buffer.concat([packet(6, keyBody(17, [number(2048), number(256), number(2047), number(2047)])), UID])), "TLS_UNSUPPORTED_CERTIFICATE", 43, 0],
    ["an EdDSA primary key", () => certificate(ecc.toPublic().write(), Buffer.from(ecc.getKeyID().toHex(), "hex")), "TLS_UNSUPPORTED_CERTIFICATE", 43, 0],
    ["RSA-768 (factored in 2009; below MIN_OPENPGP_RSA_MODULUS_BITS)", () => {
      const id = openPgpIdentityFromRsa(generateKeyPairSync("rsa", { modulusLength: 768 }).privateKey, "legacy-test", 1_600_000_000);
      return certificate(id.publicKey, id.keyId);
    }, "TLS_UNSUPPORTED_CERTIFICATE", 43, 0],
    ["RSA of 8,200 bits (over MAX_OPENPGP_RSA_MODULUS_BITS)", () => certificate(Buffer.concat([packet(6, keyBody(1, [number(8200), E65537])), UID]), Buffer.alloc(8)), "TLS_UNSUPPORTED_CERTIFICATE", 43, 0],
    ["an RSA exponent of 64 bits", () => certificate(Buffer.concat([packet(6, keyBody(1, [number(2048), number(64)])), UID]), Buffer.alloc(8)), "TLS_UNSUPPORTED_CERTIFICATE", 43, 0],
    ["a v3 key packet", () => certificate(Buffer.concat([packet(6, keyBody(1, [number(2048), E65537], 3)), UID]), Buffer.alloc(8)), "TLS_UNSUPPORTED_CERTIFICATE", 43, 0],
    ["junk instead of a key", () => certificate(Buffer.concat([Buffer.of(0x3f), randomBytes(200)])), "TLS_BAD_CERTIFICATE", 42, 0],
    ["a key packet of junk", () => certificate(Buffer.concat([packet(6, Buffer.concat([Buffer.of(4, 0, 0, 0, 0, 1, 0xff, 0xff), randomBytes(40)])), UID])), "TLS_BAD_CERTIFICATE", 42, 0],
    ["a byte after the last packet", () => certificate(Buffer.concat([pgp.toPublic().write(), Buffer.of(0x99)])), "TLS_BAD_CERTIFICATE", 42, 0],
    ["a second key after the first", () => certificate(Buffer.concat([pgp.toPublic().write(), Buffer.from(rsa2048.publicKey)])), "TLS_BAD_CERTIFICATE", 42, 0],
    ["a user ID before the key", () => certificate(Buffer.concat([UID, pgp.toPublic().write()])), "TLS_BAD_CERTIFICATE", 42, 0],
    ["a secret key", () => certificate(pgp.write()), "TLS_BAD_CERTIFICATE", 42, 0],
    ["a packet of an unknown tag", () => certificate(Buffer.concat([pgp.toPublic().write(), packet(60, Buffer.of(1))])), "TLS_BAD_CERTIFICATE", 42, 0],
    ["a certification before any user ID (out of place)", () => {
      // The user ID's certification once more, right after the key packet: OpenPGP.js would leave it out.
      const list = pgp.toPublic().toPacketList();
      const parts = list.map((p) => packet((p.constructor as unknown as { tag: number }).tag, p.write()));
      return certificate(Buffer.concat([parts[0]!, parts[2]!, ...parts.slice(1)]));
    }, "TLS_BAD_CERTIFICATE", 42, 0, pgpSigner],
    ["a key created tomorrow", () => {
      const id = openPgpIdentityFromRsa(rsa2048.privateKey, "legacy-test", Math.floor(Date.now() / 1000) + 86_400);
      return certificate(id.publicKey, id.keyId);
    }, "TLS_BAD_CERTIFICATE", 42, 0, () => rsa2048.privateKey],
    ["the RFC 6091 key field with a byte after it", () => Buffer.concat([certificate(pgp.toPublic().write()), Buffer.of(0)]), "TLS_DECODE", 50, 0],
  ];
  for (const [name, body, code, alert, maxVerified, signer] of table) {
    test(name, async () => {
      const sent = body();
      verifications = 0;
      const r = await runLegacyPair(signer ? { ...recorded, privateKey: signer() } : recorded, { faults: { certificateBody: sent } });
      assert.deepEqual(refusal(r.clientEvents), { code, alert });
      assert.ok(verifications <= maxVerified, `${verifications} signatures verified`);
      // The peer read our alert.
      const peer = r.serverEvents.find((e) => e.type === "error");
      assert.ok(peer?.type === "error" && peer.error.peerAlert === alert);
      assert.equal(r.received.length, 0);
    });
  }

  test("the message of a refusal is ours, never OpenPGP.js's (which may quote the input)", async () => {
    const marker = "\u001b[31mEVIL";
    // A user ID carrying the marker, then a signature packet that does not parse.
    const key = Buffer.concat([packet(6, keyBody(1, [number(2048), E65537])), packet(13, Buffer.from(marker)), packet(2, Buffer.concat([Buffer.of(4, 0x13, 1, 8), Buffer.from(marker)]))]);
    const error = await checkTransferableKey(key).then(() => null, (e: unknown) => e);
    assert.ok(error instanceof Error);
    assert.equal((error as { code?: string }).code, "TLS_BAD_CERTIFICATE");
    assert.ok(!error.message.includes("EVIL"), error.message);
    assert.match(error.message, /^OpenPGP certificate: [ -~]+$/);
  });
});

describe("a peer that has not shown it holds the key costs no OpenPGP.js work", () => {
  // What OpenPGP.js spent most on, parsing a key: a user attribute
  // (tag 17) of 15,000 two-byte subpackets, 30 KB, took it 22 ms.
  let userAttributeReads = 0;
  countCalls(openpgp.UserAttributePacket.prototype, "read", () => userAttributeReads++);
  const heavy = (id: TestOpenPgpIdentity): Buffer => {
    const body = Buffer.alloc(2 * 15_000, Buffer.of(1, 0x64));
    const header = Buffer.alloc(6);
    header[0] = 0xc0 | 17;
    header[1] = 0xff;
    header.writeUInt32BE(body.length, 2);
    return certificate(Buffer.concat([id.publicKey, header, body]), id.keyId);
  };

  test("a listed key with a signature that does not verify: decrypt_error, nothing parsed or verified", async () => {
    for (const certificateBody of [heavy(recorded), certificate(recorded.publicKey, recorded.keyId)]) {
      userAttributeReads = 0;
      verifications = 0;
      const r = await runLegacyPair(recorded, { knownKeys: buildKnownKeyTable([recorded.fingerprint]), faults: { certificateBody, tamperSignature: true } });
      assert.deepEqual(refusal(r.clientEvents), { code: "TLS_DECRYPT_ERROR", alert: 51 });
      assert.deepEqual([userAttributeReads, verifications], [0, 0]);
    }
  });

  test("a key no client has, proven: access_denied, nothing parsed or verified; unproven, decrypt_error", async () => {
    const table = buildKnownKeyTable([recorded.fingerprint]);
    userAttributeReads = 0;
    verifications = 0;
    const proven = await runLegacyPair(rsa2048, { knownKeys: table, faults: { certificateBody: heavy(rsa2048) } });
    assert.deepEqual(refusal(proven.clientEvents), { code: "TLS_UNKNOWN_PEER_KEY", alert: 49 });
    const err = proven.clientEvents.find((e) => e.type === "error");
    assert.equal(err?.type === "error" && err.error.keyId, rsa2048.fingerprint);
    assert.deepEqual([userAttributeReads, verifications], [0, 0]);
    // Not "not found" until the peer showed it holds the key (the reference
    // looks the key up only after a whole handshake).
    const unproven = await runLegacyPair(rsa2048, { knownKeys: table, faults: { certificateBody: heavy(rsa2048), tamperSignature: true } });
    assert.deepEqual(refusal(unproven.clientEvents), { code: "TLS_DECRYPT_ERROR", alert: 51 });
  });

  test("a listed key, proven, is parsed whole", async () => {
    userAttributeReads = 0;
    const r = await runLegacyPair(recorded, { knownKeys: buildKnownKeyTable([recorded.fingerprint]), faults: { certificateBody: heavy(recorded) } });
    // An attribute nobody certified is no signature to verify, as in GnuTLS.
    assert.equal(userAttributeReads, 1);
    assert.equal(r.received.toString(), "the secret");
  });
});

describe("OpenPGP certificates the server takes", () => {
  test("a key with a third party's certification: only the self-signatures are verified", async () => {
    verifications = 0;
    const cert = await checkTransferableKey(thirdPartyCertified, pgpKeyId);
    assert.equal(cert.fingerprint, pgp.getFingerprint().toUpperCase());
    // The user ID's certification and the subkey's binding.
    assert.equal(verifications, 2);
  });

  test("OpenPGP.js keys with an encryption subkey, and node:crypto-made ones, complete a handshake", async () => {
    const id = { privateKey: rsa2048.privateKey, publicKey: rsa2048.publicKey, keyId: rsa2048.keyId };
    const r = await runLegacyPair(id);
    assert.equal(r.received.toString(), "the secret");
    const made = openPgpIdentityFromRsa(rsa2048.privateKey, "machine0", 1_700_000_000);
    assert.equal((await runLegacyPair(made)).received.toString(), "the secret");
  });

  // The reference on GnuTLS 3.5 serves it, and old mandos-keygen made such keys on request (--length 1024).
  test("an RSA-1,024 key completes a handshake", async () => {
    const small = openPgpIdentityFromRsa(generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey, "machine1024", 1_700_000_000);
    assert.equal((await runLegacyPair(small)).received.toString(), "the secret");
  });

  test("a fingerprint the known-key table refuses costs no signature verification", async () => {
    const { buildKnownKeyTable } = await import("../src/tls/index.js");
    verifications = 0;
    const r = await runLegacyPair(recorded, { knownKeys: buildKnownKeyTable([rsa2048.fingerprint]) });
    assert.deepEqual(refusal(r.clientEvents), { code: "TLS_UNKNOWN_PEER_KEY", alert: 49 });
    assert.equal(verifications, 0);
  });
});

describe("the RFC 6091 Certificate framing (messages12.ts)", () => {
  const key = Buffer.from("a key's bytes");
  const frame = (type: number, rest: Buffer, outer?: number): Buffer => {
    const inner = Buffer.concat([Buffer.of(type), rest]);
    const len = outer ?? inner.length;
    return Buffer.concat([Buffer.of(len >> 16, (len >> 8) & 0xff, len & 0xff), inner]);
  };
  const u24 = (n: number) => Buffer.of(n >> 16, (n >> 8) & 0xff, n & 0xff);
  const table: Array<[string, Buffer, string]> = [
    ["empty", Buffer.of(0, 0, 0), "TLS_BAD_CERTIFICATE"],
    ["a key fingerprint (type 0)", frame(0, Buffer.concat([Buffer.of(20), Buffer.alloc(20)])), "TLS_UNSUPPORTED_CERTIFICATE"],
    ["a subkey fingerprint (type 3)", frame(3, Buffer.concat([Buffer.of(8), Buffer.alloc(8), Buffer.of(20), Buffer.alloc(20)])), "TLS_UNSUPPORTED_CERTIFICATE"],
    ["an unknown descriptor type", frame(7, key), "TLS_DECODE"],
    ["a key ID of 7 bytes", frame(2, Buffer.concat([Buffer.of(7), Buffer.alloc(7), u24(key.length), key])), "TLS_DECODE"],
    ["a key length past the end", frame(2, Buffer.concat([Buffer.of(8), Buffer.alloc(8), u24(key.length + 1), key])), "TLS_DECODE"],
    ["an outer length that is neither form", frame(2, Buffer.concat([Buffer.of(8), Buffer.alloc(8), u24(key.length), key]), 5), "TLS_DECODE"],
    ["an empty bare key (type 1)", frame(1, u24(0)), "TLS_BAD_CERTIFICATE"],
  ];
  for (const [name, body, code] of table) {
    test(name, () => assert.throws(() => parseOpenPgpCertificateMessage(body), { code }));
  }

  test("both outer lengths are taken: RFC 6091's and GnuTLS 3.5's (the key's + 6)", () => {
    const gnutls = encodeOpenPgpCertificateMessage(Buffer.alloc(8, 1), key);
    assert.ok(parseOpenPgpCertificateMessage(gnutls).key.equals(key));
    const rfc = frame(2, Buffer.concat([Buffer.of(8), Buffer.alloc(8, 1), u24(key.length), key]));
    assert.ok(parseOpenPgpCertificateMessage(rfc).keyId!.equals(Buffer.alloc(8, 1)));
    assert.equal(parseOpenPgpCertificateMessage(frame(1, Buffer.concat([u24(key.length), key]))).keyId, null);
  });
});

describe("OpenPGP.js is loaded by the first legacy certificate, not before", () => {
  /** Bare module names reached by static imports from `entry` (compiled JS), following relative ones. */
  function staticPackages(entry: string): Set<string> {
    const seen = new Set<string>();
    const packages = new Set<string>();
    const walk = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const source = readFileSync(file, "utf8");
      for (const m of source.matchAll(/^(?:import|export)\s(?:[^;"]*?\sfrom\s+)?"([^"]+)";/gm)) {
        const spec = m[1]!;
        if (spec.startsWith(".")) walk(resolve(dirname(file), spec));
        else if (!spec.startsWith("node:")) packages.add(spec);
      }
    };
    walk(fileURLToPath(new URL(entry, import.meta.url)));
    assert.ok(seen.size > 10, `${entry}: ${seen.size} modules (the walk found the imports)`);
    return packages;
  }

  test("neither the server (main.ts) nor the handshake worker imports it statically", () => {
    const server = staticPackages("../src/main/main.js");
    assert.ok(server.has("commander"), "the walk sees the server's packages");
    assert.ok(!server.has("openpgp"));
    assert.ok(!staticPackages("../src/workers/handshake.js").has("openpgp"));
  });

  test("the certificate check imports it dynamically", () => {
    const source = readFileSync(fileURLToPath(new URL("../src/tls/tls12/openpgp-cert.js", import.meta.url)), "utf8");
    assert.match(source, /import\("openpgp"\)/);
    assert.doesNotMatch(source, /^import[^;]*from "openpgp";/m);
  });
});

describe("OpenPGP.js that cannot be loaded", () => {
  // A module hook that refuses to resolve "openpgp" the first time only, as
  // an installation unreadable after the privilege drop would; in a child
  // process, so that this process's own OpenPGP.js stays loaded.
  const hook = [
    "let refused = 0;",
    "export async function resolve(specifier, context, next) {",
    "  if (specifier === 'openpgp' && refused++ === 0) throw new Error('EACCES: permission denied');",
    "  return next(specifier, context);",
    "}",
  ].join("\n");
  const child = (keyHex: string): string => [
    "import { register } from 'node:module';",
    `register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`,
    `const { checkTransferableKey } = await import(${JSON.stringify(new URL("../src/tls/tls12/openpgp-cert.js", import.meta.url).href)});`,
    `const key = Buffer.from('${keyHex}', 'hex');`,
    "const outcome = async () => { try { return (await checkTransferableKey(key)).fingerprint; } catch (e) { return `${e.code}: ${e.message}`; } };",
    "console.log(JSON.stringify([await outcome(), await outcome()]));",
  ].join("\n");

  test("refuses the certificate as an internal error, says so without the loader's words, and tries again at the next one", async () => {
    const { execFileSync } = await import("node:child_process");
    const identity = await recordedIdentity();
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", child(Buffer.from(identity.publicKey).toString("hex"))], { encoding: "utf8" });
    const [first, second] = JSON.parse(out) as [string, string];
    assert.equal(first, "TLS_INTERNAL: OpenPGP.js could not be loaded");
    assert.ok(!first.includes("EACCES"), "the loader's error is not repeated");
    assert.equal(second, identity.fingerprint, "the next certificate loads OpenPGP.js and is checked");
  });
});
