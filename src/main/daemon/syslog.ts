// Syslog sink: every log line goes as one datagram to /dev/log, facility
// daemon, in the bytes the reference's Python SysLogHandler sends:
// `<PRI>Mandos [PID]: LEVEL: message\0` (`Mandos (NAME) [PID]: ...` when
// --servicename is not the default; mandos initlogger() and main()).
// Node core has no unix datagram sockets; our addon (daemon/unix-datagram.ts)
// supplies sendto(2). When it does not load, the server says so once and
// logs without syslog.

import type { LogLevel, LogSink } from "./log.js";
import { datagramSocketOrSay, type DatagramSocket } from "./unix-datagram.js";

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

export interface SyslogSinkOptions {
  level: LogLevel;
  serviceName?: string;
  /** Where to send; tests bind their own datagram socket. */
  socketPath?: string;
  /** Where the one "cannot reach syslog" notice goes. */
  stderr?: NodeJS.WritableStream;
  /** The socket, or null without one (said already); by default daemon/unix-datagram.ts's. */
  socket?: DatagramSocket | null;
}

export interface SyslogSink extends LogSink {
  close(): void;
}

export function syslogSink(options: SyslogSinkOptions): SyslogSink {
  const path = options.socketPath ?? DEV_LOG;
  const serviceName = options.serviceName ?? "Mandos";
  const stderr = options.stderr ?? process.stderr;
  let socket = options.socket === undefined ? datagramSocketOrSay("syslog", stderr) : options.socket;
  let complained = false;
  return {
    level: options.level,
    write(level, message) {
      if (socket === null) return;
      const failed = socket.send(syslogDatagram(level, message, serviceName), path);
      // A missing or full syslog must never stop the server: say so once.
      if (failed !== undefined && !complained) {
        complained = true;
        stderr.write(`Mandos [${process.pid}]: cannot log to syslog at ${path}: ${failed}\n`);
      }
    },
    close() {
      socket?.close();
      socket = null;
    },
  };
}
