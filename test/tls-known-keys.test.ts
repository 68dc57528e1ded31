// Issue 16: a key that no client has is refused before its signature is
// checked, from the table of known key IDs the handshake tasks read
// (src/tls/known-keys.ts). A refusal with access_denied (49) where the
// signature is broken shows that no verification ran; a known key with a
// broken signature still fails the verification (decrypt_error, 51).

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { buildKnownKeyTable, keyId, mayBeKnown } from "../src/tls/index.js";
import { knownKeysOf } from "../src/main/serve/known-keys.js";
import { errorOf, makeKey, runPair } from "./helpers/tls-pair.js";

const randomKeyId = (): string => createHash("sha256").update(randomBytes(32)).digest("hex").toUpperCase();

test("the table holds every member and refuses what it does not hold", () => {
  const members = Array.from({ length: 5000 }, randomKeyId);
  const table = buildKnownKeyTable(members);
  for (const id of members) assert.ok(mayBeKnown(table, id), id);
  // Case does not matter: key IDs are hex.
  assert.ok(mayBeKnown(table, members[0]!.toLowerCase()));
  let falsePositives = 0;
  for (let i = 0; i < 20_000; i++) if (mayBeKnown(table, randomKeyId())) falsePositives++;
  assert.equal(falsePositives, 0);
  // What is not a key ID matches nothing.
  assert.equal(mayBeKnown(table, ""), false);
  assert.equal(mayBeKnown(table, "not hex at all, not at all"), false);
});

test("an empty table refuses everything; the all-zero prefix is a member like any other", () => {
  assert.equal(mayBeKnown(buildKnownKeyTable([]), randomKeyId()), false);
  const zero = "0".repeat(64);
  assert.equal(mayBeKnown(buildKnownKeyTable([randomKeyId()]), zero), false);
  assert.ok(mayBeKnown(buildKnownKeyTable([zero]), zero));
});

test("an unknown key is refused with access_denied before its signature is checked", () => {
  const table = buildKnownKeyTable([randomKeyId(), randomKeyId()]);
  const result = runPair({ knownKeys: table, faults: { badSignature: true }, message: Buffer.from("secret") });
  assert.deepEqual(errorOf(result.clientEvents), { code: "TLS_UNKNOWN_PEER_KEY", alert: 49 });
  const error = result.clientEvents.find((e) => e.type === "error");
  assert.ok(error?.type === "error");
  assert.match(error.error.keyId ?? "", /^[0-9A-F]{64}$/);
  assert.equal(result.clientEvents.filter((e) => e.type === "error").length, 1);
  assert.ok(!result.clientEvents.some((e) => e.type === "handshake-complete"));
  assert.ok(!result.serverEvents.some((e) => e.type === "data"));
  // The server role saw our alert: access_denied.
  assert.ok(result.serverEvents.some((e) => e.type === "error" && e.error.peerAlert === 49));
});

test("a known key is still verified: a broken signature is decrypt_error, a good one completes", () => {
  const key = makeKey("ed25519");
  const table = buildKnownKeyTable([keyId(key.publicKeySpki)]);
  const bad = runPair({ key, knownKeys: table, faults: { badSignature: true } });
  assert.deepEqual(errorOf(bad.clientEvents), { code: "TLS_DECRYPT_ERROR", alert: 51 });
  const good = runPair({ key, knownKeys: table });
  assert.equal(errorOf(good.clientEvents), null);
  const done = good.clientEvents.find((e) => e.type === "handshake-complete");
  assert.ok(done?.type === "handshake-complete");
  assert.equal(done.keyId, keyId(key.publicKeySpki));
});

test("the registry's table is rebuilt when a key ID comes or goes, not on every task", () => {
  const ids = new Set([randomKeyId()]);
  const registry = { keyIdGeneration: 0, keyIds: () => ids.values() };
  const known = knownKeysOf(registry);
  const first = known();
  assert.ok(first && mayBeKnown(first, [...ids][0]!));
  assert.equal(known(), first);
  const added = randomKeyId();
  ids.add(added);
  assert.equal(known(), first, "no rebuild without a new generation");
  registry.keyIdGeneration++;
  const second = known();
  assert.notEqual(second, first);
  assert.ok(second && mayBeKnown(second, added));
});
