// GnuTLS priority strings onto engine settings: what we support maps, the
// rest is refused with an error naming the token.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { DEFAULT_PRIORITY, REFERENCE_OPENPGP_PRIORITY, REFERENCE_RPK_PRIORITY, parsePriority } from "../src/tls/index.js";
import { GROUP_CODES, SIGNATURE_CODES, groupByCode, schemeByCode, type NamedGroup, type SignatureScheme } from "../src/tls/constants.js";
import { GNUTLS_CLI, executable } from "./helpers/peers.js";

/** GnuTLS's verdict on a priority string (the reference's), or null without gnutls-cli. */
function gnutlsAccepts(priority: string): boolean | null {
  if (!executable(GNUTLS_CLI)) return null;
  const r = spawnSync(GNUTLS_CLI, ["--priority", priority, "--list"], { encoding: "utf8" });
  return r.status === 0 && !/Syntax error|Error in priorities/.test(`${r.stdout}${r.stderr}`);
}

test("the Mandos default", () => {
  const s = parsePriority(DEFAULT_PRIORITY);
  assert.deepEqual(s.cipherSuites, ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256", "TLS_AES_128_CCM_SHA256"]);
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

test("secp521r1 and the finite-field groups: only when named, after the others; -GROUP-ALL takes them too", () => {
  // GnuTLS's SECURE128 and GROUP-ALL have them; ours do not (docs/PROTOCOL.md, "Key exchange groups").
  assert.deepEqual(parsePriority("NORMAL:+CTYPE-RAWPK:+GROUP-ALL").groups, ["x25519", "secp256r1", "secp384r1", "x448"]);
  const named = parsePriority(`${DEFAULT_PRIORITY}:+GROUP-FFDHE4096:+GROUP-SECP521R1`);
  assert.deepEqual(named.groups, ["x25519", "secp256r1", "secp384r1", "x448", "ffdhe4096", "secp521r1"]);
  assert.deepEqual(named.keyShareGroups, ["x25519"]);
  assert.deepEqual(parsePriority("NORMAL:+CTYPE-RAWPK:+GROUP-DH-ALL:-GROUP-FFDHE8192").groups.slice(4), ["ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144"]);
  const only = parsePriority("NORMAL:+CTYPE-RAWPK:+GROUP-DH-ALL:+GROUP-SECP521R1:-GROUP-ALL:+GROUP-FFDHE2048");
  assert.deepEqual(only.groups, ["ffdhe2048"]);
  assert.deepEqual(only.keyShareGroups, ["ffdhe2048"]);
});

// Tokens the reference's GnuTLS (3.7.9) accepts, so a mandos.conf with one
// starts it: ours must start too. Each is checked against gnutls-cli too
// where it is installed, so the table cannot list what GnuTLS refuses.
for (const token of [
  "+GROUP-DH-ALL", "-GROUP-DH-ALL", "-VERS-DTLS-ALL", "+VERS-DTLS-ALL", "%VERIFY_ALLOW_BROKEN", "%FALLBACK_SCSV",
  "%NEW_PADDING", "%DISABLE_TLS13_COMPAT_MODE", "%PROFILE_VERY_WEAK", "+CIPHER-GOST-ALL", "+MAC-GOST-ALL",
  "+KX-GOST-ALL", "+SIGN-GOST-ALL", "+GROUP-GOST-ALL", "-GROUP-GOST-ALL", "+GROUP-GC256A", "+GROUP-GC512C",
  "+MAGMA-CTR-ACPKM", "+KUZNYECHIK-CTR-ACPKM", "+AES-192-GCM", "+SIGN-RSA-SHA3-256", "+SIGN-ECDSA-SHA3-384", "+SIGN-RSA-RAW",
]) {
  test(`accepts ${token}, as GnuTLS does`, () => {
    assert.notEqual(gnutlsAccepts(`NORMAL:${token}`), false, `gnutls-cli refuses ${token}`);
    assert.doesNotThrow(() => parsePriority(`NORMAL:+CTYPE-RAWPK:${token}`));
  });
}

test("GROUP-DH-ALL is the finite-field groups: added after the others, taken away again", () => {
  const plain = parsePriority("NORMAL:+CTYPE-RAWPK").groups;
  assert.deepEqual(parsePriority("NORMAL:+CTYPE-RAWPK:+GROUP-DH-ALL").groups, [...plain, "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"]);
  assert.deepEqual(parsePriority("NORMAL:+CTYPE-RAWPK:+GROUP-DH-ALL:-GROUP-DH-ALL").groups, plain);
  // GOST changes nothing we offer.
  assert.deepEqual(parsePriority("NORMAL:+CTYPE-RAWPK:+GROUP-GOST-ALL").groups, plain);
});

test("+GROUP-DHE-ALL, which GnuTLS refuses but our docs once gave, is taken as GROUP-DH-ALL: such a mandos.conf still starts", () => {
  assert.notEqual(gnutlsAccepts("NORMAL:+GROUP-DHE-ALL"), true);
  assert.deepEqual(parsePriority("NORMAL:+CTYPE-RAWPK:+GROUP-DHE-ALL").groups, parsePriority("NORMAL:+CTYPE-RAWPK:+GROUP-DH-ALL").groups);
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

// Found by session 56's configuration fuzz: GnuTLS's gnutls_priority_init
// refuses these (-50, measured through ctypes), so the reference serves no
// one with them; ours took them and served.
test("refuses an empty element, as GnuTLS does: a colon at the end, or two in a row", () => {
  for (const bad of [`${REFERENCE_RPK_PRIORITY}:`, `${REFERENCE_RPK_PRIORITY.replace(":%", "::%")}`]) {
    assert.throws(() => parsePriority(bad), { code: "TLS_PRIORITY_TOKEN", message: /empty element/ }, bad);
  }
});

test("legacy clients (TLS 1.2, OpenPGP): served by our default, by the reference's legacy string, not by its RPK string", () => {
  const both = parsePriority(DEFAULT_PRIORITY);
  assert.equal(both.modern, true);
  assert.deepEqual(both.legacy?.suites, [0xc030, 0xcca8, 0x009f, 0xccaa]);
  assert.deepEqual(both.legacy?.groups, [0x0018, 0x0019]);
  assert.deepEqual(both.legacy?.signatures, [0x0501, 0x0601]);
  const old = parsePriority(REFERENCE_OPENPGP_PRIORITY);
  assert.equal(old.modern, false);
  assert.deepEqual(old.keyShareGroups, []);
  assert.deepEqual(old.legacy?.suites, [0xc030, 0xcca8, 0x009f, 0xccaa]);
  const rpk = parsePriority(REFERENCE_RPK_PRIORITY);
  assert.equal(rpk.modern, true);
  assert.equal(rpk.legacy, null);
});

test("legacy tokens: key exchanges and ciphers narrow the TLS 1.2 suites", () => {
  assert.deepEqual(parsePriority(`${DEFAULT_PRIORITY}:-DHE-RSA`).legacy?.suites, [0xc030, 0xcca8]);
  assert.deepEqual(parsePriority(`${DEFAULT_PRIORITY}:-KX-ALL:+DHE-RSA`).legacy?.suites, [0x009f, 0xccaa]);
  assert.deepEqual(parsePriority(`${DEFAULT_PRIORITY}:-CHACHA20-POLY1305`).legacy?.suites, [0xc030, 0x009f]);
  assert.equal(parsePriority(`${DEFAULT_PRIORITY}:-VERS-TLS1.2`).legacy, null);
  assert.equal(parsePriority(`${DEFAULT_PRIORITY}:-CTYPE-OPENPGP`).legacy, null);
  // Legacy only: TLS 1.3 off, or no raw keys.
  assert.equal(parsePriority(`${DEFAULT_PRIORITY}:-VERS-TLS1.3`).modern, false);
  assert.equal(parsePriority(`${DEFAULT_PRIORITY}:-CTYPE-RAWPK`).modern, false);
  assert.throws(() => parsePriority("NORMAL:+CTYPE-OPENPGP:-VERS-TLS1.2"), /VERS-TLS1\.2/);
  assert.throws(() => parsePriority("NORMAL:+CTYPE-OPENPGP:-KX-ALL"), /TLS 1\.2 cipher suite/);
});

test("each group and signature scheme is found again by its code point, and an unknown code point is not", () => {
  for (const [name, code] of Object.entries(GROUP_CODES)) assert.equal(groupByCode(code), name as NamedGroup);
  for (const [name, code] of Object.entries(SIGNATURE_CODES)) assert.equal(schemeByCode(code), name as SignatureScheme);
  // rsa_pkcs1_sha256 (0x0401) is a code point TLS 1.3 forbids in CertificateVerify; ffdhe_private_use (0x01fc).
  assert.equal(schemeByCode(0x0401), undefined);
  assert.equal(groupByCode(0x01fc), undefined);
  assert.equal(schemeByCode(0), undefined);
});

test("AES-128-CCM: in GnuTLS's keywords, last; alone it is enough to start", () => {
  assert.equal(parsePriority("SECURE128:+CTYPE-RAWPK").cipherSuites.at(-1), "TLS_AES_128_CCM_SHA256");
  assert.ok(!parsePriority("SECURE256:+CTYPE-RAWPK").cipherSuites.includes("TLS_AES_128_CCM_SHA256"));
  const only = parsePriority(`${REFERENCE_RPK_PRIORITY}:-CIPHER-ALL:+AES-128-CCM`);
  assert.deepEqual(only.cipherSuites, ["TLS_AES_128_CCM_SHA256"]);
  assert.deepEqual(parsePriority(`${DEFAULT_PRIORITY}:-AES-128-CCM`).cipherSuites.includes("TLS_AES_128_CCM_SHA256"), false);
});

test("SIGN-RSA-PSS-SHA256/384/512 are GnuTLS's rsa_pss_pss_* (RSASSA-PSS keys), not ignored", () => {
  assert.deepEqual(
    parsePriority("NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+AES-128-GCM:+GROUP-X25519:+SIGN-RSA-PSS-SHA256:+SIGN-RSA-PSS-SHA384:+SIGN-RSA-PSS-SHA512").signatureSchemes,
    ["rsa_pss_pss_sha256", "rsa_pss_pss_sha384", "rsa_pss_pss_sha512"],
  );
  const s = parsePriority(REFERENCE_RPK_PRIORITY).signatureSchemes;
  assert.ok(s.indexOf("rsa_pss_pss_sha256") < s.indexOf("rsa_pss_rsae_sha256"), "GnuTLS's order");
  assert.ok(!parsePriority(`${REFERENCE_RPK_PRIORITY}:-SIGN-RSA-PSS-SHA256`).signatureSchemes.includes("rsa_pss_pss_sha256"));
});

test("TLS 1.2 without CTYPE-OPENPGP, which the reference serves raw keys over, is named as having no effect", () => {
  const s = parsePriority("SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:!VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2");
  assert.equal(s.legacy, null);
  assert.equal(s.ignored.length, 1);
  assert.match(s.ignored[0]!, /TLS 1\.2 \(VERS-TLS1\.2\) without CTYPE-OPENPGP has no effect/);
  // A keyword leaves TLS 1.2 on too.
  assert.equal(parsePriority("SECURE128:+CTYPE-RAWPK").ignored.length, 1);
  for (const quiet of [DEFAULT_PRIORITY, REFERENCE_RPK_PRIORITY, REFERENCE_OPENPGP_PRIORITY]) assert.deepEqual(parsePriority(quiet).ignored, [], quiet);
});
