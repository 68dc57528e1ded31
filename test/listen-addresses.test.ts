// --address forms (mandos(8)): an IPv4-mapped IPv6 address, and plain IPv4
// with --no-ipv6; the real mandos-client gets its password over each. An
// IPv4 address or host name with IPv6 on (which the reference refuses)
// binds IPv4, and ::1 with --no-ipv6 binds IPv6: the "Now listening" line
// has the bound socket's form, not use_ipv6's (and so does the Zeroconf
// announcement: zeroconf-mandos-client.test.ts).

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

for (const [args, host, ipv6] of [
  [["--address", "127.0.0.1"], "127.0.0.1", false],
  [["--address", "0.0.0.0"], "127.0.0.1", false],
  [["--address", "::1", "--no-ipv6"], "::1", true],
] as const) {
  test(`${args.join(" ")}: the listening line in the ${ipv6 ? "IPv6" : "IPv4"} form of the socket bound`, { skip: missing(MANDOS_CLIENT) }, async () => {
    const state = mkdtempSync(join(tmpdir(), "mandos-ts-addr-"));
    const server = await startServer(["--configdir", join(REPO, "example"), "--statedir", state, "--port", "0", ...args]);
    try {
      const line = /Now listening on address .*/.exec(server.log())?.[0] ?? "";
      const address = args[1];
      assert.equal(line, `Now listening on address '${address}', port ${server.port}${ipv6 ? ", flowinfo 0, scope_id 0" : ""}`);
      const r = await runMandosClient(join(REPO, "example/client"), host, server.port);
      assert.equal(r.stdout.toString(), readFileSync(join(REPO, "example/client/password"), "utf8"), r.stderr);
    } finally {
      await server.stop();
      rmSync(state, { recursive: true, force: true });
    }
  });
}
