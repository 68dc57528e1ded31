// A short, bounded run of the engine's fuzz target (test/fuzz/engine-fuzz.ts;
// the long run is `npm run fuzz`): mutated GnuTLS and own flights into both
// roles, with its invariants (no exception, one error event per failure,
// nothing after it, no completion on an altered handshake, bounded time,
// output and heap). Also the corpus itself: every recorded flight must
// still complete, or the corpus is stale (re-record: bench/record-fuzz-corpus.ts).
// And a short run of the legacy flight's target (test/fuzz/legacy-fuzz.ts;
// `npm run fuzz -- --legacy`): mutated OpenPGP certificates.

import { test } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { loadCorpus } from "./fuzz/corpus.js";
import { handshakeForm, runFuzz } from "./fuzz/engine-fuzz.js";
import { runLegacyFuzz } from "./fuzz/legacy-fuzz.js";
import { freshIdentity } from "./helpers/legacy-keys.js";

test("the corpus holds both roles, from GnuTLS and from our own engine", () => {
  const corpus = loadCorpus();
  assert.ok(corpus.some((e) => e.role === "client" && e.source.startsWith("gnutls-serv")));
  assert.ok(corpus.some((e) => e.role === "client" && e.source.startsWith("our server")));
  assert.ok(corpus.some((e) => e.role === "server" && e.source.startsWith("gnutls-cli")));
});

test("the oracle's handshake form: a re-split plaintext record and a change_cipher_spec are the same handshake, a changed protected byte is not", () => {
  const rec = (type: number, body: string): Buffer => {
    const b = Buffer.from(body, "hex");
    return Buffer.concat([Buffer.of(type, 3, 3, b.length >> 8, b.length & 0xff), b]);
  };
  const original = Buffer.concat([rec(22, "0200000401020304"), rec(23, "aabbcc")]);
  const resplit = Buffer.concat([rec(22, "02000004"), rec(22, "01020304"), rec(20, "01"), rec(23, "aabbcc")]);
  const changed = Buffer.concat([rec(22, "0200000401020304"), rec(23, "aabbcd")]);
  assert.equal(handshakeForm(resplit, 1), handshakeForm(original, 1));
  assert.notEqual(handshakeForm(changed, 1), handshakeForm(original, 1));
  // What follows the handshake's records is not part of it.
  assert.equal(handshakeForm(Buffer.concat([original, rec(23, "00")]), 1), handshakeForm(original, 1));
});

test("a bounded fuzz run of both roles finds no violation", () => {
  const stats = runFuzz({
    inputs: 3000,
    seed: 16,
    corpus: loadCorpus(),
    maxInputMs: 2000,
    now: () => performance.now(),
    maxHeapGrowth: 256 * 1024 * 1024,
    liveShare: 0.05,
  });
  assert.deepEqual(stats.violations, []);
  assert.equal(stats.inputs, 3000);
  // The run reached every outcome: completions (unaltered or benign), failures, waiting.
  assert.ok(stats.completed > 100 && stats.failed > 1000 && stats.waiting > 10, JSON.stringify(stats));
});

test("a bounded fuzz run of the legacy certificate checks finds no violation", async () => {
  const stats = await runLegacyFuzz({ inputs: 400, seed: 38, identity: await freshIdentity(2048), maxInputMs: 2000, now: () => performance.now() });
  assert.deepEqual(stats.violations, []);
  assert.equal(stats.inputs, 400);
  // Both outcomes, and more than one way to fail: keys refused as broken and as of a type we do not take.
  assert.ok(stats.completed > 0 && stats.failed > 300, JSON.stringify(stats));
  assert.ok((stats.errors.TLS_BAD_CERTIFICATE ?? 0) > 0 && (stats.errors.TLS_UNSUPPORTED_CERTIFICATE ?? 0) > 0, JSON.stringify(stats.errors));
});
