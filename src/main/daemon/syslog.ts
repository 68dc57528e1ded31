// Syslog sink: every log line goes as one datagram to /dev/log, facility
// daemon, in the bytes the reference's Python SysLogHandler sends:
// `<PRI>Mandos [PID]: LEVEL: message\0` (`Mandos (NAME) [PID]: ...` when
// --servicename is not the default; mandos initlogger() and main()).
// Node core has no unix datagram sockets; unix-dgram (a small, widely used
// native addon, see docs/OPERATION.md, "Logging") supplies sendto(2). When
// it does not load, the server says so once and logs without syslog.

import { getSystemErrorName } from "node:util";
import { strerror } from "../config/os-error.js";
import type { LogLevel, LogSink } from "./log.js";
import { unixDgramOrSay, type UnixDgramModule, type UnixDgramSocket } from "./unix-dgram.js";

/** The default syslog socket, as SysLogHandler(address="/dev/log"). */
export const DEV_LOG = "/dev/log";

/** LOG_DAEMON from syslog(3). */
const FACILITY_DAEMON = 3;

/** SysLogHandler.mapPriority: Python level name to syslog severity. */
const SEVERITY: Record<LogLevel, number> = { DEBUG: 7, INFO: 6, WARNING: 4, ERROR: 3, CRITICAL: 2 };

/** The exact datagram for one record. */
export function syslogDatagram(level: LogLevel, message: string, serviceName = "Mandos", pid = process.pid): Buffer {
  const ident = serviceName === "Mandos" ? "Mandos" : `Mandos (${serviceName})`;
  const pri = FACILITY_DAEMON * 8 + SEVERITY[level];
  return Buffer.from(`<${pri}>${ident} [${pid}]: ${level}: ${message}\0`, "utf8");
}

/** unix-dgram reports -errno in `code`, or 1 for a full socket buffer (the datagram is dropped). */
function describe(err: Error): string {
  const code: unknown = (err as { code?: unknown }).code;
  if (typeof code === "number" && code < 0) return strerror(getSystemErrorName(code));
  return err.message;
}

export interface SyslogSinkOptions {
  level: LogLevel;
  serviceName?: string;
  /** Where to send; tests bind their own datagram socket. */
  socketPath?: string;
  /** Where the one "cannot reach syslog" notice goes. */
  stderr?: NodeJS.WritableStream;
  /** The addon, or null for one that does not load (said already); by default daemon/unix-dgram.ts's. */
  dgram?: UnixDgramModule | null;
}

export interface SyslogSink extends LogSink {
  close(): void;
}

export function syslogSink(options: SyslogSinkOptions): SyslogSink {
  const path = options.socketPath ?? DEV_LOG;
  const serviceName = options.serviceName ?? "Mandos";
  const stderr = options.stderr ?? process.stderr;
  const dgram = options.dgram === undefined ? unixDgramOrSay("syslog", stderr) : options.dgram;
  let socket: UnixDgramSocket | undefined = dgram?.createSocket("unix_dgram");
  socket?.on("error", () => {});
  let complained = false;
  return {
    level: options.level,
    write(level, message) {
      if (socket === undefined) return;
      const buf = syslogDatagram(level, message, serviceName);
      socket.send(buf, 0, buf.length, path, (err) => {
        // A missing or full syslog must never stop the server: say so once.
        if (err !== undefined && !complained) {
          complained = true;
          stderr.write(`Mandos [${process.pid}]: cannot log to syslog at ${path}: ${describe(err)}\n`);
        }
      });
    },
    close() {
      socket?.close();
      socket = undefined;
    },
  };
}
