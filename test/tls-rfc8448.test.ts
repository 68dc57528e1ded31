// Known-answer tests from RFC 8448 §3 (simple 1-RTT handshake, x25519,
// TLS_AES_128_GCM_SHA256): the key schedule and record protection.

import { test } from "node:test";
import assert from "node:assert/strict";
import { suiteByName } from "../src/tls/constants.js";
import {
  applicationSecrets,
  finishedMac,
  handshakeSecrets,
  openRecord,
  sealRecord,
  trafficKeys,
} from "../src/tls/crypto.js";

const h = (s: string): Buffer => Buffer.from(s, "hex");
const suite = suiteByName("TLS_AES_128_GCM_SHA256");

const ECDHE = h("8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d");
const HELLO_HASH = h("860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8");
const SERVER_FINISHED_HASH = h("9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13");

test("handshake secrets from the (EC)DHE secret (RFC 8448 §3)", () => {
  const hs = handshakeSecrets(suite, ECDHE, HELLO_HASH);
  assert.equal(hs.handshakeSecret.toString("hex"), "1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac");
  assert.equal(hs.clientHandshakeTraffic.toString("hex"), "b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21");
  assert.equal(hs.serverHandshakeTraffic.toString("hex"), "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
});

test("traffic keys and IVs (RFC 8448 §3)", () => {
  const hs = handshakeSecrets(suite, ECDHE, HELLO_HASH);
  const server = trafficKeys(suite, hs.serverHandshakeTraffic);
  assert.equal(Buffer.from(server.key).toString("hex"), "3fce516009c21727d0f2e4e86ee403bc");
  assert.equal(Buffer.from(server.iv).toString("hex"), "5d313eb2671276ee13000b30");
  const client = trafficKeys(suite, hs.clientHandshakeTraffic);
  assert.equal(Buffer.from(client.key).toString("hex"), "dbfaa693d1762c5b666af5d950258d01");
  assert.equal(Buffer.from(client.iv).toString("hex"), "5bd3c71b836e0b76bb73265f");
});

test("application traffic secrets from the master secret (RFC 8448 §3)", () => {
  const hs = handshakeSecrets(suite, ECDHE, HELLO_HASH);
  const app = applicationSecrets(suite, hs.handshakeSecret, SERVER_FINISHED_HASH);
  assert.equal(app.clientApplicationTraffic.toString("hex"), "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5");
  assert.equal(app.serverApplicationTraffic.toString("hex"), "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
  const client = trafficKeys(suite, app.clientApplicationTraffic);
  assert.equal(Buffer.from(client.key).toString("hex"), "17422dda596ed5d9acd890e3c63f5051");
  assert.equal(Buffer.from(client.iv).toString("hex"), "5b78923dee08579033e523d9");
});

const CLIENT_FINISHED = h("14000020a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61");
const CLIENT_FINISHED_RECORD = h(
  "170303003575ec4dc238cce60b298044a71e219c56cc77b0517fe9b93c7a4bfc44d87f38f80338ac98fc46deb384bd1caeacab6867d726c40546",
);

test("client Finished verify_data (RFC 8448 §3)", () => {
  const hs = handshakeSecrets(suite, ECDHE, HELLO_HASH);
  const mac = finishedMac(suite, hs.clientHandshakeTraffic, SERVER_FINISHED_HASH);
  assert.deepEqual(mac, CLIENT_FINISHED.subarray(4));
});

test("record protection seals and opens the client Finished record (RFC 8448 §3)", () => {
  const hs = handshakeSecrets(suite, ECDHE, HELLO_HASH);
  const keys = trafficKeys(suite, hs.clientHandshakeTraffic);
  assert.deepEqual(sealRecord(suite, keys, 0n, 22, CLIENT_FINISHED), CLIENT_FINISHED_RECORD);
  const opened = openRecord(suite, keys, 0n, CLIENT_FINISHED_RECORD.subarray(0, 5), CLIENT_FINISHED_RECORD.subarray(5));
  assert.equal(opened.type, 22);
  assert.deepEqual(opened.content, CLIENT_FINISHED);
  // The wrong sequence number must not open it.
  assert.throws(() => openRecord(suite, keys, 1n, CLIENT_FINISHED_RECORD.subarray(0, 5), CLIENT_FINISHED_RECORD.subarray(5)), {
    code: "TLS_BAD_RECORD_MAC",
  });
});
