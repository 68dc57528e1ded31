// Unix datagrams out (syslog's /dev/log, systemd's $NOTIFY_SOCKET): Node
// core has none, unix-dgram (see daemon/syslog.ts) supplies sendto(2).
// Fire and forget: a lost audit copy or notification must never stop the server.

import { createRequire } from "node:module";

interface UnixDgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, callback: (err?: Error) => void): void;
  close(): void;
  on(event: "error", listener: (err: Error) => void): void;
}

export interface DatagramSender {
  send(text: string, path: string): void;
  close(): void;
}

const require = createRequire(import.meta.url);

export function datagramSender(): DatagramSender {
  let socket: UnixDgramSocket | undefined = (require("unix-dgram") as { createSocket(type: "unix_dgram"): UnixDgramSocket }).createSocket("unix_dgram");
  socket.on("error", () => {});
  return {
    send(text, path) {
      const buf = Buffer.from(text, "utf8");
      socket?.send(buf, 0, buf.length, path, () => {});
    },
    close() {
      socket?.close();
      socket = undefined;
    },
  };
}
