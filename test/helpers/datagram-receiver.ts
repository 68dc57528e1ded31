// A unix datagram socket that receives what the server sends to syslog or
// to systemd's $NOTIFY_SOCKET, standing in for rsyslog and systemd (neither
// runs here); or a unix stream socket, as syslog-ng's unix-stream() listens
// on /dev/log, whose records each end in a NUL. It is Python's socket module (python3 comes with the
// reference mandos package), a process of its own, so that nothing of the
// server's own addon receives what it sent.

import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";

export const PYTHON3 = "/usr/bin/python3";

// argv[1]: the path ("@name" for an abstract socket); argv[2] "read" or
// "hold" (bound, never read: its queue fills), "stream" (records up to and
// with each NUL, from one connection after another) or "stream-hold"
// (listening, never accepting). One line per datagram or record, in
// base64, after "ready".
const SCRIPT = `
import base64, socket, sys
path, mode = sys.argv[1], sys.argv[2]
if path.startswith("@"):
    path = "\\0" + path[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if mode.startswith("stream") else socket.SOCK_DGRAM)
s.bind(path)
if mode.startswith("stream"):
    s.listen(16)
print("ready", flush=True)
if mode.endswith("hold"):
    sys.stdin.read()
    sys.exit(0)
if mode == "read":
    while True:
        print(base64.b64encode(s.recv(65536)).decode(), flush=True)
while True:
    c, _ = s.accept()
    pending = b""
    while True:
        data = c.recv(65536)
        if not data:
            break
        pending += data
        while b"\\0" in pending:
            record, _, pending = pending.partition(b"\\0")
            print(base64.b64encode(record + b"\\0").decode(), flush=True)
    c.close()
`;

// argv[1]: the path, as above; argv[2]: the datagram's text.
const SEND = `
import socket, sys
path = sys.argv[1]
if path.startswith("@"):
    path = "\\0" + path[1:]
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(sys.argv[2].encode(), path)
`;

export interface DatagramReceiver {
  /** Every datagram so far, in order. */
  readonly received: Buffer[];
  /** Resolves once `count` datagrams have come (rejects after `ms`). */
  waitFor(count: number, ms?: number): Promise<Buffer[]>;
  /** Resolves once a datagram equal to `text` has come. */
  heard(text: string, ms?: number): Promise<void>;
  /**
   * Sends a marker datagram to the socket from a process of its own and
   * resolves, once it has come, with how many came before it: all that any
   * process had sent before this call (the socket's queue keeps their
   * order), and no sleep to guess how long they take to come. "read" only.
   */
  mark(ms?: number): Promise<number>;
  close(): Promise<void>;
}

/** Binds `path` ("@name": abstract) and receives; with `hold`, binds and never reads; `stream` modes listen on a stream socket instead. */
export async function receiveDatagrams(path: string, mode: "read" | "hold" | "stream" | "stream-hold" = "read"): Promise<DatagramReceiver> {
  const child: ChildProcessWithoutNullStreams = spawn(PYTHON3, ["-c", SCRIPT, path, mode]);
  const received: Buffer[] = [];
  const waiters = new Set<() => void>();
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
  const lines = createInterface({ input: child.stdout });
  await new Promise<void>((resolve, reject) => {
    const exited = (code: number | null): void => reject(new Error(`the datagram receiver exited (${code}) before binding ${path}: ${stderr}`));
    child.once("exit", exited);
    lines.once("line", (line) => {
      child.off("exit", exited);
      if (line === "ready") resolve();
      else reject(new Error(`the datagram receiver said ${line}`));
    });
  });
  lines.on("line", (line) => {
    received.push(Buffer.from(line, "base64"));
    for (const w of [...waiters]) w();
  });
  const until = (done: () => boolean, what: string, ms: number): Promise<void> => new Promise((resolve, reject) => {
    const check = (): void => {
      if (!done()) return;
      waiters.delete(check);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`no ${what} at ${path} in ${ms} ms; received: ${received.map((b) => JSON.stringify(b.toString())).join(", ")}`));
    }, ms);
    waiters.add(check);
    check();
  });
  let marks = 0;
  const heard = (text: string, ms = 10_000): Promise<void> => until(() => received.some((b) => b.toString("utf8") === text), JSON.stringify(text), ms);
  return {
    received,
    async waitFor(count, ms = 10_000) {
      await until(() => received.length >= count, `${count} datagrams`, ms);
      return received.slice(0, count);
    },
    heard,
    async mark(ms = 10_000) {
      const text = `mark ${++marks} ${process.pid}`;
      const sent = spawnSync(PYTHON3, ["-c", SEND, path, text]);
      if (sent.status !== 0) throw new Error(`could not send a marker to ${path}: ${sent.stderr.toString()}`);
      await heard(text, ms);
      return received.findIndex((b) => b.toString("utf8") === text);
    },
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((resolve) => child.once("exit", resolve));
      child.kill();
      await gone;
    },
  };
}
