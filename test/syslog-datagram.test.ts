// Syslog (src/main/daemon/syslog.ts over the addon's unix datagrams): the reference's
// SysLogHandler records and priorities, a missing socket or addon, abstract socket names.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { FanOutLogger } from "../src/main/daemon/log.js";
import { ABSENT_RETRY_MS, STREAM_BUFFER_MAX, syslogDatagram, syslogSink } from "../src/main/daemon/syslog.js";
import { datagramAddon, describeLoadFailure, openDatagramSocket, type DatagramSocket } from "../src/main/daemon/unix-datagram.js";
import { receiveDatagrams, type DatagramReceiver } from "./helpers/datagram-receiver.js";

/** Runs `use` with a receiver bound at a fresh path; removes both after. */
async function withReceiver<T>(mode: Parameters<typeof receiveDatagrams>[1], use: (path: string, rx: DatagramReceiver) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "mandos-syslog-"));
  const path = join(dir, "log");
  const rx = await receiveDatagrams(path, mode);
  try {
    return await use(path, rx);
  } finally {
    await rx.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function receive(count: number, send: (path: string) => void): Promise<Buffer[]> {
  return withReceiver("read", (path, rx) => {
    send(path);
    return rx.waitFor(count);
  });
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

test("an addon that does not load is described with the command that fixes it", () => {
  // Node's loader, for an addon never built (no compiler at npm ci): its first line.
  const error = new Error(
    "Cannot find module '/opt/mandos-ts/build/Release/mandos_datagram.node'\nRequire stack:\n- /opt/mandos-ts/dist/src/main/daemon/unix-datagram.js",
  );
  assert.equal(
    describeLoadFailure(error, "/opt/mandos-ts", "v24.1.0"),
    "the datagram addon does not load on Node.js v24.1.0 (Cannot find module '/opt/mandos-ts/build/Release/mandos_datagram.node'); " +
      'run "npm rebuild" in /opt/mandos-ts (it needs a C compiler: Debian\'s build-essential)',
  );
  const missing = datagramAddon("/nonexistent/mandos_datagram.node");
  assert.ok("unavailable" in missing);
  assert.match(missing.unavailable, /^the datagram addon does not load on Node\.js v\d+\.\d+\.\d+ \(Cannot find module '\/nonexistent\/mandos_datagram\.node'\); run "npm rebuild" in \//);
});

test("without the addon, the syslog sink drops records and never throws", () => {
  const stderr = new PassThrough();
  const sink = syslogSink({ level: "DEBUG", socketPath: "/nonexistent/mandos-test-log", stderr, socket: null });
  sink.write("ERROR", "dropped");
  sink.close();
  sink.close();
  // The one notice is unix-datagram.ts's, said where the load failed; the sink adds none.
  assert.equal(stderr.read(), null);
});

test("this installation's addon loads, so --check passes here", () => {
  assert.ok(!("unavailable" in datagramAddon()));
});

test("abstract socket names (\"\\0name\", systemd's \"@name\") are reached", async () => {
  const addon = datagramAddon();
  if ("unavailable" in addon) assert.fail(addon.unavailable);
  const name = `mandos-ts-test-${process.pid}`;
  const rx = await receiveDatagrams(`@${name}`);
  const socket = openDatagramSocket(addon);
  try {
    assert.equal(socket?.send("READY=1", `\0${name}`), undefined);
    assert.deepEqual(await rx.waitFor(1), [Buffer.from("READY=1")]);
  } finally {
    socket?.close();
    await rx.close();
  }
});

test("a receiver that does not read fills up: records are dropped, never waited for, and said once", () =>
  withReceiver("hold", async (path) => {
    const stderr = new PassThrough();
    const sink = syslogSink({ level: "DEBUG", socketPath: path, stderr });
    // A unix datagram queue holds ~a few hundred small records (net.unix.max_dgram_qlen); far fewer than these.
    for (let i = 0; i < 5_000; i++) sink.write("INFO", `record ${i}`);
    sink.close();
    const said = String(stderr.read() ?? "");
    assert.equal(said.split("\n").filter(Boolean).length, 1, said);
    assert.match(said, new RegExp(`cannot log to syslog at ${path}: Resource temporarily unavailable$`, "m"));
  }));

test("sendto's errors come back in words, and a closed socket sends nothing", () => {
  const addon = datagramAddon();
  if ("unavailable" in addon) assert.fail(addon.unavailable);
  const socket = openDatagramSocket(addon);
  assert.ok(socket !== null);
  assert.equal(socket.send("x", "/nonexistent/mandos-test"), "No such file or directory");
  assert.equal(socket.send("x", `/${"a".repeat(200)}`), "File name too long");
  socket.close();
  socket.close();
  assert.equal(socket.send("x", "/nonexistent/mandos-test"), "the socket is closed");
});

// syslog-ng's unix-stream("/dev/log") listens on a stream socket, which
// refuses datagrams (EPROTOTYPE); Python's SysLogHandler, and so the
// reference, then writes the same records down a stream.
test("a syslog daemon on a stream socket gets the same records down a stream", () =>
  withReceiver("stream", async (path, rx) => {
    const stderr = new PassThrough();
    const sink = syslogSink({ level: "INFO", socketPath: path, stderr });
    sink.write("INFO", "Now listening on address ::, port 1234");
    sink.write("CRITICAL", "ünïcode stays UTF-8");
    sink.close();
    assert.deepEqual(await rx.waitFor(2), [
      Buffer.from(`<30>Mandos [${process.pid}]: INFO: Now listening on address ::, port 1234\0`),
      Buffer.from(`<26>Mandos [${process.pid}]: CRITICAL: ünïcode stays UTF-8\0`, "utf8"),
    ]);
    assert.equal(stderr.read(), null, "nothing said: the stream is as good as a datagram");
  }));

test("a stream syslog that reads nothing holds at most STREAM_BUFFER_MAX, said once, never waited for", () =>
  withReceiver("stream-hold", async (path) => {
    const stderr = new PassThrough();
    const sink = syslogSink({ level: "DEBUG", socketPath: path, stderr });
    const line = "x".repeat(200);
    // Four times what may wait, in one turn of the event loop.
    const count = Math.ceil((4 * STREAM_BUFFER_MAX) / line.length);
    for (let i = 0; i < count; i++) sink.write("INFO", line);
    sink.close();
    const said = String(stderr.read() ?? "");
    assert.equal(said.split("\n").filter(Boolean).length, 1, said);
    assert.match(said, new RegExp(`cannot log to syslog at ${path}: it reads no more \\(${STREAM_BUFFER_MAX} bytes wait\\); records are dropped$`, "m"));
  }));

test("a record syslog does not take goes to the fallback sink; one it takes does not", async () => {
  const fellBack: string[] = [];
  const fallback = { level: "DEBUG" as const, write: (level: string, message: string) => void fellBack.push(`${level}: ${message}`) };
  // No addon: every record falls back.
  const none = syslogSink({ level: "INFO", socketPath: "/nonexistent/mandos-test-log", stderr: new PassThrough(), socket: null, fallback });
  none.write("WARNING", "no addon");
  none.close();
  // No socket at the path: said once, with where the records go.
  const stderr = new PassThrough();
  const missing = syslogSink({ level: "INFO", socketPath: "/nonexistent/mandos-test-log", stderr, fallback });
  missing.write("ERROR", "no socket");
  missing.close();
  assert.match(String(stderr.read() ?? ""), /No such file or directory; its records go to standard error$/m);
  // A syslog that takes them: nothing falls back.
  const got = await receive(1, (path) => {
    const taken = syslogSink({ level: "INFO", socketPath: path, fallback });
    taken.write("INFO", "taken");
    taken.close();
  });
  assert.deepEqual(got, [Buffer.from(`<30>Mandos [${process.pid}]: INFO: taken\0`)]);
  assert.deepEqual(fellBack, ["WARNING: no addon", "ERROR: no socket"]);
});

test("while syslog's socket is gone or unread, records are not each tried on it; once it is back, syslog has them again", async () => {
  const addon = datagramAddon();
  assert.ok(!("unavailable" in addon));
  const real = openDatagramSocket(addon)!;
  // The addon's own socket, its sendto(2)s counted.
  let sends = 0;
  const socket: DatagramSocket = {
    send: (data, to) => {
      sends++;
      return real.send(data, to);
    },
    close: () => real.close(),
  };
  let now = 0;
  const fellBack: string[] = [];
  const fallback = { level: "DEBUG" as const, write: (_level: string, message: string) => void fellBack.push(message) };
  const stderr = new PassThrough();
  const dir = mkdtempSync(join(tmpdir(), "mandos-syslog-"));
  const path = join(dir, "log");
  const sink = syslogSink({ level: "DEBUG", socketPath: path, stderr, socket, fallback, now: () => now });
  const write = (...lines: string[]): void => lines.forEach((line) => sink.write("DEBUG", line));
  const many = (tag: string): string[] => Array.from({ length: 100 }, (_, i) => `${tag} ${i}`);
  try {
    const first = await receiveDatagrams(path);
    write("taken");
    await first.waitFor(1);
    // The syslog daemon stops, its socket left at the path: ECONNREFUSED.
    await first.close();
    write("refused", ...many("not tried while refused"));
    assert.equal(sends, 2, "one try for 101 records");
    // Still there after the interval, tried once again; then the path goes: ENOENT.
    now += ABSENT_RETRY_MS;
    write("refused again");
    rmSync(path);
    now += ABSENT_RETRY_MS;
    write("missing", ...many("not tried while missing"));
    assert.equal(sends, 4);
    // A syslog daemon starts again: the first record after the interval finds it, and each one after.
    const second = await receiveDatagrams(path);
    write("before the interval");
    assert.equal(sends, 4);
    now += ABSENT_RETRY_MS;
    write("back", "and after");
    assert.equal(sends, 6);
    const got = await second.waitFor(2);
    assert.deepEqual(got.map((d) => d.toString("utf8")), ["back", "and after"].map((m) => `<31>Mandos [${process.pid}]: DEBUG: ${m}\0`));
    await second.close();
    // Nothing lost meanwhile: each record syslog did not take went to the fallback, in order.
    assert.deepEqual(fellBack, ["refused", ...many("not tried while refused"), "refused again", "missing", ...many("not tried while missing"), "before the interval"]);
    // And said once.
    assert.equal(String(stderr.read() ?? "").split("\n").filter(Boolean).length, 1);
  } finally {
    sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("after a Zeroconf rename the tag carries the new name, as the reference's AvahiServiceToSyslog does", async () => {
  const got = await receive(2, (path) => {
    const sink = syslogSink({ level: "INFO", socketPath: path });
    sink.write("INFO", "before");
    sink.setServiceName("Mandos #2");
    sink.write("INFO", "after");
    sink.close();
  });
  assert.deepEqual(got, [
    Buffer.from(`<30>Mandos [${process.pid}]: INFO: before\0`),
    Buffer.from(`<30>Mandos (Mandos #2) [${process.pid}]: INFO: after\0`),
  ]);
});
