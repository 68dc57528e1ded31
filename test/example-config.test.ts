// The README's quick start: the bundled example configuration serves its
// demo client, whose real mandos-client decrypts the demo password.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { REPO, runMandosClient, startServer } from "./helpers/server.js";

test("the example configuration serves the demo client its password", { skip: missing(MANDOS_CLIENT) }, async () => {
  const state = mkdtempSync(join(tmpdir(), "mandos-ts-example-"));
  const server = await startServer(["--configdir", join(REPO, "example"), "--statedir", state, "--port", "0"]);
  try {
    const result = await runMandosClient(join(REPO, "example/client"), "::1", server.port);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), readFileSync(join(REPO, "example/client/password"), "utf8"));
  } finally {
    await server.stop();
    rmSync(state, { recursive: true, force: true });
  }
});
