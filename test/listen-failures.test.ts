// The server cannot listen: a port in use (and, below, a --socket that is
// no listening TCP socket). The reference exits 1 with one traceback; ours
// exits 1 and says why once, at CRITICAL. The Listener's handler for
// accept errors used to catch listen's error too: every failure was logged
// twice, first as "ERROR: Listening socket error".

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
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

// --socket FD that is no TCP socket to listen on. The reference's words
// (its OSError, exit 1): EBADF for a closed descriptor, ENOTSOCK for a
// file, EINVAL with --port or --address besides (it binds the socket
// again). Ours used to say "listen EINVAL" for all of them, to serve a
// UNIX-domain socket logging "address 'null'" and resetting every
// connection, and to ignore --port and --address.
async function passing(kind: "closed" | "file" | "devnull" | "udp" | "unix" | "tcp", dir: string): Promise<{ stdio: (number | "ignore")[]; close: () => void }> {
  switch (kind) {
    case "closed":
      return { stdio: ["ignore"], close: () => undefined };
    case "file":
    case "devnull": {
      const fd = openSync(kind === "file" ? join(dir, "afile") : "/dev/null", "w");
      return { stdio: [fd], close: () => closeSync(fd) };
    }
    case "udp": {
      const socket = createSocket("udp6");
      await new Promise<void>((r) => socket.bind({ address: "::1", port: 0 }, () => r()));
      return { stdio: [(socket as unknown as { _handle: { fd: number } })._handle.fd], close: () => socket.close() };
    }
    case "unix":
    case "tcp": {
      const server = createServer();
      await new Promise<void>((r) => (kind === "unix" ? server.listen(join(dir, "sock"), () => r()) : server.listen({ host: "::1", port: 0 }, () => r())));
      return { stdio: [(server as unknown as { _handle: { fd: number } })._handle.fd], close: () => server.close() };
    }
  }
}

// `early`: refused before detaching, as the reference's socket.fromfd() and
// bind fail before it forks: only the last word on stderr, no log line yet.
for (const [kind, extra, words, early] of [
  ["closed", [], "Bad file descriptor", true],
  ["file", [], "Socket operation on non-socket", true],
  ["devnull", [], "Socket operation on non-socket", true],
  ["udp", [], "Invalid argument (not a TCP socket that can listen", false],
  ["unix", [], "Address family not supported by protocol (a UNIX-domain socket", false],
  ["tcp", ["--port", "1"], "Invalid argument (with --address or --port", true],
  ["tcp", ["--address", "::1"], "Invalid argument (with --address or --port", true],
] as const) {
  for (const threads of [[], ["--serve-threads", "2"]]) {
    test(`--socket with ${kind} ${extra.join(" ")}: "${words}", once, exit 1${threads.length ? ` (${threads.join(" ")})` : ""}`, async () => {
      const state = mkdtempSync(join(tmpdir(), "mandos-ts-listenfail-"));
      const passed = await passing(kind, state);
      try {
        // bin/mandos itself, its shell line first: a closed descriptor is
        // Node's own (epoll) by the time the script runs.
        const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
          const child = spawn(BIN_MANDOS, [...BASE, "--statedir", state, "--socket", "3", ...extra, ...threads], { stdio: ["ignore", "ignore", "pipe", ...passed.stdio] });
          let stderr = "";
          child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
          const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
          child.on("close", (code) => {
            clearTimeout(timer);
            resolve({ code, stderr });
          });
        });
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`^mandos: could not listen: --socket 3: ${escape(words)}`, "m"));
        if (!early) assert.match(r.stderr, new RegExp(`CRITICAL: Could not listen: --socket 3: ${escape(words)}`));
        assert.equal(r.stderr.split("\n").filter((l) => l.includes(words)).length, early ? 1 : 2, r.stderr);
        assert.doesNotMatch(r.stderr, /Listening socket error|Now listening/);
      } finally {
        passed.close();
        rmSync(state, { recursive: true, force: true });
      }
    });
  }
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
