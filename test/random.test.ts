// The handshakes' random bytes (src/tls/random.ts): drawn from a pool,
// each byte handed out once: every draw its own bytes, none of them the
// zeros the pool leaves behind, across refills and at every size.

import { test } from "node:test";
import assert from "node:assert/strict";
import { drawRandom } from "../src/tls/random.js";

test("draws are their size, never repeat, and never the pool's zeroed bytes, across many refills", () => {
  const seen = new Set<string>();
  const zero = Buffer.alloc(32);
  // 4,000 draws of 32 bytes: some thirty pools' worth.
  for (let i = 0; i < 4_000; i++) {
    const d = drawRandom(32);
    assert.equal(d.length, 32);
    assert.ok(!d.equals(zero), "a draw of zeros");
    const hex = d.toString("hex");
    assert.ok(!seen.has(hex), `draw ${i} repeated an earlier one`);
    seen.add(hex);
  }
});

test("draws of odd sizes, a draw that does not fit what is left of the pool, and one larger than pooled", () => {
  const sizes = [1, 7, 64, 255, 256, 257, 1_000, 4_096, 10_000];
  const draws = sizes.map((n) => drawRandom(n));
  draws.forEach((d, i) => assert.equal(d.length, sizes[i]));
  // No 8-byte window of one draw appears in another: no bytes handed out twice.
  const windows = new Map<string, number>();
  draws.forEach((d, i) => {
    for (let o = 0; o + 8 <= d.length; o += 8) {
      const w = d.subarray(o, o + 8).toString("hex");
      assert.ok(windows.get(w) === undefined || windows.get(w) === i, `bytes of draw ${i} also in draw ${windows.get(w)}`);
      windows.set(w, i);
    }
  });
  // A draw is a copy: changing it changes no later draw.
  const a = drawRandom(16);
  a.fill(0);
  assert.ok(!drawRandom(16).equals(Buffer.alloc(16)));
});
