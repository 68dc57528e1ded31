// Known answers from a real legacy Mandos session (project test data,
// test/data/legacy/: GnuTLS 3.5's mandos-client against the reference in
// its OpenPGP mode): the TLS 1.2 PRF with SHA-384 and the key block from
// the key log's master secret must decrypt the recorded Finished messages
// and the secret, the Finished values must be what our PRF computes over
// the recorded transcript, the OpenPGP certificate must check (through
// OpenPGP.js) and give the fingerprint, and the recorded ServerKeyExchange
// signature must verify with that certificate's primary key.

import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import * as openpgp from "openpgp";
import { parseClientHello } from "../src/tls/messages.js";
import { finished12, keyBlock12, open12, prf12 } from "../src/tls/tls12/crypto12.js";
import { checkTransferableKey } from "../src/tls/tls12/openpgp-cert.js";
import { tls12SuiteByCode } from "../src/tls/tls12/suites.js";
import { parseOpenPgpCertificateMessage, parseServerKeyExchange, serverKeyExchangeContent } from "../src/tls/tls12/messages12.js";
import { LEGACY_DATA, loadLegacySession, plainHandshakeMessages } from "./helpers/legacy-session.js";

const session = loadLegacySession();
const messages = plainHandshakeMessages(session.records);
const byType = (t: number) => messages.find((m) => m.type === t)!.raw;
const clientHello = byType(1);
const serverHello = byType(2);
const clientRandom = clientHello.subarray(6, 38);
const serverRandom = serverHello.subarray(6, 38);
const suite = tls12SuiteByCode(0xc030)!;
const FINGERPRINT = "9A2BE96516F47F33630C4AF4C28E2CE128594F14";

/** As the flight task does it: the RFC 6091 framing, then the key through OpenPGP.js. */
async function checkCertificate(body: Buffer) {
  const framed = parseOpenPgpCertificateMessage(body);
  return checkTransferableKey(framed.key, framed.keyId);
}

describe("TLS 1.2 known answers from the recorded legacy session", () => {
  test("the recording is what docs/PROTOCOL.md describes", () => {
    assert.equal(session.protocolLine.toString("latin1"), "1\r\n");
    assert.deepEqual(
      messages.map((m) => `${m.from}:${m.type}`),
      ["server:1", "client:2", "client:11", "client:12", "client:14", "server:16"],
    );
    assert.ok(clientRandom.equals(session.clientRandom), "the key log names this session's client random");
    assert.equal(serverHello.readUInt16BE(4 + 32 + 2 + 33), 0xc030);
  });

  test("the reference's legacy ClientHello offers no suite a DSA key could serve (docs/PROTOCOL.md, DSA keys)", () => {
    const hello = parseClientHello(clientHello.subarray(4));
    // ECDHE_ECDSA (an ECDSA key), ECDHE_RSA and DHE_RSA (an RSA key): no DHE_DSS.
    const ecdheEcdsa = [0xc02c, 0xc087, 0xcca9, 0xc0ad];
    const ecdheRsa = [0xc030, 0xc08b, 0xcca8];
    const dheRsa = [0x009f, 0xc07d, 0xccaa, 0xc09f];
    assert.deepEqual(hello.cipherSuites, [...ecdheEcdsa, ...ecdheRsa, ...dheRsa]);
    // +SIGN-DSA-SHA256 is only this: sha256+dsa among the signature algorithms.
    assert.ok(hello.signatureSchemes.includes(0x0402));
  });

  const keys = keyBlock12(suite, session.masterSecret, clientRandom, serverRandom);
  const protectedRecords = session.records.filter((r, i) => r.type !== 20 && session.records.slice(0, i).some((p) => p.type === 20 && p.from === r.from));
  const fromServer = protectedRecords.filter((r) => r.from === "server");
  const fromClient = protectedRecords.filter((r) => r.from === "client");

  test("PRF(SHA-384) over the recorded transcript gives the Finished both sides sent", () => {
    // Extended master secret: both hellos carry extension 23 (RFC 7627).
    const toCke = Buffer.concat(messages.map((m) => m.raw));
    const clientFinished = open12(suite, keys.client, 0n, 22, fromServer[0]!.body);
    assert.equal(clientFinished.toString("hex"), "1400000c3b9e83093142e188802f7e1b");
    const hash1 = createHash("sha384").update(toCke).digest();
    assert.ok(finished12(suite, session.masterSecret, "client", hash1).equals(clientFinished.subarray(4)));
    const serverFinished = open12(suite, keys.server, 0n, 22, fromClient[0]!.body);
    assert.equal(serverFinished.toString("hex"), "1400000cc9e3ad033d30c2dc325885f7");
    const hash2 = createHash("sha384").update(Buffer.concat([toCke, clientFinished])).digest();
    assert.ok(finished12(suite, session.masterSecret, "server", hash2).equals(serverFinished.subarray(4)));
  });

  test("the key block decrypts the secret and both close_notify alerts", () => {
    const secret = open12(suite, keys.client, 1n, 23, fromServer[1]!.body);
    assert.equal(secret.length, 1189);
    assert.equal(secret.subarray(0, 12).toString("hex"), "85020c03c4fd0ba7bf3f587f");
    // It is clients.conf's secret, base64-decoded.
    const conf = readFileSync(`${LEGACY_DATA}clients.conf`, "latin1");
    const b64 = /secret =\n((?:\s+\S+\n)+)/.exec(conf)![1]!.replace(/\s+/g, "");
    assert.ok(secret.equals(Buffer.from(b64, "base64")));
    assert.equal(open12(suite, keys.client, 2n, 21, fromServer[2]!.body).toString("hex"), "0100");
    assert.equal(open12(suite, keys.server, 1n, 21, fromClient[1]!.body).toString("hex"), "0100");
  });

  test("a record with one bit changed does not open", () => {
    const body = Buffer.from(fromServer[1]!.body);
    body[40]! ^= 1;
    assert.throws(() => open12(suite, keys.client, 1n, 23, body), { code: "TLS_BAD_RECORD_MAC" });
    assert.throws(() => open12(suite, keys.client, 2n, 23, fromServer[1]!.body), { code: "TLS_BAD_RECORD_MAC" });
  });

  test("the PRF is P_SHA384 (RFC 5246 §5), checked by hand for one block", () => {
    const out = prf12("sha384", Buffer.from("secret"), "label", Buffer.from("seed"), 60);
    const hmac = (k: Buffer, d: Buffer) => createHmac("sha384", k).update(d).digest();
    const seed = Buffer.from("labelseed");
    const a1 = hmac(Buffer.from("secret"), seed);
    const a2 = hmac(Buffer.from("secret"), a1);
    const expected = Buffer.concat([hmac(Buffer.from("secret"), Buffer.concat([a1, seed])), hmac(Buffer.from("secret"), Buffer.concat([a2, seed]))]).subarray(0, 60);
    assert.ok(out.equals(expected));
  });

  test("the OpenPGP certificate checks and its v4 fingerprint is the one OpenPGP.js computes", async () => {
    const certMsg = byType(11);
    const cert = await checkCertificate(certMsg.subarray(4));
    assert.equal(cert.fingerprint, FINGERPRINT);
    assert.equal(cert.keyId, "C28E2CE128594F14");
    assert.equal(cert.modulusBits, 4096);
    const keyBytes = certMsg.subarray(4 + 3 + 1 + 1 + 8 + 3);
    const oracle = await openpgp.readKey({ binaryKey: keyBytes });
    assert.equal(oracle.getFingerprint().toUpperCase(), FINGERPRINT);
    await oracle.verifyPrimaryKey(); // OpenPGP.js agrees the self-signatures hold
    // The key file the client was given is the same key.
    // The same key as the client's key file (GnuTLS re-frames the signature packets with new-format headers).
    const fromFile = await openpgp.readKey({ armoredKey: readFileSync(`${LEGACY_DATA}pubkey.txt`, "latin1") });
    assert.equal(fromFile.getFingerprint().toUpperCase(), FINGERPRINT);
    assert.equal((await checkTransferableKey(fromFile.write())).fingerprint, FINGERPRINT);
  });

  test("the recorded ServerKeyExchange signature verifies with the certificate's primary key", async () => {
    const cert = await checkCertificate(byType(11).subarray(4));
    const ske = parseServerKeyExchange(byType(12).subarray(4), "ECDHE_RSA");
    assert.equal(ske.signatureScheme, 0x0501);
    const content = serverKeyExchangeContent(clientRandom, serverRandom, ske.params);
    assert.ok(ske.verify(cert.key, content));
    const bent = Buffer.from(content);
    bent[70]! ^= 1;
    assert.ok(!ske.verify(cert.key, bent));
  });

  test("a certificate whose self-signature is bent is refused, as OpenPGP.js refuses it", async () => {
    const keyBytes = Buffer.from(byType(11).subarray(4 + 3 + 1 + 1 + 8 + 3));
    // The user ID certification's last signature byte: packet 3 starts after the key (3 + 525) and user ID (2 + 11).
    // Its header is new-format with a two-octet length (RFC 4880 §4.2.2.2).
    const sigStart = 3 + 525 + 2 + 11;
    assert.equal(keyBytes[sigStart], 0xc2);
    const sigLen = ((keyBytes[sigStart + 1]! - 192) << 8) + keyBytes[sigStart + 2]! + 192;
    keyBytes[sigStart + 3 + sigLen - 1]! ^= 0x01;
    await assert.rejects(checkTransferableKey(keyBytes), { code: "TLS_BAD_CERTIFICATE" });
    const oracle = await openpgp.readKey({ binaryKey: keyBytes });
    await assert.rejects(oracle.verifyPrimaryKey());
  });
});
