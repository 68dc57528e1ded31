// Syslog sink: every log line goes as one datagram to /dev/log, facility
// daemon, in the bytes the reference's Python SysLogHandler sends:
// `<PRI>Mandos [PID]: LEVEL: message\0` (`Mandos (NAME) [PID]: ...` when
// --servicename is not the default; mandos initlogger() and main()).
// Node core has no unix datagram sockets; our addon (daemon/unix-datagram.ts)
// supplies sendto(2). When it does not load, the server says so once and
// logs without syslog. A syslog daemon listening on a stream socket there
// (syslog-ng's unix-stream()) refuses datagrams with EPROTOTYPE: like
// SysLogHandler, the sink then connects a stream and writes the same
// records, each ending in its NUL. A record syslog does not take goes to
// the sink's fallback, if it has one (standard error in the foreground).
// While nothing is at the path (ENOENT) or nothing reads there
// (ECONNREFUSED: a syslog daemon stopped), it is tried again at most once
// every ABSENT_RETRY_MS, not for each record as SysLogHandler does: a
// start of 20,000 clients with --debug and no /dev/log spent ~0.5 s in
// sends that failed. The first record after that tries again, and syslog
// has the records again from then on.

import { createConnection, type Socket } from "node:net";
import { reasonInWords } from "../config/os-error.js";
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

/** sendto(2)'s EPROTOTYPE in words: the socket at the path is a stream socket. */
const WRONG_TYPE = "Protocol wrong type for socket";
/** Bytes that may wait for a stream syslog that reads slowly or not at all; records beyond are dropped. */
export const STREAM_BUFFER_MAX = 1 << 20;
/** sendto(2)'s ENOENT and ECONNREFUSED in words: no socket at the path, or none that reads. */
const ABSENT = new Set(["No such file or directory", "Connection refused"]);
/** While syslog's socket is absent, the records of this long go to the fallback without trying it. */
export const ABSENT_RETRY_MS = 1_000;
/** A stream that failed or closed is connected again on the next record, at most this often. */
const STREAM_RETRY_MS = 1_000;

/** Records to a syslog daemon on a stream socket, never blocking and never holding more than STREAM_BUFFER_MAX. */
class StreamSyslog {
  readonly #path: string;
  readonly #complain: (why: string) => void;
  #socket: Socket | null = null;
  #triedAt = -Infinity;

  constructor(path: string, complain: (why: string) => void) {
    this.#path = path;
    this.#complain = complain;
  }

  /** Whether the record was written or waits to be; false: dropped. */
  send(record: Buffer): boolean {
    if (this.#socket === null) {
      const now = performance.now();
      if (now - this.#triedAt < STREAM_RETRY_MS) return false;
      this.#triedAt = now;
      const socket = createConnection({ path: this.#path });
      socket.on("error", (error) => this.#complain(reasonInWords(error)));
      socket.on("close", () => {
        if (this.#socket === socket) this.#socket = null;
      });
      this.#socket = socket;
    }
    if (this.#socket.writableLength > STREAM_BUFFER_MAX) {
      this.#complain(`it reads no more (${STREAM_BUFFER_MAX} bytes wait); records are dropped`);
      return false;
    }
    this.#socket.write(record);
    return true;
  }

  /** Sends what waits, then closes (the process stays at most until that is written, or bin/mandos's exit timer). */
  close(): void {
    this.#socket?.end();
    this.#socket = null;
    this.#triedAt = Infinity;
  }
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
  /**
   * Where a record goes that syslog does not take (no addon, no socket at
   * the path, a full queue): in the foreground, standard error, so that
   * nothing is lost. Absent: such records are dropped.
   */
  fallback?: LogSink;
  /** Milliseconds, for ABSENT_RETRY_MS (performance.now by default; tests give their own). */
  now?: () => number;
}

export interface SyslogSink extends LogSink {
  /** The tag's service name from now on: after a Zeroconf rename, as the reference's AvahiServiceToSyslog. */
  setServiceName(name: string): void;
  close(): void;
}

export function syslogSink(options: SyslogSinkOptions): SyslogSink {
  const path = options.socketPath ?? DEV_LOG;
  let serviceName = options.serviceName ?? "Mandos";
  const stderr = options.stderr ?? process.stderr;
  let socket = options.socket === undefined ? datagramSocketOrSay("syslog", stderr) : options.socket;
  let stream: StreamSyslog | null = null;
  const fallback = options.fallback;
  const now = options.now ?? (() => performance.now());
  // Until when an absent socket is not tried again.
  let absentUntil = -Infinity;
  let complained = false;
  // A missing or full syslog must never stop the server: say so once.
  const complain = (why: string): void => {
    if (complained) return;
    complained = true;
    stderr.write(`Mandos [${process.pid}]: cannot log to syslog at ${path}: ${why}${fallback ? "; its records go to standard error" : ""}\n`);
  };
  /** Whether syslog took the record (or holds it to send). */
  const send = (record: Buffer): boolean => {
    if (stream !== null) return stream.send(record);
    if (socket === null) return false;
    if (absentUntil !== -Infinity) {
      const at = now();
      if (at < absentUntil) return false;
      absentUntil = -Infinity;
    }
    const failed = socket.send(record, path);
    if (failed === WRONG_TYPE) {
      socket.close();
      socket = null;
      stream = new StreamSyslog(path, complain);
      return stream.send(record);
    }
    if (failed === undefined) return true;
    complain(failed);
    if (ABSENT.has(failed)) absentUntil = now() + ABSENT_RETRY_MS;
    return false;
  };
  return {
    level: options.level,
    write(level, message) {
      if (!send(syslogDatagram(level, message, serviceName))) fallback?.write(level, message);
    },
    setServiceName(name) {
      serviceName = name;
    },
    close() {
      socket?.close();
      socket = null;
      stream?.close();
    },
  };
}
