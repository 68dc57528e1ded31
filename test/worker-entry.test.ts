// Our Piscina pools load their ES module workers through import(), never
// through require(esm): a worker ended while require() still wrapped the
// loaded module aborted the whole process (SIGABRT, an assertion in Node's
// ModuleWrap), as when a pool closed just after its workers had loaded.
// Node's --trace-require-module says whenever require(esm) is used.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { promisify } from "node:util";

const run = promisify(execFile);
const traced = process.allowedNodeEnvironmentFlags.has("--trace-require-module");

// The handshake pool loaded, used and closed. (The reference-secret pool
// ends its workers as soon as they are done, before what they print
// reaches the parent, so only the entry test below covers it.)
const script = `
import { createHandshakeRunner } from ${JSON.stringify(new URL("../src/main/serve/handshake-runner.js", import.meta.url).href)};
import { DEFAULT_PRIORITY, parsePriority } from ${JSON.stringify(new URL("../src/tls/index.js", import.meta.url).href)};
const runner = createHandshakeRunner(2, parsePriority(DEFAULT_PRIORITY));
const loaded = await runner.ready();
const share = await runner.run({ kind: "key-share", group: "x25519" });
await runner.close();
console.log(JSON.stringify({ loaded, kind: share.kind }));
`;

test("the handshake pool loads its module through import(), never require(esm)", { skip: traced ? false : "this Node has no require(esm)", timeout: 60_000 }, async () => {
  const { stdout, stderr } = await run(process.execPath, ["--trace-require-module=all", "--input-type=module", "-e", script]);
  assert.deepEqual(JSON.parse(stdout), { loaded: true, kind: "key-share" });
  assert.doesNotMatch(stderr, /ES Module .*using require\(\)/);
});

test("each Piscina entry gives, through require(), the promise of its worker's handler", async () => {
  const require = createRequire(import.meta.url);
  for (const entry of ["../src/workers/handshake-entry.cjs", "../src/workers/reference-secret-entry.cjs"]) {
    const exported: unknown = require(entry);
    assert.ok(exported instanceof Promise, entry);
    assert.equal(typeof (await exported), "function", entry);
  }
});
