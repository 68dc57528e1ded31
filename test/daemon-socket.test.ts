// --socket FD: the server serves on an already-bound listening socket that
// its parent made (systemd socket activation, an inetd-style parent), here
// one the test binds on ::1 and hands over as file descriptor 3.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeFleetDir } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { BIN_MANDOS, listenBacklog, runMandosClient } from "./helpers/server.js";
import { LISTEN_BACKLOG } from "../src/main/serve/limits.js";
import { eventually } from "./helpers/wait.js";

// Also with serve threads, which all listen on the passed descriptor.
for (const threads of [[], ["--serve-threads", "2"]]) test(`--socket serves on a listening socket created by the parent${threads.length ? `, ${threads.join(" ")}` : ""}`, { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN) }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-socket-"));
  const listening = createServer();
  try {
    const { clients: [client], conf } = makeFleetDir(root, 1);
    writeFileSync(join(conf, "clients.conf"), client!.section);
    await new Promise<void>((r) => listening.listen({ host: "::1", port: 0 }, () => r()));
    const port = (listening.address() as { port: number }).port;
    const fd = (listening as unknown as { _handle: { fd: number } })._handle.fd;
    assert.ok(fd > 2);
    const child = spawn(process.execPath, [BIN_MANDOS, "--debug", "--no-zeroconf", "--no-dbus", "--configdir", conf, "--statedir", root, "--socket", "3", ...threads], {
      stdio: ["ignore", "pipe", "pipe", fd],
    });
    let log = "";
    child.stderr?.on("data", (d: Buffer) => (log += d.toString()));
    try {
      await eventually(() => /Now listening/.test(log), { what: "the server listening on the passed socket", timeoutMs: 5_000, context: () => log });
      assert.match(log, new RegExp(`Now listening on address '::1', port ${port}`));
      // The parent listened with Node's default backlog (511); the server's own holds a reboot burst.
      assert.equal(await listenBacklog(port), LISTEN_BACKLOG);
      // Our own copy stops accepting; the server's copy of the socket serves.
      listening.close();
      const r = await runMandosClient(client!.dir, "::1", port);
      assert.equal(r.stdout.toString(), client!.password, log);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  } finally {
    listening.close();
    rmSync(root, { recursive: true, force: true });
  }
});
