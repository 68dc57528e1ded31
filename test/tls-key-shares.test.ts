// Ephemeral key shares: X25519 and X448 shares made from random bytes agree
// with an independent peer (RFC 7748 through OpenSSL), every share is fresh,
// and nothing on a serving path uses generateKeyPairSync, whose leftover
// job can deadlock a later key export in Node 20 (src/tls/crypto.ts); the
// raw private keys are imported the fastest way this runtime gets right.
// The finite-field groups: RFC 7919's primes, and the range of Y checked.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, createPublicKey, diffieHellman, generateKeyPairSync } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { agreeEphemeral, computeSharedSecret, generateKeyShare, importWorks, MONTGOMERY_IMPORT, MONTGOMERY_IMPORTS } from "../src/tls/crypto.js";
import { FFDHE_GROUPS, ffdhe, ffdheShareLength, type FfdheGroup } from "../src/tls/ffdhe.js";
import { REPO } from "./helpers/server.js";

for (const [group, crv, length] of [["x25519", "X25519", 32], ["x448", "X448", 56]] as const) {
  test(`${group} shares agree with an independent peer, and each is fresh`, () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const share = generateKeyShare(group);
      assert.equal(share.publicKey.length, length);
      seen.add(Buffer.from(share.publicKey).toString("hex"));
      const peer = group === "x25519" ? generateKeyPairSync("x25519") : generateKeyPairSync("x448");
      const peerRaw = Buffer.from(peer.publicKey.export({ format: "jwk" }).x!, "base64url");
      const ours = computeSharedSecret(share, peerRaw);
      const theirs = diffieHellman({
        privateKey: peer.privateKey,
        publicKey: createPublicKey({ key: { kty: "OKP", crv, x: Buffer.from(share.publicKey).toString("base64url") }, format: "jwk" }),
      });
      assert.deepEqual(ours, theirs);
    }
    assert.equal(seen.size, 20);
  });
}

/** SHA-256 of each group's p as OpenSSL 3 has it (`openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048`). */
const OPENSSL_PRIME_SHA256: Record<FfdheGroup, string> = {
  ffdhe2048: "9cd3b7f336872f46c09428d1bbc19877a4d440512cda8d1c1cf0cd6e33698966",
  ffdhe3072: "0eaf67db3a839156d5013494a5318a772b5697d270d721f37f092efc69ea5a17",
  ffdhe4096: "4648414224ac881b3d0dc59b466f96d06a558278776807797ecf1f66ff397b3e",
  ffdhe6144: "227ac9066b3ddd9e193670cda2388fa884f65ba0cf98b742d1fe77a6687c79c7",
  ffdhe8192: "770b14efaf6f049929c523113b3fa99a8d11dab1b18af3609590122075d19833",
};

for (const group of FFDHE_GROUPS) {
  test(`${group}: RFC 7919's prime, shares as long as p, agreement both ways, and a Y outside 1 < Y < p-1 refused`, () => {
    // Built from e and X (src/tls/ffdhe.ts), it is OpenSSL's p; GnuTLS agrees with us on every group too (tls-gnutls.test.ts).
    const { prime } = ffdhe(group);
    assert.equal(createHash("sha256").update(prime).digest("hex"), OPENSSL_PRIME_SHA256[group]);
    assert.equal(prime.length, ffdheShareLength(group));
    const ours = generateKeyShare(group);
    assert.equal(ours.publicKey.length, prime.length);
    const theirs = agreeEphemeral(group, ours.publicKey);
    assert.equal(theirs.publicKey.length, prime.length);
    assert.deepEqual(computeSharedSecret(ours, theirs.publicKey), theirs.secret);
    assert.equal(theirs.secret.length, prime.length);
    const y = (last: number, body?: Buffer): Buffer => {
      const b = Buffer.from(body ?? Buffer.alloc(prime.length));
      b[prime.length - 1] = last;
      return b;
    };
    for (const [what, bad] of [["0", y(0)], ["1", y(1)], ["p-1", y(0xfe, prime)], ["p", y(0xff, prime)], ["short", Buffer.alloc(prime.length - 1, 7)]] as const) {
      assert.throws(() => computeSharedSecret(ours, bad), { code: "TLS_ILLEGAL_PARAMETER" }, what);
    }
    // 2 generates the prime-order subgroup; p-2, outside it, passes RFC
    // 8446's range check and is refused by the OpenSSL of Node 22 and later,
    // which checks the subgroup too, and taken by Node 20's.
    assert.equal(computeSharedSecret(ours, y(2)).length, prime.length);
  });
}

test("every way of importing a raw X25519/X448 key that this runtime takes gives the same key; the one in use is the first that works", () => {
  const working = MONTGOMERY_IMPORTS.filter(([, load]) => importWorks(load)).map(([name]) => name);
  // DER is read by every runtime, and one of the fast two by each of Node
  // 20, 22 (jwk), 24 and 26 (raw: they refuse the jwk trick).
  assert.ok(working.includes("pkcs8"), `working: ${working.join(", ")}`);
  assert.ok(working.length >= 2, `only the slow import works on ${process.version}`);
  assert.equal(MONTGOMERY_IMPORT, working[0]);
  const pkcs8 = MONTGOMERY_IMPORTS.find(([name]) => name === "pkcs8")![1];
  for (const [crv, length] of [["X25519", 32], ["X448", 56]] as const) {
    for (let i = 0; i < 10; i++) {
      const raw = randomBytes(length);
      const expected = pkcs8(crv, raw).export({ format: "jwk" });
      for (const [name, load] of MONTGOMERY_IMPORTS.filter(([n]) => working.includes(n))) {
        assert.deepEqual(load(crv, raw).export({ format: "jwk" }), expected, `${name} import of an ${crv} key`);
      }
    }
  }
});

test("an import that gives another key than the bytes say is not used", () => {
  const pkcs8 = MONTGOMERY_IMPORTS.find(([name]) => name === "pkcs8")![1];
  assert.equal(importWorks((crv) => pkcs8(crv, Buffer.alloc(32, 7))), false);
  assert.equal(importWorks(() => {
    throw new Error("not on this runtime");
  }), false);
  assert.equal(importWorks(pkcs8), true);
});

test("no serving code calls generateKeyPairSync (only the --check self-test may)", () => {
  const offenders: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      // mandos-keygen (src/keygen) makes key pairs by design and never serves.
      if (entry.isDirectory()) {
        if (path !== join(REPO, "src", "keygen")) walk(path);
      } else if (entry.name.endsWith(".ts") && !path.endsWith("self-test.ts")) {
        readFileSync(path, "utf8").split("\n").forEach((line, i) => {
          if (/generateKeyPair(Sync)?\(/.test(line) && !/^\s*\/\//.test(line)) offenders.push(`${path}:${i + 1}`);
        });
      }
    }
  };
  walk(join(REPO, "src"));
  assert.deepEqual(offenders, []);
});
