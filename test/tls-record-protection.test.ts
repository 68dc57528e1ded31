// Record protection (RFC 8446 §5.2-5.4) for every suite we offer:
// TLS_AES_128_CCM_SHA256 against node:crypto's AES-CCM used directly (the
// RFC 8448 known answers are GCM only; test/server-rsa-keys-ccm.test.ts
// has GnuTLS on the other side), and the bound on the whole inner
// plaintext, padding and type byte included, which GnuTLS enforces.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, randomBytes } from "node:crypto";
import { CIPHER_SUITES, suiteByName } from "../src/tls/constants.js";
import { openRecord, sealRecord, type TrafficKeys } from "../src/tls/crypto.js";

const keysFor = (keyLength: number): TrafficKeys => ({ key: randomBytes(keyLength), iv: randomBytes(12) });

test("TLS_AES_128_CCM_SHA256: a record is AES-128-CCM with a 16-byte tag over header and inner plaintext (RFC 8446 §5.2, §5.3)", () => {
  const suite = suiteByName("TLS_AES_128_CCM_SHA256");
  assert.equal(suite.code, 0x1304);
  const keys = keysFor(16);
  const seq = 5n;
  const content = Buffer.from("the secret");
  const record = sealRecord(suite, keys, seq, 23, content);

  const nonce = Buffer.from(keys.iv);
  nonce[11]! ^= Number(seq);
  const header = Buffer.from([23, 3, 3, 0, content.length + 1 + 16]);
  const cipher = createCipheriv("aes-128-ccm", keys.key, nonce, { authTagLength: 16 });
  cipher.setAAD(header, { plaintextLength: content.length + 1 });
  const body = Buffer.concat([cipher.update(Buffer.concat([content, Buffer.of(23)])), cipher.final(), cipher.getAuthTag()]);
  assert.deepEqual(record, Buffer.concat([header, body]));

  const opened = openRecord(suite, keys, seq, record.subarray(0, 5), record.subarray(5));
  assert.equal(opened.type, 23);
  assert.deepEqual(opened.content, content);
  assert.throws(() => openRecord(suite, keys, seq + 1n, record.subarray(0, 5), record.subarray(5)), { code: "TLS_BAD_RECORD_MAC" });
  const flipped = Buffer.from(record);
  flipped[7]! ^= 1;
  assert.throws(() => openRecord(suite, keys, seq, flipped.subarray(0, 5), flipped.subarray(5)), { code: "TLS_BAD_RECORD_MAC" });
});

/** A record whose inner plaintext is one content byte, its type, then `padding` zeros (RFC 8446 §5.4). */
function padded(suite: (typeof CIPHER_SUITES)[number], keys: TrafficKeys, padding: number): Buffer {
  // sealRecord appends the type byte: a content of [byte, type, zeros...] with type 0 is that inner plaintext.
  const inner = Buffer.concat([Buffer.of(0x41, 23), Buffer.alloc(padding - 1)]);
  return sealRecord(suite, keys, 0n, 0, inner);
}

for (const suite of CIPHER_SUITES) {
  test(`${suite.name}: an inner plaintext of 2^14 + 1 bytes opens; of 2^14 + 2 (mostly padding) is record_overflow`, () => {
    const keys = keysFor(suite.keyLength);
    const largest = padded(suite, keys, (1 << 14) - 1);
    assert.equal(largest.length, 5 + (1 << 14) + 1 + 16);
    const opened = openRecord(suite, keys, 0n, largest.subarray(0, 5), largest.subarray(5));
    assert.deepEqual([opened.type, ...opened.content], [23, 0x41]);

    const over = padded(suite, keys, 1 << 14);
    assert.throws(() => openRecord(suite, keys, 0n, over.subarray(0, 5), over.subarray(5)), { code: "TLS_RECORD_OVERFLOW", alert: 22 });
  });
}
