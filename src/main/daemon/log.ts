// Logging: one Logger that fans messages out to sinks (the console now;
// syslog joins it in daemon operation). Levels and their names are Python
// logging's, as the reference server writes them. Never pass a secret here.

import type { Clock, TimerHandle } from "../clock.js";

export const LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const RANK: Record<LogLevel, number> = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 };

export interface LogSink {
  /** Lowest level this sink wants. */
  readonly level: LogLevel;
  write(level: LogLevel, message: string): void;
}

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warning(message: string): void;
  error(message: string): void;
  critical(message: string): void;
  /**
   * Whether a message at `level` would be written anywhere (Python
   * logging's isEnabledFor). Callers that build a line from a peer's
   * facts ask first, so that a server at WARNING builds no DEBUG text.
   * Absent: everything may be written.
   */
  enabledFor?(level: LogLevel): boolean;
}

/**
 * Python logging's other names for levels, which the reference's
 * `getattr(logging, debuglevel.upper())` accepts too: WARN and FATAL are
 * aliases, and NOTSET (0) leaves its logger to the root logger's level,
 * WARNING, which is what the reference then logs at.
 */
const LEVEL_ALIASES: Readonly<Record<string, LogLevel>> = { WARN: "WARNING", FATAL: "CRITICAL", NOTSET: "WARNING" };

/** A `--debuglevel` / `debuglevel` name, in any case; undefined if the reference would refuse it. */
export function parseLogLevel(name: string): LogLevel | undefined {
  const upper = name.trim().toUpperCase();
  return (LOG_LEVELS as readonly string[]).includes(upper) ? (upper as LogLevel) : LEVEL_ALIASES[upper];
}

export class FanOutLogger implements Logger {
  readonly #sinks: LogSink[] = [];
  /** The lowest rank any sink wants (above CRITICAL when there is none). */
  #lowest = RANK.CRITICAL + 1;

  constructor(sinks: LogSink[] = []) {
    for (const sink of sinks) this.addSink(sink);
  }

  addSink(sink: LogSink): void {
    this.#sinks.push(sink);
    this.#lowest = Math.min(this.#lowest, RANK[sink.level]);
  }

  enabledFor(level: LogLevel): boolean {
    return RANK[level] >= this.#lowest;
  }

  log(level: LogLevel, message: string): void {
    for (const sink of this.#sinks) {
      if (RANK[level] >= RANK[sink.level]) sink.write(level, message);
    }
  }

  debug(message: string): void { this.log("DEBUG", message); }
  info(message: string): void { this.log("INFO", message); }
  warning(message: string): void { this.log("WARNING", message); }
  error(message: string): void { this.log("ERROR", message); }
  critical(message: string): void { this.log("CRITICAL", message); }
}

/** Python logging's default asctime: local "YYYY-MM-DD HH:MM:SS,mmm". */
export function asctime(date: Date): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, "0");
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())} ` +
    `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())},${p(date.getMilliseconds(), 3)}`;
}

/**
 * Console sink in the reference's --debug console form:
 * `2026-11-22 12:00:00,123 mandos [PID]: LEVEL: message`.
 */
export function consoleSink(level: LogLevel, stream: NodeJS.WritableStream = process.stderr, now: () => Date = () => new Date()): LogSink {
  return {
    level,
    write(lvl, message) {
      stream.write(`${asctime(now())} mandos [${process.pid}]: ${lvl}: ${message}\n`);
    },
  };
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger: Logger = {
  debug() {}, info() {}, warning() {}, error() {}, critical() {}, enabledFor: () => false,
};

/**
 * A failure tried again and again (an audit file, a metrics port): said at
 * the first of a run, when its reason changes (an operator's fix half
 * done), when an operator asked (a SIGHUP), and every `resayMs` while it
 * lasts; not at every attempt.
 */
export class RepeatedFailure {
  readonly #now: () => number;
  readonly #resayMs: number;
  #said = "";
  #saidAt = -Infinity;

  /** `now` in milliseconds. */
  constructor(now: () => number, resayMs = FAILURE_RESAY_MS) {
    this.#now = now;
    this.#resayMs = resayMs;
  }

  /** Whether a failure for `reason` is to be said now; if so, it counts as said. */
  shouldSay(reason: string, asked = false): boolean {
    const at = this.#now();
    if (!asked && reason === this.#said && at - this.#saidAt < this.#resayMs) return false;
    this.#said = reason;
    this.#saidAt = at;
    return true;
  }

  /** The run has ended: the next failure is said at once. */
  reset(): void {
    this.#said = "";
    this.#saidAt = -Infinity;
  }
}

/** How often a failure that lasts is said again (RepeatedFailure). */
export const FAILURE_RESAY_MS = 3_600_000;

/**
 * A line that may come in floods (connections refused at the open-files
 * cap, a listening socket's failing accepts): the first is written at
 * once, those after it are counted and summed up every `intervalMs` while
 * they go on; an interval with none ends the flood, and the next is
 * written at once again.
 */
export class SummedLines {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #first: (detail: string) => void;
  readonly #summary: (count: number, seconds: number) => void;
  /** Noted since the last line; null: no flood (the next is written at once). */
  #count: number | null = null;
  /** When the lines now counted began to be counted. */
  #since = 0;
  #timer: TimerHandle | null = null;

  constructor(clock: Clock, intervalMs: number, first: (detail: string) => void, summary: (count: number, seconds: number) => void) {
    this.#clock = clock;
    this.#intervalMs = intervalMs;
    this.#first = first;
    this.#summary = summary;
  }

  note(detail: string): void {
    if (this.#count !== null) {
      this.#count++;
      return;
    }
    this.#count = 0;
    this.#since = this.#clock.elapsed();
    this.#first(detail);
    this.#timer = this.#clock.setTimeout(() => this.#flush(), this.#intervalMs);
  }

  /** Writes what is still counted, over the seconds it was counted in; no timer is left. */
  stop(): void {
    this.#timer?.cancel();
    this.#timer = null;
    if (this.#count) this.#summary(this.#count, Math.max(1, Math.round((this.#clock.elapsed() - this.#since) / 1000)));
    this.#count = null;
  }

  #flush(): void {
    this.#timer = null;
    if (!this.#count) {
      this.#count = null;
      return;
    }
    this.#summary(this.#count, this.#intervalMs / 1000);
    this.#count = 0;
    this.#since = this.#clock.elapsed();
    this.#timer = this.#clock.setTimeout(() => this.#flush(), this.#intervalMs);
  }
}
