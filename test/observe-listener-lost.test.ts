// A listening socket killed under the server (`ss -K`, as root) must show:
// /health answers 503 with the reason, the systemd watchdog stops pinging
// (so that systemd restarts the server), and one CRITICAL line is logged.
// Linux tells the process nothing when this happens (serve/listening-socket.ts),
// so the server must look. In each serving mode: the main thread's
// listener, serve threads sharing one descriptor, and --socket's inherited one.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { receiveDatagrams } from "./helpers/datagram-receiver.js";
import { startServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";
import { listeningSocketLost } from "../src/main/serve/listening-socket.js";

/** Kills the TCP listening socket on `port` (SOCK_DESTROY); false when `ss` cannot. */
function killListener(port: number): boolean {
  const r = spawnSync("ss", ["-K", "-tn", "state", "listening", `( sport = :${port} )`]);
  return r.status === 0;
}

/** Why the test cannot run here, or false: it needs root and a kernel that destroys sockets on request (CONFIG_INET_DIAG_DESTROY). */
async function unsupported(): Promise<string | false> {
  if (process.getuid?.() !== 0) return "not root: ss -K needs CAP_NET_ADMIN";
  const probe = createServer();
  await new Promise<void>((r) => probe.listen({ host: "127.0.0.1", port: 0 }, () => r()));
  try {
    const fd = (probe as unknown as { _handle: { fd: number } })._handle.fd;
    if (!killListener((probe.address() as { port: number }).port)) return "ss -K failed";
    return listeningSocketLost(fd) === null ? "ss -K did not destroy the socket (no CONFIG_INET_DIAG_DESTROY?)" : false;
  } finally {
    probe.close();
  }
}

const skip = await unsupported();

async function health(port: number): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/health`);
  return { status: res.status, body: await res.text() };
}

for (const mode of ["listener", "serve threads", "--socket"] as const) {
  test(`a listening socket killed under the server (${mode}): /health 503 with the reason, no more watchdog pings, one CRITICAL line`, { skip }, async () => {
    const root = mkdtempSync(join(tmpdir(), "mandos-ts-listener-lost-"));
    const conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    writeFileSync(join(conf, "clients.conf"), "[DEFAULT]\n", { mode: 0o600 });
    const notify = join(root, "notify");
    const rx = await receiveDatagrams(notify);
    spawnSync("chmod", ["0777", notify]);
    const pings = (datagrams = rx.received): number => datagrams.filter((b) => b.toString("utf8") === "WATCHDOG=1").length;
    let passed: Server | undefined;
    const args = ["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--metrics", ":0"];
    const inherit: number[] = [];
    if (mode === "--socket") {
      passed = createServer();
      await new Promise<void>((r) => passed!.listen({ host: "::1", port: 0 }, () => r()));
      inherit.push((passed as unknown as { _handle: { fd: number } })._handle.fd);
      args.push("--socket", "3");
    } else {
      args.push("--port", "0", "--address", "::1");
    }
    if (mode === "serve threads") args.push("--serve-threads", "2");
    const server = await startServer(args, { NOTIFY_SOCKET: notify, WATCHDOG_USEC: "200000" }, { inherit });
    try {
      passed?.close();
      const metricsPort = Number(/Serving \/metrics and \/health on "127\.0\.0\.1", port (\d+)/.exec(server.log())?.[1]);
      assert.deepEqual(await health(metricsPort), { status: 200, body: "ok\n" });
      await eventually(() => pings() > 0, { what: "a watchdog ping" });
      assert.ok(killListener(server.port), "ss -K");
      const answer = await eventually(async () => {
        const h = await health(metricsPort);
        return h.status === 503 ? h : false;
      }, { what: "/health saying 503", timeoutMs: 10_000 });
      assert.match(answer.body, /^not accepting connections: the listening socket was closed under the server/);
      await server.waitForLog(/CRITICAL.*Not accepting connections/);
      // Pings sent before the loss may still be on their way: counted up to a marker sent after it.
      const afterLoss = pings(rx.received.slice(0, await rx.mark()));
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal(pings(), afterLoss, "no watchdog ping after the loss");
      assert.equal(server.log().match(/Not accepting connections/g)?.length, 1, "said once");
    } finally {
      passed?.close();
      await server.stop();
      await rx.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
}

/**
 * A listening socket made in network namespace `ns` and given to the
 * server, which runs in this one's, as descriptor 3 (a container's socket
 * passed in from the host, say): the wrap for startServer().
 */
function socketFromNamespace(ns: string, script: string): string[] {
  writeFileSync(script, [
    "import os, socket, sys",
    "s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)",
    "s.bind(('::1', 0)); s.listen(16)",
    "fd = s.detach()",
    "if fd != 3: os.dup2(fd, 3); os.close(fd)",
    "os.set_inheritable(3, True)",
    "os.execvp('nsenter', ['nsenter', '--net=' + sys.argv[1], '--'] + sys.argv[2:])",
  ].join("\n"));
  return ["nsenter", `--net=/run/netns/${ns}`, "python3", script, `/proc/${process.pid}/ns/net`];
}

const noNetns = skip || (spawnSync("ip", ["netns", "list"]).status === 0 && spawnSync("nsenter", ["--version"]).status === 0 ? false : "needs ip netns and nsenter");

test("a listening socket from another network namespace (--socket) is not watched: never seen in this one's tables, it is not taken for lost", { skip: noNetns }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-listener-netns-"));
  const ns = `mandos-ts-lost-${process.pid}`;
  assert.equal(spawnSync("ip", ["netns", "add", ns]).status, 0, "ip netns add");
  try {
    assert.equal(spawnSync("ip", ["-n", ns, "link", "set", "lo", "up"]).status, 0);
    const conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    writeFileSync(join(conf, "clients.conf"), "[DEFAULT]\n", { mode: 0o600 });
    const server = await startServer(
      ["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--metrics", ":0", "--socket", "3"],
      {}, { wrap: socketFromNamespace(ns, join(root, "in-netns.py")) },
    );
    try {
      const metricsPort = Number(/Serving \/metrics and \/health on "127\.0\.0\.1", port (\d+)/.exec(server.log())?.[1]);
      await server.waitForLog(/listening socket is not among this network namespace's listening sockets .*: not watched/);
      // Past two more looks, had it been watched.
      await new Promise((r) => setTimeout(r, 2_500));
      assert.deepEqual(await health(metricsPort), { status: 200, body: "ok\n" });
      assert.doesNotMatch(server.log(), /Not accepting connections/);
    } finally {
      await server.stop();
    }
  } finally {
    spawnSync("ip", ["netns", "delete", ns]);
    rmSync(root, { recursive: true, force: true });
  }
});
