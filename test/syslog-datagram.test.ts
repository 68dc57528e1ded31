import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { FanOutLogger } from "../src/main/daemon/log.js";
import { syslogDatagram, syslogSink } from "../src/main/daemon/syslog.js";
import { describeLoadFailure, unixDgram } from "../src/main/daemon/unix-dgram.js";

interface Receiver {
  bind(path: string): void;
  close(): void;
  on(event: "message", listener: (buf: Buffer) => void): void;
}
const dgram = createRequire(import.meta.url)("unix-dgram") as { createSocket(type: "unix_dgram"): Receiver };

async function receive(count: number, send: (path: string) => void): Promise<Buffer[]> {
  const dir = mkdtempSync(join(tmpdir(), "mandos-syslog-"));
  const path = join(dir, "log");
  const rx = dgram.createSocket("unix_dgram");
  try {
    const got: Buffer[] = [];
    const done = new Promise<void>((resolve) => {
      rx.on("message", (buf) => { got.push(Buffer.from(buf)); if (got.length === count) resolve(); });
    });
    rx.bind(path);
    send(path);
    await done;
    return got;
  } finally {
    rx.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("each record reaches syslog as the reference's SysLogHandler datagram", async () => {
  const got = await receive(2, (path) => {
    const sink = syslogSink({ level: "INFO", socketPath: path });
    const log = new FanOutLogger([sink]);
    log.debug("not sent: below the threshold");
    log.info("Now listening on address ::, port 1234");
    log.critical("ünïcode stays UTF-8");
    sink.close();
  });
  assert.deepEqual(got[0], Buffer.from(`<30>Mandos [${process.pid}]: INFO: Now listening on address ::, port 1234\0`));
  assert.deepEqual(got[1], Buffer.from(`<26>Mandos [${process.pid}]: CRITICAL: ünïcode stays UTF-8\0`, "utf8"));
});

test("a non-default service name appears in parentheses", async () => {
  const got = await receive(1, (path) => {
    const sink = syslogSink({ level: "DEBUG", socketPath: path, serviceName: "Other" });
    sink.write("WARNING", "w");
    sink.close();
  });
  assert.deepEqual(got[0], Buffer.from(`<28>Mandos (Other) [${process.pid}]: WARNING: w\0`));
});

test("priorities are facility daemon with Python's severity mapping", () => {
  const pri = (l: "DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL"): string => syslogDatagram(l, "", "Mandos", 1).toString().split(">")[0] + ">";
  assert.deepEqual(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"].map((l) => pri(l as "DEBUG")), ["<31>", "<30>", "<28>", "<27>", "<26>"]);
});

test("a missing syslog socket is reported once on stderr and logging goes on", () => {
  const stderr = new PassThrough();
  const sink = syslogSink({ level: "DEBUG", socketPath: "/nonexistent/mandos-test-log", stderr });
  sink.write("ERROR", "one");
  sink.write("ERROR", "two");
  sink.close();
  const said = String(stderr.read() ?? "");
  assert.equal(said.split("\n").filter(Boolean).length, 1);
  assert.match(said, /cannot log to syslog at \/nonexistent\/mandos-test-log: No such file or directory$/m);
});

test("an addon built for another Node.js is described with the command that fixes it", () => {
  // What Node's loader says of an addon from before an upgrade (its first line).
  const error = new Error(
    "The module '/opt/mandos-ts/node_modules/unix-dgram/build/Release/unix_dgram.node'\n" +
    "was compiled against a different Node.js version using\nNODE_MODULE_VERSION 115. This version of Node.js requires\n" +
    "NODE_MODULE_VERSION 137. Please try re-compiling or re-installing\nthe module (for instance, using `npm rebuild` or `npm install`).",
  );
  assert.equal(
    describeLoadFailure(error, "/opt/mandos-ts", "v24.1.0"),
    "the unix-dgram addon does not load on Node.js v24.1.0 (built for NODE_MODULE_VERSION 115, this release needs 137); " +
      'run "npm rebuild unix-dgram" in /opt/mandos-ts (or npm ci again) after changing Node.js',
  );
  // bindings' own, for an addon never built (its list of paths left out).
  assert.equal(
    describeLoadFailure(new Error("Could not locate the bindings file. Tried:\n → /opt/a.node\n → /opt/b.node"), null, "v22.0.0"),
    'the unix-dgram addon does not load on Node.js v22.0.0 (Could not locate the bindings file.); run "npm rebuild unix-dgram" where mandos-ts is installed (or npm ci again) after changing Node.js',
  );
});

test("without the addon, the syslog sink drops records and never throws", () => {
  const stderr = new PassThrough();
  const sink = syslogSink({ level: "DEBUG", socketPath: "/nonexistent/mandos-test-log", stderr, dgram: null });
  sink.write("ERROR", "dropped");
  sink.close();
  sink.close();
  // The one notice is unix-dgram.ts's, said where the load failed; the sink adds none.
  assert.equal(stderr.read(), null);
});

test("this installation's addon loads, so --check passes here", () => {
  assert.ok(!("unavailable" in unixDgram()));
});
