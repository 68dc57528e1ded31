// The worker messages' bytes in one ArrayBuffer: every byte view of plain
// data lands in it with its bytes, the rest passes untouched, the input is
// not changed, and across a MessageChannel the views still share one buffer.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { MessageChannel } from "node:worker_threads";
import { once } from "node:events";
import { packBytes } from "../src/workers/pack-bytes.js";

function sample(): { shares: Array<{ publicKey: Buffer; random: Uint8Array; keyObject: ReturnType<typeof createPrivateKey> }>; table: SharedArrayBuffer; flight: Buffer; note: string } {
  const { privateKey } = generateKeyPairSync("x25519");
  const pool = Buffer.from("0123456789abcdef0123456789abcdef"); // a slice of Node's 8 KiB pool
  return {
    shares: [
      { publicKey: pool.subarray(0, 8), random: new Uint8Array([1, 2, 3]), keyObject: privateKey },
      { publicKey: pool.subarray(8, 16), random: new Uint8Array(0), keyObject: privateKey },
    ],
    table: new SharedArrayBuffer(16),
    flight: Buffer.from("flight"),
    note: "kept",
  };
}

test("every byte view goes into one ArrayBuffer of their size, with its bytes", () => {
  const input = sample();
  const packed = packBytes(input);
  const views = [packed.shares[0]!.publicKey, packed.shares[0]!.random, packed.shares[1]!.publicKey, packed.shares[1]!.random, packed.flight];
  const buffer = views[0]!.buffer;
  for (const v of views) assert.equal(v.buffer, buffer, "one ArrayBuffer");
  assert.equal(buffer.byteLength, 8 + 3 + 8 + 0 + 6, "exactly their bytes");
  assert.deepEqual(Buffer.from(packed.shares[0]!.publicKey), Buffer.from("01234567"));
  assert.deepEqual([...packed.shares[0]!.random], [1, 2, 3]);
  assert.deepEqual(Buffer.from(packed.shares[1]!.publicKey), Buffer.from("89abcdef"));
  assert.deepEqual(Buffer.from(packed.flight), Buffer.from("flight"));
});

test("what is not plain data passes as it is, and the input is left alone", () => {
  const input = sample();
  const before = input.shares[0]!.publicKey;
  const packed = packBytes(input);
  assert.equal(packed.shares[0]!.keyObject, input.shares[0]!.keyObject, "a KeyObject is not rebuilt");
  assert.equal(packed.table, input.table, "a SharedArrayBuffer is not copied");
  assert.equal(packed.note, "kept");
  assert.equal(input.shares[0]!.publicKey, before, "the input keeps its own views");
  assert.notEqual(packed.shares[0]!.publicKey.buffer, before.buffer);
  const plain = { a: 1, b: ["x"] };
  assert.equal(packBytes(plain), plain, "nothing to pack: the same value");
});

test("across a MessageChannel, a packed message arrives with one ArrayBuffer for all its views", async () => {
  const { port1, port2 } = new MessageChannel();
  try {
    const received = once(port2, "message");
    port1.postMessage(packBytes(sample()));
    const [message] = (await received) as [ReturnType<typeof sample>];
    const views = [message.shares[0]!.publicKey, message.shares[1]!.publicKey, message.flight];
    for (const v of views) assert.equal(v.buffer, views[0]!.buffer);
    assert.equal(views[0]!.buffer.byteLength, 8 + 3 + 8 + 6);
    assert.deepEqual(Buffer.from(message.flight), Buffer.from("flight"));
  } finally {
    port1.close();
  }
});
