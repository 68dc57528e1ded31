// Our client role (the Mandos server) against our TLS 1.2 OpenPGP server
// role (a simulated legacy mandos-client): every suite and key we accept
// completes, with the certificate's fingerprint in the event and the
// secret through; and a table of hostile or broken legacy peers, each
// ending in the alert docs/PROTOCOL.md names for it.

import assert from "node:assert/strict";
import { getDiffieHellman } from "node:crypto";
import { before, describe, test } from "node:test";
import { DEFAULT_PRIORITY, REFERENCE_OPENPGP_PRIORITY, REFERENCE_RPK_PRIORITY, type TlsEvent } from "../src/tls/index.js";
import type { Tls12ServerFaults, Tls12ServerOptions } from "../src/tls/tls12/server12.js";
import { freshIdentity, recordedIdentity, type TestOpenPgpIdentity } from "./helpers/legacy-keys.js";
import { runLegacyPair } from "./helpers/tls12-pair.js";
import { OWN_4096, OWN_SAFE_2048 } from "./helpers/dh-groups.js";

const modp14 = getDiffieHellman("modp14");
const DH = { prime: modp14.getPrime(), generator: modp14.getGenerator() };

let recorded: TestOpenPgpIdentity;
let rsa2048: TestOpenPgpIdentity;
let rsa3072: TestOpenPgpIdentity;
before(async () => {
  recorded = await recordedIdentity();
  rsa2048 = await freshIdentity(2048);
  rsa3072 = await freshIdentity(3072);
});

function complete(events: TlsEvent[]): Extract<TlsEvent, { type: "handshake-complete" }> {
  const done = events.find((e) => e.type === "handshake-complete");
  const error = events.find((e) => e.type === "error");
  assert.ok(done, `no handshake: ${error?.type === "error" ? `${error.error.code} ${error.error.message}` : "nothing"}`);
  return done as Extract<TlsEvent, { type: "handshake-complete" }>;
}

describe("TLS 1.2 with OpenPGP: our client role against our legacy server role", () => {
  const cases: Array<[string, () => TestOpenPgpIdentity, Tls12ServerOptions, string, string]> = [
    ["recorded RSA-4096 key, ECDHE secp384r1, AES-256-GCM", () => recorded, {}, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "secp384r1"],
    ["secp521r1", () => recorded, { curve: 0x19 }, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "secp521r1"],
    ["ChaCha20-Poly1305", () => rsa2048, { preferChaCha: true }, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "secp384r1"],
    ["DHE in a named group (RFC 3526 MODP 2048), AES-256-GCM", () => rsa3072, { dhParams: DH }, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "ffdhe-2048"],
    ["DHE, ChaCha20-Poly1305", () => rsa2048, { dhParams: DH, preferChaCha: true }, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ffdhe-2048"],
    ["DHE in the client's own safe 2048-bit group", () => rsa2048, { dhParams: OWN_SAFE_2048 }, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "ffdhe-2048"],
    ["DHE in the client's own 4096-bit group, its prime not a safe one", () => rsa2048, { dhParams: OWN_4096 }, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "ffdhe-4096"],
    ["RSA-SHA512 signature", () => rsa3072, { faults: { signatureScheme: 0x0601 } }, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "secp384r1"],
    ["no extended master secret", () => rsa2048, { faults: { noExtendedMasterSecret: true } }, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "secp384r1"],
  ];
  for (const [name, identity, options, suite, group] of cases) {
    test(name, async () => {
      const id = identity();
      const r = await runLegacyPair(id, options);
      const done = complete(r.clientEvents);
      assert.equal(done.version, "TLS1.2");
      assert.equal(done.fingerprint, id.fingerprint);
      assert.equal(done.keyId, "");
      assert.equal(done.cipherSuite, suite);
      assert.equal(done.group, group);
      assert.equal(r.received.toString(), "the secret");
      assert.ok(r.serverEvents.some((e) => e.type === "closed"), "our close_notify arrived");
      assert.ok(r.clientEvents.some((e) => e.type === "closed"), "theirs came back");
    });
  }

  test("the reference's legacy priority string (TLS 1.2 only) works, byte by byte too", async () => {
    const r = await runLegacyPair(recorded, { clientPriority: REFERENCE_OPENPGP_PRIORITY, chunk: 1 });
    assert.equal(complete(r.clientEvents).fingerprint, "9A2BE96516F47F33630C4AF4C28E2CE128594F14");
    assert.equal(r.received.toString(), "the secret");
  });

  test("a 16 KiB secret crosses in two records", async () => {
    const secret = Buffer.alloc(20000, 7);
    const r = await runLegacyPair(rsa2048, { secret });
    assert.ok(r.received.equals(secret));
  });

  test("the default priority serves legacy peers; the reference's RPK string does not", async () => {
    assert.ok((await runLegacyPair(rsa2048, { clientPriority: DEFAULT_PRIORITY })).clientEvents.some((e) => e.type === "handshake-complete"));
    const r = await runLegacyPair(rsa2048, { clientPriority: REFERENCE_RPK_PRIORITY });
    const err = r.clientEvents.find((e) => e.type === "error");
    assert.ok(err?.type === "error");
    // The legacy server finds no cert_type offering OpenPGP and says so.
    assert.equal(err.error.code, "TLS_PEER_ALERT");
    assert.equal(err.error.peerAlert, 43);
  });
});

describe("TLS 1.2 with OpenPGP: broken and hostile legacy peers", () => {
  const other = () => rsa2048;
  const table: Array<[string, () => Tls12ServerFaults, string, number]> = [
    ["tampered ServerKeyExchange signature", () => ({ tamperSignature: true }), "TLS_DECRYPT_ERROR", 51],
    ["a key ID that is not the key's (a wrong fingerprint)", () => ({ certificateBody: certificateWith(recorded, other().keyId) }), "TLS_BAD_CERTIFICATE", 42],
    ["a key signed by another key (signature does not fit the certificate)", () => ({ certificateBody: certificateWith(other(), other().keyId) }), "TLS_DECRYPT_ERROR", 51],
    ["a certificate whose self-signature fails", () => ({ certificateBody: certificateWith(recorded, recorded.keyId, bendUserId) }), "TLS_BAD_CERTIFICATE", 42],
    ["X.509 in TLS 1.2 (cert_type X.509)", () => ({ certType: 0 }), "TLS_UNSUPPORTED_CERTIFICATE", 43],
    ["missing cert_type (X.509 implied)", () => ({ certType: null }), "TLS_UNSUPPORTED_CERTIFICATE", 43],
    ["a raw public key in TLS 1.2", () => ({ rawKeyExtension: true }), "TLS_UNSUPPORTED_CERTIFICATE", 43],
    ["weak suite: ECDHE_RSA AES-128-GCM", () => ({ suite: 0xc02f }), "TLS_ILLEGAL_PARAMETER", 47],
    ["weak suite: ECDHE_RSA AES-256-CBC-SHA384", () => ({ suite: 0xc028 }), "TLS_ILLEGAL_PARAMETER", 47],
    ["weak suite: RSA key transport", () => ({ suite: 0x009d }), "TLS_ILLEGAL_PARAMETER", 47],
    ["RSA-SHA256 signature (not offered for TLS 1.2)", () => ({ signatureScheme: 0x0401 }), "TLS_ILLEGAL_PARAMETER", 47],
    ["TLS 1.1", () => ({ version: 0x0302 }), "TLS_PROTOCOL_VERSION", 70],
    ["a TLS 1.3 downgrade sentinel", () => ({ downgradeSentinel: true }), "TLS_ILLEGAL_PARAMETER", 47],
    ["renegotiation_info that is not empty", () => ({ renegotiationInfo: true }), "TLS_HANDSHAKE_FAILURE", 40],
    ["a HelloRequest in the flight (renegotiation)", () => ({ helloRequestInFlight: true }), "TLS_UNEXPECTED_MESSAGE", 10],
    ["a CertificateRequest", () => ({ certificateRequest: true }), "TLS_UNEXPECTED_MESSAGE", 10],
    ["a wrong server Finished", () => ({ badFinished: true }), "TLS_DECRYPT_ERROR", 51],
  ];
  for (const [name, faults, code, alert] of table) {
    test(name, async () => {
      const r = await runLegacyPair(recorded, { faults: faults() });
      assertRefused(r.clientEvents, r.serverEvents, code, alert);
      assert.equal(r.received.length, 0, "no secret crossed");
    });
  }

  for (const [name, curve] of [["P-256 only", 0x17], ["x25519", 0x1d]] as const) {
    test(`ECDHE on ${name}`, async () => {
      const r = await runLegacyPair(recorded, { curve });
      assertRefused(r.clientEvents, r.serverEvents, "TLS_ILLEGAL_PARAMETER", 47);
    });
  }

  test("a DH prime under 2048 bits is insufficient_security", async () => {
    const small = getDiffieHellman("modp2");
    const r = await runLegacyPair(rsa2048, { dhParams: { prime: small.getPrime(), generator: small.getGenerator() } });
    assertRefused(r.clientEvents, r.serverEvents, "TLS_INSUFFICIENT_SECURITY", 71);
  });

  test("a HelloRequest after the handshake (renegotiation) ends the connection with no_renegotiation", async () => {
    const r = await runLegacyPair(recorded, { faults: { helloRequestAfterHandshake: true } });
    const err = r.clientEvents.find((e) => e.type === "error");
    assert.ok(err?.type === "error");
    assert.equal(err.error.alert, 100);
  });
});

/** `serverEvents` empty: the peer's side is not checked. */
function assertRefused(clientEvents: TlsEvent[], serverEvents: TlsEvent[], code: string, alert: number): void {
  assert.ok(!clientEvents.some((e) => e.type === "handshake-complete"), "handshake must not complete");
  const err = clientEvents.find((e) => e.type === "error");
  assert.ok(err?.type === "error", "an error event");
  assert.equal(err.error.code, code, err.error.message);
  assert.equal(err.error.alert, alert);
  if (serverEvents.length === 0) return;
  // The alert reached the peer and it read the same description.
  const peer = serverEvents.find((e) => e.type === "error");
  assert.ok(peer?.type === "error", "the peer saw our alert");
  assert.equal(peer.error.peerAlert, alert);
}

import { encodeOpenPgpCertificateMessage } from "../src/tls/tls12/messages12.js";

function certificateWith(id: TestOpenPgpIdentity, keyId: Uint8Array, bend?: (key: Buffer) => Buffer): Buffer {
  const key = Buffer.from(id.publicKey);
  return encodeOpenPgpCertificateMessage(keyId, bend ? bend(key) : key);
}

/** One byte of the user ID changed: its certification no longer verifies. */
function bendUserId(key: Buffer): Buffer {
  const at = key.indexOf(Buffer.from("legacy-test"));
  assert.ok(at > 0);
  key[at]! ^= 0x20;
  return key;
}

describe("one ClientHello for both generations", () => {
  test("our default offers TLS 1.3 with a raw key and TLS 1.2 with OpenPGP", async () => {
    const { parseClientHello } = await import("../src/tls/messages.js");
    const { TlsClient, generateEphemeralKeyShares, parsePriority } = await import("../src/tls/index.js");
    const hello = (priority: string) => {
      const settings = parsePriority(priority);
      const c = new TlsClient(settings, generateEphemeralKeyShares(settings.keyShareGroups));
      c.start();
      const rec = c.takeOutput()!;
      return parseClientHello(rec.subarray(9));
    };
    const both = hello(DEFAULT_PRIORITY);
    assert.deepEqual(both.supportedVersions, [0x0304, 0x0303]);
    assert.deepEqual(both.cipherSuites, [0x1302, 0x1303, 0x1301, 0x1304, 0xc030, 0xcca8, 0x009f, 0xccaa]);
    assert.equal(both.extensions.get(9)?.toString("hex"), "0101");
    assert.equal(both.extensions.get(23)?.length, 0);
    assert.equal(both.extensions.get(0xff01)?.toString("hex"), "00");
    assert.deepEqual(both.serverCertTypes, [2]);
    assert.deepEqual(both.shares.map((s) => s.group), [0x001d]);
    assert.ok(both.groups.includes(0x0018) && both.groups.includes(0x0019));
    assert.ok(both.signatureSchemes.includes(0x0501) && both.signatureSchemes.includes(0x0601));
    // No renegotiation SCSV, no CBC, no RSA key transport, no session ticket.
    assert.ok(!both.cipherSuites.some((c) => c === 0x00ff || c === 0xc028 || c === 0x009d));
    assert.ok(!both.extensions.has(35));
    const legacyOnly = hello(REFERENCE_OPENPGP_PRIORITY);
    assert.deepEqual(legacyOnly.supportedVersions, []);
    assert.deepEqual(legacyOnly.cipherSuites, [0xc030, 0xcca8, 0x009f, 0xccaa]);
    assert.equal(legacyOnly.extensions.has(51), false);
    assert.equal(legacyOnly.serverCertTypes, null);
    const modernOnly = hello(REFERENCE_RPK_PRIORITY);
    assert.deepEqual(modernOnly.supportedVersions, [0x0304]);
    assert.equal(modernOnly.extensions.has(9), false);
  });
});

describe("the modern path with the combined ClientHello", () => {
  test("our TLS 1.3 server role still completes TLS 1.3 with a raw key, no HelloRetryRequest", async () => {
    const { runPair } = await import("./helpers/tls-pair.js");
    const r = runPair({ clientPriority: DEFAULT_PRIORITY, serverPriority: REFERENCE_RPK_PRIORITY, message: Buffer.from("hi") });
    const done = complete(r.clientEvents);
    assert.equal(done.version, undefined);
    assert.equal(done.group, "x25519");
    assert.notEqual(done.keyId, "");
  });

  test("a legacy-only client priority against a TLS 1.3-only server: no common version", async () => {
    const { runPair, errorOf } = await import("./helpers/tls-pair.js");
    const r = runPair({ clientPriority: REFERENCE_OPENPGP_PRIORITY, serverPriority: REFERENCE_RPK_PRIORITY });
    assert.ok(!r.clientEvents.some((e) => e.type === "handshake-complete"));
    assert.equal(errorOf(r.serverEvents)?.alert, 70);
  });
});

describe("the TLS 1.2 flight task on a worker thread", () => {
  test("a legacy handshake whose flight task runs on the Piscina pool completes, fingerprint intact", { timeout: 30_000 }, async () => {
    const { createHandshakeRunner } = await import("../src/main/serve/handshake-runner.js");
    const { EngineDriver, TlsClient, generateEphemeralKeyShares, parsePriority } = await import("../src/tls/index.js");
    const { Tls12Server } = await import("../src/tls/tls12/server12.js");
    const settings = parsePriority(DEFAULT_PRIORITY);
    const runner = createHandshakeRunner(1, settings);
    try {
      const client = new TlsClient(settings, generateEphemeralKeyShares(settings.keyShareGroups));
      const server = new Tls12Server(recorded);
      const events: TlsEvent[] = [];
      const kinds: string[] = [];
      let settle: () => void = () => undefined;
      const quiet = new Promise<void>((resolve) => (settle = resolve));
      const serverDriver = new EngineDriver(server, { write: (b) => setImmediate(() => clientDriver.receive(b)), event: () => undefined });
      const clientDriver: InstanceType<typeof EngineDriver> = new EngineDriver(
        client,
        { write: (b) => setImmediate(() => serverDriver.receive(b)), event: (e) => (events.push(e), settle()) },
        (task) => (kinds.push(task.kind), runner.run(task)),
      );
      client.start();
      clientDriver.pump();
      await quiet;
      assert.deepEqual(kinds, ["tls12-flight"]);
      const done = complete(events);
      assert.equal(done.fingerprint, recorded.fingerprint);
    } finally {
      await runner.close();
    }
  });
});

describe("OpenPGP identities made with node:crypto (the benchmark's legacy fleet)", () => {
  test("one RSA key, two creation times: two valid keys, two fingerprints, as OpenPGP.js reads them", async () => {
    const { openPgpIdentityFromRsa } = await import("../src/client/openpgp-identity.js");
    const { checkTransferableKey } = await import("../src/tls/tls12/openpgp-cert.js");
    const openpgp = await import("openpgp");
    const a = openPgpIdentityFromRsa(rsa2048.privateKey, "machine0", 1_700_000_000);
    const b = openPgpIdentityFromRsa(rsa2048.privateKey, "machine1", 1_700_000_001);
    assert.notEqual(a.fingerprint, b.fingerprint);
    for (const id of [a, b]) {
      assert.equal((await checkTransferableKey(id.publicKey)).fingerprint, id.fingerprint);
      const oracle = await openpgp.readKey({ binaryKey: id.publicKey });
      assert.equal(oracle.getFingerprint().toUpperCase(), id.fingerprint);
      await oracle.verifyPrimaryKey();
      assert.equal(complete((await runLegacyPair(id)).clientEvents).fingerprint, id.fingerprint);
    }
  });
});

describe("a bounded fuzz of the legacy server's flight", () => {
  test("400 mutations: never an exception, at most one error, a completion only with the right fingerprint and secret", async () => {
    let seed = 0x1234567;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let completed = 0;
    for (let i = 0; i < 400; i++) {
      const r = await runLegacyPair(rsa2048, {
        tamper: (index, bytes) => {
          if (index !== 0) return bytes;
          const b = Buffer.from(bytes);
          switch (rand(3)) {
            case 0:
              b[rand(b.length)]! ^= 1 << rand(8);
              return b;
            case 1:
              return b.subarray(0, rand(b.length));
            default: {
              const at = rand(b.length);
              return Buffer.concat([b.subarray(0, at), Buffer.of(rand(256)), b.subarray(at)]);
            }
          }
        },
      });
      const errors = r.clientEvents.filter((e) => e.type === "error");
      assert.ok(errors.length <= 1, "one error at most");
      const done = r.clientEvents.find((e) => e.type === "handshake-complete");
      if (done?.type === "handshake-complete") {
        completed++;
        assert.equal(done.fingerprint, rsa2048.fingerprint);
        assert.equal(r.received.toString(), "the secret");
      }
    }
    // Only a change the handshake does not cover (a plaintext record header's version byte) may still complete.
    assert.ok(completed < 40, `${completed} completed`);
  });
});

describe("the legacy flight is bounded like the TLS 1.3 one", () => {
  test("a flight in 32-byte records completes", async () => {
    const r = await runLegacyPair(recorded, { faults: { fragment: 32 }, chunk: 7 });
    assert.equal(complete(r.clientEvents).fingerprint, recorded.fingerprint);
  });

  test("more than MAX_FLIGHT_RECORDS records is decode_error", async () => {
    const { MAX_FLIGHT_RECORDS } = await import("../src/tls/limits.js");
    // The RSA-4096 flight is ~3 KiB: in 8-byte records, well over the bound.
    const r = await runLegacyPair(recorded, { faults: { fragment: 8 } });
    assert.ok(3000 / 8 > MAX_FLIGHT_RECORDS);
    assertRefused(r.clientEvents, r.serverEvents, "TLS_DECODE", 50);
  });
});

test("a protected alert after the server's change_cipher_spec is read as the peer's alert", async () => {
  const r = await runLegacyPair(recorded, { faults: { alertInsteadOfFinished: 40 } });
  assert.ok(!r.clientEvents.some((e) => e.type === "handshake-complete"));
  const err = r.clientEvents.find((e) => e.type === "error");
  assert.ok(err?.type === "error");
  assert.equal(err.error.code, "TLS_PEER_ALERT");
  assert.equal(err.error.peerAlert, 40);
});

describe("an unknown fingerprint is refused once the peer proved it holds the key", () => {
  test("with access_denied, before the rest of the key; without the proof, decrypt_error", async () => {
    const { buildKnownKeyTable } = await import("../src/tls/index.js");
    const table = buildKnownKeyTable([rsa2048.fingerprint, "A92F8287E8931EE2DC6DB17846E7B7E5443FAE6D1A44C171DB05512797BBABBC"]);
    const unknown = await runLegacyPair(recorded, { knownKeys: table });
    assertRefused(unknown.clientEvents, unknown.serverEvents, "TLS_UNKNOWN_PEER_KEY", 49);
    const err = unknown.clientEvents.find((e) => e.type === "error");
    assert.ok(err?.type === "error");
    assert.equal(err.error.keyId, recorded.fingerprint);
    // A tampered signature: the peer has not shown it holds the key, and is not "not found".
    assertRefused((await runLegacyPair(recorded, { knownKeys: table, faults: { tamperSignature: true } })).clientEvents, [], "TLS_DECRYPT_ERROR", 51);
    // A known one likewise, and completes when all holds.
    const known = buildKnownKeyTable([recorded.fingerprint]);
    assertRefused((await runLegacyPair(recorded, { knownKeys: known, faults: { tamperSignature: true } })).clientEvents, [], "TLS_DECRYPT_ERROR", 51);
    assert.equal(complete((await runLegacyPair(recorded, { knownKeys: known })).clientEvents).fingerprint, recorded.fingerprint);
  });
});
