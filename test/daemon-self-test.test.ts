import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { runSelfTest } from "../src/main/self-test.js";

test("the built-in self-checks pass and print a summary", async () => {
  const out = new PassThrough();
  assert.equal(await runSelfTest([], out), true);
  assert.match(String(out.read()), /^3\/3 self-checks passed$/m);
});

test("one failing check makes the self-test fail and is named", async () => {
  const out = new PassThrough();
  const ok = await runSelfTest([{ name: "TLS handshake", run: () => { throw new Error("no engine"); } }], out);
  assert.equal(ok, false);
  const said = String(out.read());
  assert.match(said, /^FAIL TLS handshake: no engine$/m);
  assert.match(said, /^3\/4 self-checks passed$/m);
});
