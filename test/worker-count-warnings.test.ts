// --workers as given that the server cannot use as asked: said at start,
// not refused (found by an audit: --workers 200 on 2 cores took 2 GB and
// 15 s to listen, silently; --workers beside --serve-threads was ignored
// without a word). Real bin/mandos.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "./helpers/server.js";

async function startLog(args: readonly string[]): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-workers-"));
  try {
    const conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    writeFileSync(join(conf, "clients.conf"), "");
    const server = await startServer(["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::1", ...args]);
    await server.stop();
    return server.log();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

test("--workers beside --serve-threads is said to be unused", async () => {
  assert.match(await startLog(["--workers", "1", "--serve-threads", "1"]), /WARNING: --workers 1 is not used with 1 serve threads: they run the handshakes themselves/);
  assert.doesNotMatch(await startLog(["--serve-threads", "1"]), /--workers/);
});

test("more handshake workers than cores is said", async () => {
  const cores = availableParallelism();
  assert.match(await startLog(["--workers", String(cores + 1)]), new RegExp(`WARNING: ${cores + 1} handshake workers on ${cores} cores: workers beyond the cores serve no faster`));
  assert.doesNotMatch(await startLog(["--workers", String(cores)]), /handshake workers on/);
});
