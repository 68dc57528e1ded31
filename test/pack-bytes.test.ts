// The worker messages' bytes in one ArrayBuffer: every byte view of plain
// data lands in it with its bytes, the rest passes untouched, the input is
// not changed, and across a MessageChannel the views still share one buffer.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { MessageChannel } from "node:worker_threads";
import { once } from "node:events";
import { packBytes } from "../src/workers/pack-bytes.js";
import { parseClientsConfig } from "../src/main/config/clients-config.js";
import { SECRET_CHUNK_BYTES } from "../src/main/config/secret-arena.js";
import { answersMessage } from "../src/main/serve/serve-threads.js";
import type { ToThread } from "../src/main/serve/serve-protocol.js";

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

test("a serve thread's answers carry each secret's bytes, not the clients.conf chunk it is a view on", async () => {
  const config = [1, 2, 3].map((i) => `[c${i}]\nkey_id = ${"AB".repeat(32)}\nsecret = ${Buffer.alloc(400, i).toString("base64")}\n`).join("");
  const secrets = parseClientsConfig(config, "clients.conf").map((c) => c.secret);
  assert.equal(secrets[0]!.buffer.byteLength, SECRET_CHUNK_BYTES, "clients.conf's secrets share a chunk");
  const message = answersMessage(
    [{ id: 1, decision: { give: true, secret: secrets[0]! } }, { id: 2, decision: { give: false, reason: "disabled" } }, { id: 3, decision: { give: true, secret: secrets[2]! } }],
    [{ id: 4, refusal: null }],
  );
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(message);
  const [received] = (await once(port2, "message")) as [Extract<ToThread, { kind: "answers" }>];
  port1.close();
  const given = received.decisions.flatMap((d) => (d.decision.give ? [d.decision.secret] : []));
  assert.deepEqual(given.map((s) => Buffer.from(s)), [secrets[0], secrets[2]]);
  // What crossed is the two secrets' bytes, not a 64 KiB chunk for each.
  for (const s of given) assert.equal(s.buffer.byteLength, 800);
  assert.deepEqual(received.admissions, [{ id: 4, refusal: null }]);
});
