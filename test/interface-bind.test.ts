// --interface bound by the kernel (SO_BINDTODEVICE through our addon,
// src/main/serve/device-socket.ts), as the reference: every connection that
// arrives on the interface is served, whatever its address. With `--interface
// lo`, 127.0.0.2 is lo's too (127/8), and the real mandos-client gets its
// password there; the filter by local address (interface-filter.ts, kept
// for a server without the addon) refused it. The interfaces of a test-made
// network namespace: interface-links.test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bindOnDevice } from "../src/main/serve/device-socket.js";
import { datagramAddon } from "../src/main/daemon/unix-datagram.js";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { REPO, listenBacklog, runMandosClient, startServer } from "./helpers/server.js";
import { LISTEN_BACKLOG } from "../src/main/serve/limits.js";

const PASSWORD = readFileSync(join(REPO, "example/client/password"), "utf8");
const addon = datagramAddon();
const noAddon = "unavailable" in addon || addon.bindOnDevice === undefined ? "the addon with bindOnDevice is not built (npm rebuild)" : false;

for (const threads of [[], ["--serve-threads", "2"]]) {
  test(`--interface lo: 127.0.0.2, 127.0.0.1 and ::1 are served${threads.length ? ` (${threads.join(" ")})` : ""}`, { skip: missing(MANDOS_CLIENT) || noAddon }, async () => {
    const state = mkdtempSync(join(tmpdir(), "mandos-ts-ifbind-"));
    const server = await startServer(["--configdir", join(REPO, "example"), "--statedir", state, "--port", "0", "--interface", "lo", ...threads]);
    try {
      assert.equal(await listenBacklog(server.port), LISTEN_BACKLOG);
      for (const host of ["127.0.0.2", "127.0.0.1", "::1"]) {
        const r = await runMandosClient(join(REPO, "example/client"), host, server.port, 30_000);
        assert.equal(r.stdout.toString(), PASSWORD, `${host}: ${r.stderr}\n${server.log()}`);
      }
      assert.doesNotMatch(server.log(), /not on the served interface|cannot bind/);
    } finally {
      await server.stop();
      rmSync(state, { recursive: true, force: true });
    }
  });
}

test("bindOnDevice: without the addon's call, unavailable (the caller filters); an unknown interface is refused; a port in use is thrown as listen's", { skip: noAddon }, async () => {
  assert.deepEqual(await bindOnDevice("lo", "", 0, true, { unavailable: "not built" }), { kind: "unavailable" });
  const old = { open: () => -1, sendTo: () => 0, close: () => 0 };
  assert.deepEqual(await bindOnDevice("lo", "", 0, true, old), { kind: "unavailable" });
  assert.deepEqual(await bindOnDevice("nosuch0", "", 0, true), { kind: "refused", code: "ENODEV" });
  const first = await bindOnDevice("lo", "127.0.0.1", 0, false);
  assert.equal(first.kind, "bound");
  const { Server } = await import("node:net");
  const server = new Server();
  await new Promise<void>((r) => server.listen({ fd: (first as { fd: number }).fd }, () => r()));
  try {
    const { address, port } = server.address() as { address: string; port: number };
    assert.equal(address, "127.0.0.1");
    await assert.rejects(bindOnDevice("lo", "127.0.0.1", port, false), { code: "EADDRINUSE", message: `listen EADDRINUSE: address already in use 127.0.0.1:${port}` });
  } finally {
    server.close();
  }
});
