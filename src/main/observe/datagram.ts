// Unix datagrams out (syslog's /dev/log, systemd's $NOTIFY_SOCKET): Node
// core has none, unix-dgram (daemon/unix-dgram.ts) supplies sendto(2).
// Fire and forget: a lost audit copy or notification must never stop the
// server, nor an addon that does not load (said once, then nothing is sent).

import { unixDgramOrSay, type UnixDgramSocket } from "../daemon/unix-dgram.js";

export interface DatagramSender {
  send(text: string, path: string): void;
  close(): void;
}

/** `losing`: what goes unsent if the addon does not load, for the one notice ("systemd notifications"). */
export function datagramSender(losing: string): DatagramSender {
  let socket: UnixDgramSocket | undefined = unixDgramOrSay(losing)?.createSocket("unix_dgram");
  socket?.on("error", () => {});
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
