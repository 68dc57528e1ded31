// The server cannot listen: a port in use (and, below, a --socket that is
// no listening TCP socket). The reference exits 1 with one traceback; ours
// exits 1 and says why once, at CRITICAL. The Listener's handler for
// accept errors used to catch listen's error too: every failure was logged
// twice, first as "ERROR: Listening socket error".

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN_MANDOS, REPO, run } from "./helpers/server.js";

const BASE = ["--debug", "--no-zeroconf", "--no-dbus", "--configdir", join(REPO, "example")];

for (const threads of [[], ["--serve-threads", "2"]]) {
  test(`a port in use is said once, at CRITICAL, exit 1${threads.length ? ` (${threads.join(" ")})` : ""}`, async () => {
    const state = mkdtempSync(join(tmpdir(), "mandos-ts-listenfail-"));
    const holder = createServer();
    await new Promise<void>((r) => holder.listen({ host: "::", port: 0, ipv6Only: false }, () => r()));
    const { port } = holder.address() as { port: number };
    try {
      const r = await run(process.execPath, [BIN_MANDOS, ...BASE, "--statedir", state, "--port", String(port), ...threads]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.match(/EADDRINUSE/g)?.length, 2, r.stderr); // the CRITICAL line and the last word on stderr
      assert.match(r.stderr, /CRITICAL: Could not listen: listen EADDRINUSE/);
      assert.doesNotMatch(r.stderr, /Listening socket error/);
    } finally {
      holder.close();
      rmSync(state, { recursive: true, force: true });
    }
  });
}
