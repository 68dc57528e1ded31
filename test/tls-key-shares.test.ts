// Ephemeral key shares: X25519 and X448 shares made from random bytes agree
// with an independent peer (RFC 7748 through OpenSSL), every share is fresh,
// and nothing on a serving path uses generateKeyPairSync, whose leftover
// job can deadlock a later key export in Node 20 (src/tls/crypto.ts).

import { test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, diffieHellman, generateKeyPairSync } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { computeSharedSecret, generateKeyShare } from "../src/tls/crypto.js";
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
