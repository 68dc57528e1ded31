// Durations in configuration files, as the reference's string_to_delta
// parses them (/usr/sbin/mandos): first as an RFC 3339 duration (Appendix A
// ABNF; the reference counts a month as 4 weeks and a year as 52 weeks),
// else as white-space separated tokens `<integer><s|m|h|d|w>` ("1d 2h";
// "1d2h" is an error). The result is milliseconds.

import { pyInt, pySplit } from "./python-values.js";

const SECOND = 1000n;
const MINUTE = 60n * SECOND;
const HOUR = 60n * MINUTE;
const DAY = 24n * HOUR;
const WEEK = 7n * DAY;

/**
 * The RFC 3339 duration grammar as the reference's token table has it: each
 * token, its unit, and the tokens that may follow. Note its quirks, which we
 * keep: after hours only minutes may follow ("PT1H30S" is invalid), after
 * years only months ("P1Y2D" is invalid), and weeks stand alone.
 */
type Token = "P" | "Y" | "Mo" | "D" | "T" | "H" | "Mi" | "S" | "W" | "end";
const FOLLOWERS: Record<Token, readonly Token[]> = {
  P: ["Y", "Mo", "D", "T", "W"],
  Y: ["Mo", "end"],
  Mo: ["D", "end"],
  D: ["T", "end"],
  T: ["H", "Mi", "S"],
  H: ["Mi", "end"],
  Mi: ["S", "end"],
  S: ["end"],
  W: ["end"],
  end: [],
};
const UNIT: Partial<Record<Token, { letter: string; value: bigint }>> = {
  Y: { letter: "Y", value: 52n * WEEK },
  Mo: { letter: "M", value: 4n * WEEK },
  D: { letter: "D", value: DAY },
  H: { letter: "H", value: HOUR },
  Mi: { letter: "M", value: MINUTE },
  S: { letter: "S", value: SECOND },
  W: { letter: "W", value: WEEK },
};
const DIGITS_RE = /^[0-9]+/;

/** The reference's rfc3339_duration_to_delta, in milliseconds; undefined if invalid. */
export function parseRfc3339Duration(text: string): bigint | undefined {
  let rest = text;
  let total = 0n;
  let followers: readonly Token[] = ["P"];
  for (;;) {
    let next: Token | undefined;
    for (const token of followers) {
      if (token === "end") {
        if (rest === "") next = token;
      } else if (token === "P" || token === "T") {
        if (rest.startsWith(token)) {
          rest = rest.slice(1);
          next = token;
        }
      } else {
        const unit = UNIT[token] as { letter: string; value: bigint };
        const digits = DIGITS_RE.exec(rest);
        if (digits !== null && rest.charAt(digits[0].length) === unit.letter) {
          total += BigInt(digits[0]) * unit.value;
          rest = rest.slice(digits[0].length + 1);
          next = token;
        }
      }
      if (next !== undefined) break;
    }
    if (next === undefined) return undefined;
    if (next === "end") return total;
    followers = FOLLOWERS[next];
  }
}

/**
 * The longest duration a client may be given: 100,000 years of 365.25
 * days. Every time the server computes from one (now + timeout, now +
 * interval + a first delay up to an interval) then stays a valid Date. The
 * reference fails at start-up on a timeout that takes the expiry past the
 * year 9999, and on an interval past GLib's 32-bit timer (~49 days).
 */
export const MAX_CLIENT_DURATION_MS = 100_000 * 31_557_600_000;

/**
 * The latest time a client's timestamp may hold when read from outside
 * (the state file, etcd): any time a server makes before the year 3000,
 * plus the longest duration (an expiry). Every time made from one, plus a
 * duration (a moved expiry), stays a valid Date, which the state file and
 * D-Bus must write.
 */
export const MAX_CLIENT_TIME_MS = Date.UTC(3000, 0, 1) + MAX_CLIENT_DURATION_MS;

const LEGACY_UNIT: Record<string, bigint> = { s: SECOND, m: MINUTE, h: HOUR, d: DAY, w: WEEK };

/**
 * The reference's string_to_delta, in milliseconds; undefined if invalid or
 * beyond what a JavaScript number holds exactly (about 285,000 years;
 * Python's timedelta would overflow a little later).
 */
export function parseDuration(text: string): number | undefined {
  let total = parseRfc3339Duration(text);
  if (total === undefined) {
    total = 0n;
    for (const token of pySplit(text)) {
      const unit = LEGACY_UNIT[token.slice(-1)];
      const count = pyInt(token.slice(0, -1));
      if (unit === undefined || count === undefined) return undefined;
      total += count * unit;
    }
  }
  const ms = Number(total);
  return Number.isSafeInteger(ms) ? ms : undefined;
}
