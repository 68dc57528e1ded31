// --address forms (mandos(8)): an IPv4-mapped IPv6 address, and plain IPv4
// with --no-ipv6; the real mandos-client gets its password over each.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { REPO, runMandosClient, startServer } from "./helpers/server.js";

for (const [name, args, host] of [
  ["an IPv4-mapped address", ["--address", "::ffff:127.0.0.1"], "127.0.0.1"],
  ["IPv4 only (--no-ipv6)", ["--no-ipv6", "--address", "127.0.0.1"], "127.0.0.1"],
  ["IPv6 loopback", ["--address", "::1"], "::1"],
] as const) {
  test(`listening on ${name}`, { skip: missing(MANDOS_CLIENT) }, async () => {
    const state = mkdtempSync(join(tmpdir(), "mandos-ts-addr-"));
    const server = await startServer(["--configdir", join(REPO, "example"), "--statedir", state, "--port", "0", ...args]);
    try {
      const r = await runMandosClient(join(REPO, "example/client"), host, server.port);
      assert.equal(r.stdout.toString(), readFileSync(join(REPO, "example/client/password"), "utf8"), r.stderr);
    } finally {
      await server.stop();
      rmSync(state, { recursive: true, force: true });
    }
  });
}
