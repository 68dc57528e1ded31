// Our TLS client role against our TLS server role, in process: every cipher
// suite and key type, HelloRetryRequest, fragmentation, post-handshake
// messages, and a table of broken or hostile server behaviour, each of which
// must end in the right alert and an error event, never an exception.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { TlsClient, TlsServer, generateEphemeralKeyShares, keyId, parsePriority, runLoopback } from "../src/tls/index.js";
import { MAX_HANDSHAKE_BUFFER_BYTES } from "../src/tls/limits.js";
import { errorOf, makeKey, runPair, type KeyKind } from "./helpers/tls-pair.js";

const SECRET = Buffer.from("a secret of several words");

function assertDelivered(r: ReturnType<typeof runPair>, spki: Buffer): void {
  assert.equal(errorOf(r.clientEvents), null, JSON.stringify(errorOf(r.clientEvents)));
  assert.equal(errorOf(r.serverEvents), null, JSON.stringify(errorOf(r.serverEvents)));
  const done = r.clientEvents.find((e) => e.type === "handshake-complete");
  assert.ok(done && done.type === "handshake-complete");
  assert.equal(done.keyId, createHash("sha256").update(spki).digest("hex").toUpperCase());
  assert.deepEqual(done.peerPublicKey, spki);
  const data = Buffer.concat(r.serverEvents.flatMap((e) => (e.type === "data" ? [e.data] : [])));
  assert.deepEqual(data, SECRET);
}

for (const suite of ["AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305"]) {
  for (const kind of ["ed25519", "ed448", "p256", "p384", "p521", "rsa"] as KeyKind[]) {
    test(`handshake with ${suite} and a ${kind} key`, () => {
      const key = makeKey(kind);
      const priority = `NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+${suite}:+GROUP-ALL:+SIGN-ALL`;
      const r = runPair({ clientPriority: priority, key, message: SECRET });
      assertDelivered(r, key.publicKeySpki);
    });
  }
}

for (const group of ["X25519", "SECP256R1", "X448", "SECP384R1"]) {
  test(`key agreement over ${group}`, () => {
    const key = makeKey("ed25519");
    const priority = `NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+AES-128-GCM:+GROUP-${group}:+SIGN-ALL`;
    const r = runPair({ clientPriority: priority, key, message: SECRET });
    assertDelivered(r, key.publicKeySpki);
  });
}

test("the default priority offers X25519 first with its share alone", () => {
  const s = parsePriority("SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:!RSA:!VERS-ALL:+VERS-TLS1.3:%PROFILE_ULTRA");
  assert.deepEqual(s.keyShareGroups, ["x25519"]);
});

test("a HelloRetryRequest for a group we sent no share for is answered", () => {
  const key = makeKey("ed25519");
  const r = runPair({
    clientPriority: "NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+AES-128-GCM:+GROUP-X25519:+GROUP-SECP384R1:+SIGN-ALL",
    serverPriority: "NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+AES-128-GCM:+GROUP-SECP384R1:+SIGN-ALL",
    key,
    message: SECRET,
  });
  assertDelivered(r, key.publicKeySpki);
  const done = r.clientEvents.find((e) => e.type === "handshake-complete");
  assert.equal(done?.type === "handshake-complete" && done.group, "secp384r1");
});

test("a second ClientHello echoing a cookie over 2^14 bytes goes in records of at most 2^14", () => {
  // A hostile peer's HelloRetryRequest with a 20,000-byte cookie (in two
  // records, as it must): our echo of it must keep to RFC 8446 §5.1 too.
  const cookie = randomBytes(20_000);
  // `flight`: the HelloRetryRequest's record, and what follows it (a change_cipher_spec).
  const withCookie = (flight: Buffer): Buffer => {
    const message = flight.subarray(5, 5 + flight.readUInt16BE(3));
    const body = message.subarray(4);
    const sessionIdLength = body[34]!;
    const extensionsAt = 35 + sessionIdLength + 3;
    const extensions = body.subarray(extensionsAt + 2);
    const cookieExtension = Buffer.alloc(6 + cookie.length);
    cookieExtension.writeUInt16BE(44, 0);
    cookieExtension.writeUInt16BE(2 + cookie.length, 2);
    cookieExtension.writeUInt16BE(cookie.length, 4);
    cookie.copy(cookieExtension, 6);
    const allExtensions = Buffer.concat([extensions, cookieExtension]);
    const newBody = Buffer.concat([body.subarray(0, extensionsAt), Buffer.from([allExtensions.length >> 8, allExtensions.length & 0xff]), allExtensions]);
    const newMessage = Buffer.concat([Buffer.from([message[0]!, newBody.length >> 16, (newBody.length >> 8) & 0xff, newBody.length & 0xff]), newBody]);
    const records: Buffer[] = [];
    for (let at = 0; at < newMessage.length; at += 1 << 14) {
      const part = newMessage.subarray(at, at + (1 << 14));
      records.push(Buffer.from([0x16, 0x03, 0x03, part.length >> 8, part.length & 0xff]), part);
    }
    return Buffer.concat([...records, flight.subarray(5 + message.length)]);
  };
  const settings = parsePriority("NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+AES-128-GCM:+GROUP-X25519:+GROUP-SECP384R1:+SIGN-ALL");
  const client = new TlsClient(settings, generateEphemeralKeyShares(settings.keyShareGroups));
  const key = makeKey("ed25519");
  const server = new TlsServer(parsePriority("NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+AES-128-GCM:+GROUP-SECP384R1:+SIGN-ALL"), key);
  const fromClient: Buffer[] = [];
  let fromServer = 0;
  client.start();
  runLoopback(
    { engine: client, event: () => {}, deliver: (bytes, to) => (fromClient.push(bytes), to.receive(bytes)) },
    { engine: server, event: () => {}, deliver: (bytes, to) => to.receive(fromServer++ === 0 ? withCookie(bytes) : bytes) },
  );
  // The client's records after its first ClientHello: each within 2^14, and together a ClientHello that carries the cookie.
  const sent = Buffer.concat(fromClient.slice(1));
  const handshake: Buffer[] = [];
  for (let at = 0; at < sent.length;) {
    const length = sent.readUInt16BE(at + 3);
    assert.ok(length <= 1 << 14, `a record of ${length} bytes`);
    if (sent[at] === 0x16) handshake.push(sent.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  const hello = Buffer.concat(handshake);
  assert.equal(hello[0], 1);
  assert.equal(hello.readUIntBE(1, 3), hello.length - 4);
  assert.ok(hello.includes(cookie), "the cookie echoed whole");
});

test("bytes delivered one at a time, and a flight split over many records", () => {
  const key = makeKey("p256");
  const r = runPair({ key, message: SECRET, chunk: 1, faults: { fragment: 7 } });
  assertDelivered(r, key.publicKeySpki);
});

test("NewSessionTicket is ignored and KeyUpdate honoured after the handshake", () => {
  const key = makeKey("ed25519");
  const r = runPair({
    key,
    message: SECRET,
    onServerConnected: (server) => {
      server.sendTicket();
      server.keyUpdate(true);
      server.send(Buffer.from("after the update"));
    },
  });
  assertDelivered(r, key.publicKeySpki);
  const got = Buffer.concat(r.clientEvents.flatMap((e) => (e.type === "data" ? [e.data] : [])));
  assert.equal(got.toString(), "after the update");
  // The client answered update_requested; the server's read keys moved with it.
  r.client.send(Buffer.from("more"));
  const out = r.client.takeOutput();
  assert.ok(out);
  r.server.receive(out);
  const more = [];
  for (let e = r.server.nextEvent(); e; e = r.server.nextEvent()) more.push(e);
  assert.deepEqual(more.map((e) => (e.type === "data" ? e.data.toString() : e.type)), ["more"]);
});

test("close_notify from the peer is a closed event", () => {
  const key = makeKey("ed25519");
  const r = runPair({ key, onServerConnected: (server) => server.close() });
  assert.ok(r.clientEvents.some((e) => e.type === "closed"));
});

// ------------------------------------------------------------ negatives

/** The alert the server saw us send, if it failed on one. */
function alertSeen(r: ReturnType<typeof runPair>): number | null {
  const e = r.serverEvents.find((x) => x.type === "error");
  return e && e.type === "error" && e.error.code === "TLS_PEER_ALERT" ? e.error.peerAlert : null;
}

const negatives: Array<{ name: string; options: Parameters<typeof runPair>[0]; code: string; alert: number }> = [
  { name: "a signature that does not verify", options: { faults: { badSignature: true } }, code: "TLS_DECRYPT_ERROR", alert: 51 },
  { name: "a wrong Finished MAC", options: { faults: { badFinished: true } }, code: "TLS_DECRYPT_ERROR", alert: 51 },
  {
    name: "a presented key that is not the signing key",
    options: { faults: { presentKey: makeKey("ed25519").publicKeySpki } },
    code: "TLS_DECRYPT_ERROR",
    alert: 51,
  },
  {
    name: "a key of the wrong type for the signature scheme",
    options: { faults: { presentKey: makeKey("p256").publicKeySpki } },
    code: "TLS_ILLEGAL_PARAMETER",
    alert: 47,
  },
  {
    name: "a presented key that is not a SubjectPublicKeyInfo",
    options: { faults: { presentKey: randomBytes(44) } },
    code: "TLS_BAD_CERTIFICATE",
    alert: 42,
  },
  { name: "Certificate before EncryptedExtensions", options: { faults: { outOfOrder: true } }, code: "TLS_UNEXPECTED_MESSAGE", alert: 10 },
  { name: "no raw public key agreed", options: { faults: { noRawKey: true } }, code: "TLS_UNSUPPORTED_CERTIFICATE", alert: 43 },
  {
    name: "a signature scheme we did not offer",
    options: {
      clientPriority: "NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+AES-128-GCM:+GROUP-ALL:+SIGN-EDDSA-ED25519:+SIGN-RSA-PSS-RSAE-SHA256",
      key: makeKey("rsa"),
      faults: { scheme: "rsa_pss_rsae_sha512" },
    },
    code: "TLS_ILLEGAL_PARAMETER",
    alert: 47,
  },
];

for (const n of negatives) {
  test(`negative: ${n.name} ends with alert ${n.alert}`, () => {
    const r = runPair({ ...n.options, message: SECRET });
    assert.deepEqual(errorOf(r.clientEvents), { code: n.code, alert: n.alert });
    assert.ok(!r.clientEvents.some((e) => e.type === "handshake-complete"));
    assert.equal(alertSeen(r), n.alert);
    assert.ok(!r.serverEvents.some((e) => e.type === "data"), "no application data may flow");
  });
}

/** Record boundaries in a chunk of server output. */
function records(bytes: Buffer): Array<{ type: number; start: number; end: number }> {
  const out = [];
  for (let i = 0; i + 5 <= bytes.length; ) {
    const end = i + 5 + bytes.readUInt16BE(i + 3);
    out.push({ type: bytes[i]!, start: i, end });
    i = end;
  }
  return out;
}

test("negative: a flipped bit in any record of the server's flight ends the handshake", () => {
  const clean = runPair({ message: SECRET });
  const flight = clean.serverBytes[0]!;
  const recs = records(flight);
  assert.ok(recs.length >= 2);
  for (const rec of recs) {
    for (const at of [rec.start + 5, rec.end - 1]) {
      const r = runPair({
        message: SECRET,
        tamper: (i, bytes) => {
          if (i !== 0) return bytes;
          const copy = Buffer.from(bytes);
          copy[at]! ^= 0x01;
          return copy;
        },
      });
      const err = errorOf(r.clientEvents);
      assert.ok(err, `record type ${rec.type} byte ${at}: no error`);
      assert.ok(!r.clientEvents.some((e) => e.type === "handshake-complete"), `record type ${rec.type} byte ${at}`);
      if (rec.type === 23) assert.deepEqual(err, { code: "TLS_BAD_RECORD_MAC", alert: 20 });
    }
  }
});

test("negative: an oversized record is record_overflow", () => {
  const r = runPair({
    tamper: (i, bytes) => (i === 0 ? Buffer.from([0x16, 0x03, 0x03, 0x41, 0x01]) : bytes),
  });
  assert.deepEqual(errorOf(r.clientEvents), { code: "TLS_RECORD_OVERFLOW", alert: 22 });
});

test("negative: a plaintext record over 2^14 bytes is record_overflow", () => {
  const r = runPair({ tamper: (i, bytes) => (i === 0 ? Buffer.from([0x16, 0x03, 0x03, 0x40, 0x01]) : bytes) });
  assert.deepEqual(errorOf(r.clientEvents), { code: "TLS_RECORD_OVERFLOW", alert: 22 });
});

test("negative: an unknown record type is unexpected_message", () => {
  const r = runPair({ tamper: (i, bytes) => (i === 0 ? Buffer.from([0x63, 0x03, 0x03, 0x00, 0x01, 0x00]) : bytes) });
  assert.deepEqual(errorOf(r.clientEvents), { code: "TLS_UNEXPECTED_MESSAGE", alert: 10 });
});

test("negative: application data before ServerHello is unexpected_message", () => {
  const r = runPair({ tamper: (i, bytes) => (i === 0 ? Buffer.from([0x17, 0x03, 0x03, 0x00, 0x01, 0x00]) : bytes) });
  assert.deepEqual(errorOf(r.clientEvents), { code: "TLS_UNEXPECTED_MESSAGE", alert: 10 });
});

/** `n` change_cipher_spec records: dropped one by one during a handshake, so only a byte bound stops them. */
function ccsRecords(n: number): Buffer {
  return Buffer.concat(Array.from({ length: n }, () => Buffer.from([0x14, 0x03, 0x03, 0x00, 0x01, 0x01])));
}

test("negative: a server flight padded past MAX_HANDSHAKE_BUFFER_BYTES is decode_error", () => {
  const flight = runPair().serverBytes[0]!;
  // Up to the limit the padding is harmless, so the bound is what fails the longer one.
  const room = Math.floor((MAX_HANDSHAKE_BUFFER_BYTES - flight.length) / 6);
  const fits = runPair({ message: SECRET, tamper: (i, bytes) => (i === 0 ? Buffer.concat([ccsRecords(room), bytes]) : bytes) });
  assert.equal(errorOf(fits.clientEvents), null);
  assert.ok(fits.clientEvents.some((e) => e.type === "handshake-complete"));
  const over = runPair({ message: SECRET, tamper: (i, bytes) => (i === 0 ? Buffer.concat([ccsRecords(room + 1), bytes]) : bytes) });
  assert.deepEqual(errorOf(over.clientEvents), { code: "TLS_DECODE", alert: 50 });
  assert.ok(!over.clientEvents.some((e) => e.type === "handshake-complete"));
  assert.equal(alertSeen(over), 50);
});

test("negative: a ClientHello stream past MAX_HANDSHAKE_BUFFER_BYTES is decode_error, in the server role too", () => {
  const server = new TlsServer(parsePriority("SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3"), makeKey("ed25519"));
  const n = Math.floor(MAX_HANDSHAKE_BUFFER_BYTES / 6);
  server.receive(ccsRecords(n));
  assert.equal(server.nextEvent(), null);
  server.receive(ccsRecords(1));
  const e = server.nextEvent();
  assert.ok(e?.type === "error" && e.error.code === "TLS_DECODE");
  assert.deepEqual(server.takeOutput(), Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50]));
});

test("negative: a truncated flight leaves the handshake waiting, not complete", () => {
  const r = runPair({ tamper: (i, bytes) => (i === 0 ? bytes.subarray(0, bytes.length - 3) : bytes) });
  assert.equal(errorOf(r.clientEvents), null);
  assert.ok(!r.clientEvents.some((e) => e.type === "handshake-complete"));
  assert.equal(r.client.state, "ExpectServerFlight");
});

test("after a failure the engine ignores input and sends nothing more", () => {
  const r = runPair({ faults: { badFinished: true } });
  assert.equal(r.client.state, "Failed");
  r.client.receive(r.serverBytes[0]!);
  r.client.send(Buffer.from("x"));
  assert.equal(r.client.takeOutput(), null);
  assert.equal(r.client.takeTask(), null);
});

test("random bytes never throw out of the client engine (bounded fuzz)", () => {
  const settings = parsePriority("SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3");
  for (let i = 0; i < 300; i++) {
    const client = new TlsClient(settings, generateEphemeralKeyShares(settings.keyShareGroups));
    client.start();
    client.takeOutput();
    const junk = randomBytes(5 + (i % 64));
    // Half the time, make it look like a handshake record to get deeper.
    if (i % 2 === 0) junk.set([0x16, 0x03, 0x03, 0x00, Math.max(0, junk.length - 5)], 0);
    assert.doesNotThrow(() => client.receive(junk));
  }
});

test("keyId is SHA-256 of the SPKI DER in uppercase hex", () => {
  const spki = makeKey("ed25519").publicKeySpki;
  assert.equal(keyId(spki), createHash("sha256").update(spki).digest("hex").toUpperCase());
  assert.match(keyId(spki), /^[0-9A-F]{64}$/);
});
