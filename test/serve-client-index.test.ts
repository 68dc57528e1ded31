// The serve threads' lookup of a proven key (src/main/serve/client-index.ts):
// one SharedArrayBuffer, read in place, that must answer exactly as the
// registry's maps do: the same client for a key ID or a fingerprint, nothing
// for anything else, the earlier client where two share a key.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Worker } from "node:worker_threads";
import { buildClientIndex, ClientIndex } from "../src/main/serve/client-index.js";

const randomKeyId = (): string => createHash("sha256").update(randomBytes(32)).digest("hex").toUpperCase();
const randomFingerprint = (): string => randomBytes(20).toString("hex").toUpperCase();

test("every client's key ID and fingerprint give its name; nothing else gives one", () => {
  const clients = Array.from({ length: 10_000 }, (_, i) => ({
    name: `client-${i}`,
    keyId: randomKeyId(),
    ...(i % 3 === 0 ? { fingerprint: randomFingerprint() } : {}),
  }));
  const index = new ClientIndex(buildClientIndex(clients));
  for (const c of clients) {
    assert.deepEqual(index.byKeyId(c.keyId), { name: c.name });
    if (c.fingerprint) assert.deepEqual(index.byFingerprint(c.fingerprint), { name: c.name });
  }
  for (let i = 0; i < 10_000; i++) {
    assert.equal(index.byKeyId(randomKeyId()), undefined);
    assert.equal(index.byFingerprint(randomFingerprint()), undefined);
  }
  // Exact, as the registry's maps: the caller normalises, the index does not.
  assert.equal(index.byKeyId(clients[0]!.keyId.toLowerCase()), undefined);
  assert.equal(index.byKeyId(clients[0]!.keyId.slice(0, 63)), undefined);
  assert.equal(index.byKeyId(`${clients[0]!.keyId}0`), undefined);
  assert.equal(index.byKeyId(""), undefined);
});

test("a key ID is not a fingerprint: the same text in the other table finds nothing", () => {
  const text = randomFingerprint();
  const index = new ClientIndex(buildClientIndex([{ name: "legacy", fingerprint: text }, { name: "modern", keyId: randomKeyId() }]));
  assert.deepEqual(index.byFingerprint(text), { name: "legacy" });
  assert.equal(index.byKeyId(text), undefined);
});

test("two clients with one key: the earlier one's name, as the registry's maps filled in order", () => {
  const shared = randomKeyId();
  const index = new ClientIndex(buildClientIndex([{ name: "first", keyId: shared }, { name: "second", keyId: shared }]));
  assert.deepEqual(index.byKeyId(shared), { name: "first" });
});

test("names and keys of any length and script survive; an empty index finds nothing", () => {
  const long = "x".repeat(70_000);
  const clients = [
    { name: "mañana-Ωμέγα-客户端", keyId: randomKeyId() },
    { name: long, keyId: randomKeyId() },
    { name: "odd key", keyId: "not hex: ünïcode ключ" },
  ];
  const index = new ClientIndex(buildClientIndex(clients));
  for (const c of clients) assert.deepEqual(index.byKeyId(c.keyId), { name: c.name });
  const empty = new ClientIndex(buildClientIndex([]));
  assert.equal(empty.byKeyId(randomKeyId()), undefined);
  assert.equal(empty.byFingerprint(randomFingerprint()), undefined);
});

test("colliding slots are probed past: a full small table finds all its members", () => {
  // 8 entries in 16 slots: with this many keys most probe sequences cross others.
  for (let round = 0; round < 200; round++) {
    const clients = Array.from({ length: 8 }, (_, i) => ({ name: `c${i}`, keyId: randomKeyId() }));
    const index = new ClientIndex(buildClientIndex(clients));
    for (const c of clients) assert.deepEqual(index.byKeyId(c.keyId), { name: c.name });
  }
});

test("another thread reads the same buffer, not a copy", async () => {
  const clients = [{ name: "ödön", keyId: randomKeyId() }, { name: "legacy", fingerprint: randomFingerprint() }];
  const buffer = buildClientIndex(clients);
  const module = new URL("../src/main/serve/client-index.js", import.meta.url).href;
  const worker = new Worker(
    `const { parentPort, workerData } = require("node:worker_threads");
     import(workerData.module).then(({ ClientIndex }) => {
       const index = new ClientIndex(workerData.buffer);
       parentPort.postMessage([index.byKeyId(workerData.keyId), index.byFingerprint(workerData.fingerprint), workerData.buffer instanceof SharedArrayBuffer]);
     });`,
    { eval: true, workerData: { module, buffer, keyId: clients[0]!.keyId, fingerprint: clients[1]!.fingerprint } },
  );
  const answer = await new Promise((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  await worker.terminate();
  assert.deepEqual(answer, [{ name: "ödön" }, { name: "legacy" }, true]);
});
