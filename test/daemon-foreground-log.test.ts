// Where bin/mandos --foreground (without --debug) logs, as the reference's
// initlogger() does: to syslog only. systemd's unit runs the server with
// --foreground, and the journal reads both /dev/log and standard error, so a
// record written to both would be in the journal twice. When syslog does not
// take a record (no /dev/log), it goes to standard error instead: lost
// nowhere. The server runs in a mount namespace of its own whose /dev holds
// a receiver's socket as /dev/log (or none), so this machine's syslog is
// neither needed nor touched.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { receiveDatagrams } from "./helpers/datagram-receiver.js";
import { UNSHARE } from "./helpers/netns.js";
import { executable } from "./helpers/peers.js";
import { BIN_MANDOS } from "./helpers/server.js";
import { eventually, freePort } from "./helpers/wait.js";
import { connect } from "node:net";
import { serverNodeFlags } from "../bench/reboot.js";

const skip = process.getuid?.() !== 0 ? "needs root (a mount namespace)" : !executable(UNSHARE) ? `missing ${UNSHARE}` : false;

/** The device nodes the server's /dev keeps. */
const DEVICES = ["null", "zero", "random", "urandom", "full"];

/** A directory to stand for /dev, and a configuration whose start logs a WARNING ("No clients defined"). */
function setUp(): { root: string; dev: string; conf: string; state: string } {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-fglog-"));
  const dev = join(root, "dev");
  const conf = join(root, "conf");
  const state = join(root, "state");
  for (const dir of [dev, conf, state]) mkdirSync(dir);
  chmodSync(root, 0o755);
  chmodSync(dev, 0o755);
  for (const name of DEVICES) writeFileSync(join(dev, name), "");
  writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
  writeFileSync(join(conf, "clients.conf"), "");
  return { root, dev, conf, state };
}

interface Run {
  /** Standard error so far. */
  said(): string;
  /** Everything on standard error, once the server has exited. */
  readonly stderr: Promise<string>;
  stop(): void;
  /** Closes our end of its standard error: its next write there is EPIPE. */
  closeStderr(): void;
  /** Its exit code or signal; null while it runs. */
  exited(): number | string | null;
}

/** bin/mandos --foreground in a mount namespace whose /dev is `dev`. */
function runForeground(dev: string, conf: string, state: string, port = 0): Run {
  const binds = DEVICES.map((n) => `mount --bind /dev/${n} "$D/${n}"`).join(" && ");
  const script = `${binds} && mount --bind "$D" /dev && exec "$@"`;
  const child = spawn(UNSHARE, [
    "--mount", "--propagation", "private", "sh", "-c", script, "sh",
    process.execPath, ...serverNodeFlags(), BIN_MANDOS, "--foreground", "--no-zeroconf", "--no-dbus",
    "--configdir", conf, "--statedir", state, "--address", "::1", "--port", String(port),
  ], { env: { ...process.env, D: dev }, stdio: ["ignore", "ignore", "pipe"] });
  let text = "";
  child.stderr.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
  const stderr = new Promise<string>((resolve) => child.on("exit", () => resolve(text)));
  return { said: () => text, stderr, stop: () => child.kill("SIGTERM"), closeStderr: () => child.stderr.destroy(), exited: () => child.exitCode ?? child.signalCode };
}

test("--foreground logs to syslog only, as the reference: nothing twice in the journal", { skip }, async (t) => {
  const { root, dev, conf, state } = setUp();
  const rx = await receiveDatagrams(join(dev, "log"));
  chmodSync(join(dev, "log"), 0o666); // the server sends after it has become _mandos
  const run = runForeground(dev, conf, state);
  t.after(async () => {
    run.stop();
    // Its stop saves its state: the directory would be made again after a removal.
    await run.stderr;
    await rx.close();
    rmSync(root, { recursive: true, force: true });
  });
  await eventually(() => rx.received.some((d) => d.toString().includes("WARNING: No clients defined")), {
    what: "the WARNING in syslog",
    timeoutMs: 20_000,
    context: () => rx.received.map(String).join("\n"),
  });
  run.stop();
  const stderr = await run.stderr;
  assert.doesNotMatch(stderr, /No clients defined/, "the record went to standard error too");
});

test("--foreground without a syslog: the records go to standard error instead", { skip }, async (t) => {
  const { root, dev, conf, state } = setUp();
  const run = runForeground(dev, conf, state);
  t.after(async () => {
    run.stop();
    // Its stop saves its state: the directory would be made again after a removal.
    await run.stderr;
    rmSync(root, { recursive: true, force: true });
  });
  await eventually(() => /mandos \[\d+\]: WARNING: No clients defined/.test(run.said()), {
    what: "the WARNING on standard error",
    timeoutMs: 20_000,
    context: run.said,
  });
  run.stop();
  const stderr = await run.stderr;
  assert.match(stderr, /cannot log to syslog at \/dev\/log: No such file or directory; its records go to standard error/);
});

// Found beside the reference: with standard error a pipe nobody reads (a
// journal stream gone), ours died of the unhandled EPIPE at its first
// fallback line, before it listened; the reference serves on.
test("a standard error nobody reads any more does not stop the server", { skip }, async (t) => {
  const { root, dev, conf, state } = setUp();
  const port = await freePort();
  const run = runForeground(dev, conf, state, port);
  run.closeStderr();
  t.after(async () => {
    run.stop();
    // Its stop saves its state: the directory would be made again after a removal.
    await run.stderr;
    rmSync(root, { recursive: true, force: true });
  });
  const accepts = (): Promise<boolean> =>
    new Promise((resolve) => {
      const socket = connect({ host: "::1", port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
  await eventually(async () => (await accepts()) || (run.exited() !== null ? `exited: ${String(run.exited())}` : false), {
    what: "the server listening",
    timeoutMs: 20_000,
  }).then((r) => assert.equal(r, true, String(r)));
  // And a moment later, still serving.
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(run.exited(), null);
});
