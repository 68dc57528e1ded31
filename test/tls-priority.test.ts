// GnuTLS priority strings onto engine settings: what we support maps, the
// rest is refused with an error naming the token.

import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/index.js";

test("the Mandos default", () => {
  const s = parsePriority(DEFAULT_PRIORITY);
  assert.deepEqual(s.cipherSuites, ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"]);
  assert.deepEqual(s.groups, ["x25519", "secp256r1", "secp384r1", "x448"]);
  assert.deepEqual(s.keyShareGroups, ["x25519"]);
  assert.ok(s.signatureSchemes.includes("ed25519"));
  assert.ok(s.signatureSchemes.includes("ed448"));
  assert.equal(s.profile, "ULTRA");
});

test("SECURE256 narrows suites, groups and signatures like GnuTLS", () => {
  const s = parsePriority("SECURE256:+CTYPE-RAWPK");
  assert.deepEqual(s.cipherSuites, ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]);
  assert.deepEqual(s.groups, ["secp384r1"]);
  assert.deepEqual(s.keyShareGroups, ["secp384r1"]);
  assert.ok(!s.signatureSchemes.includes("ed25519"));
});

test("NONE plus explicit additions, and removals", () => {
  const s = parsePriority("NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+CHACHA20-POLY1305:+GROUP-X25519:+SIGN-EDDSA-ED25519:%SERVER_PRECEDENCE");
  assert.deepEqual(s.cipherSuites, ["TLS_CHACHA20_POLY1305_SHA256"]);
  assert.deepEqual(s.groups, ["x25519"]);
  assert.deepEqual(s.signatureSchemes, ["ed25519"]);
  const t = parsePriority("NORMAL:+CTYPE-RAWPK:-AES-256-GCM:!GROUP-SECP256R1:-VERS-TLS1.2:+COMP-NULL:-RSA");
  assert.ok(!t.cipherSuites.includes("TLS_AES_256_GCM_SHA384"));
  assert.deepEqual(t.keyShareGroups, ["x25519"]);
});

for (const [priority, token] of [
  ["BOGUS", "BOGUS"],
  ["NORMAL:+CTYPE-RAWPK:+FOO-BAR", "+FOO-BAR"],
  ["NORMAL:+CTYPE-RAWPK:%NO_EXTENSIONS", "%NO_EXTENSIONS"],
  ["NORMAL:+CTYPE-RAWPK:*X", "*X"],
  ["@SYSTEM", "@SYSTEM"],
  ["NORMAL:+CTYPE-RAWPK:+GROUP-NOPE", "+GROUP-NOPE"],
] as const) {
  test(`refuses ${priority}, naming ${token}`, () => {
    assert.throws(() => parsePriority(priority), (e: unknown) => {
      const err = e as { code: string; message: string };
      assert.equal(err.code, "TLS_PRIORITY_TOKEN");
      assert.ok(err.message.includes(JSON.stringify(token)), err.message);
      return true;
    });
  });
}

test("refuses strings that leave nothing we can speak", () => {
  assert.throws(() => parsePriority("NORMAL"), /CTYPE-RAWPK/);
  assert.throws(() => parsePriority("NORMAL:+CTYPE-RAWPK:-VERS-TLS1.3"), /TLS 1.3/);
  assert.throws(() => parsePriority("NORMAL:+CTYPE-RAWPK:-CIPHER-ALL"), /cipher suite/);
  assert.throws(() => parsePriority("NORMAL:+CTYPE-RAWPK:-GROUP-ALL"), /group/);
});
