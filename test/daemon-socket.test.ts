// --socket FD: the server serves on an already-bound listening socket that
// its parent made (systemd socket activation, an inetd-style parent), here
// one the test binds on ::1 and hands over as file descriptor 3.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeFleetDir, type TestClient } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { BIN_MANDOS, listenBacklog, runMandosClient } from "./helpers/server.js";
import { LISTEN_BACKLOG } from "../src/main/serve/limits.js";
import { defaultPidFilePath } from "../src/main/daemon/pidfile.js";
import { eventually } from "./helpers/wait.js";

/** One client configured under `root`, and `listening` on ::1 as the socket to pass: its port and descriptor. */
async function passedSocket(root: string, listening: Server): Promise<{ client: TestClient; conf: string; port: number; fd: number }> {
  const { clients: [client], conf } = makeFleetDir(root, 1);
  writeFileSync(join(conf, "clients.conf"), client!.section);
  await new Promise<void>((r) => listening.listen({ host: "::1", port: 0 }, () => r()));
  const port = (listening.address() as { port: number }).port;
  const fd = (listening as unknown as { _handle: { fd: number } })._handle.fd;
  return { client: client!, conf, port, fd };
}

// Also with serve threads, which all listen on the passed descriptor.
for (const threads of [[], ["--serve-threads", "2"]]) test(`--socket serves on a listening socket created by the parent${threads.length ? `, ${threads.join(" ")}` : ""}`, { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN) }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-socket-"));
  const listening = createServer();
  try {
    const { client, conf, port, fd } = await passedSocket(root, listening);
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
      const r = await runMandosClient(client.dir, "::1", port);
      assert.equal(r.stdout.toString(), client.password, log);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  } finally {
    listening.close();
    rmSync(root, { recursive: true, force: true });
  }
});

// Found beside the reference, whose fork keeps the descriptor: a detached
// server (no --foreground) started its child with descriptors 0-3 only, so
// --socket 5 was gone ("ENOTSOCK") and --socket 3 was taken for the
// readiness pipe. The child now keeps it, the pipe on another number.
const PID_FILE = defaultPidFilePath();
const otherServer = ((): boolean => {
  try {
    process.kill(Number(readFileSync(PID_FILE, "utf8").trim()), 0);
    return true;
  } catch {
    return false;
  }
})();
for (const socketFd of [3, 5]) test(`--socket ${socketFd} serves when the server detaches`, { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN) || (process.getuid?.() !== 0 ? "needs root (/run)" : otherServer ? `${PID_FILE} names a live server` : false) }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-socket-detached-"));
  const listening = createServer();
  let pid = 0;
  try {
    const { client, conf, port, fd } = await passedSocket(root, listening);
    const stdio: Array<"ignore" | number> = ["ignore", "ignore", "ignore"];
    for (let n = 3; n <= socketFd; n++) stdio.push(n === socketFd ? fd : "ignore");
    const r = spawnSync(process.execPath, [BIN_MANDOS, "--no-zeroconf", "--no-dbus", "--configdir", conf, "--statedir", root, "--socket", String(socketFd)], { stdio, timeout: 30_000 });
    assert.equal(r.status, 0, "the detaching parent did not see its child listen");
    pid = Number(readFileSync(PID_FILE, "utf8").trim());
    listening.close();
    const got = await runMandosClient(client.dir, "::1", port);
    assert.equal(got.stdout.toString(), client.password);
  } finally {
    if (pid > 0) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // gone
      }
      await eventually(() => { try { process.kill(pid, 0); return false; } catch { return true; } }, { what: "the daemon gone", timeoutMs: 10_000 });
    }
    rmSync(PID_FILE, { force: true });
    listening.close();
    rmSync(root, { recursive: true, force: true });
  }
});
