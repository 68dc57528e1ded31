// Durations as the reference parses them (mandos-clients.conf(5) TIMEOUT
// and /usr/sbin/mandos string_to_delta): an RFC 3339 duration (Appendix A:
// "P" [n "Y"] [n "M"] [n "D"] ["T" [n "H"] [n "M"] [n "S"]] or "P" n "W",
// with a month of 4 weeks and a year of 52 weeks, as the reference counts),
// else white-space-separated tokens of an integer and one unit letter
// s/m/h/d/w ("1d 2h"; "1d2h" is an error). Returns milliseconds.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const WEEK = 7 * DAY;

export class DurationError extends Error {
  readonly code = "MANDOS_BAD_DURATION";
}

// The reference's token automaton, as a table: each token, its value and
// the tokens that may follow it.
type Tok = "P" | "Y" | "Mo" | "D" | "T" | "H" | "Mi" | "S" | "W" | "END";
const TOKENS: Record<Tok, { re: RegExp; unit: number; next: Tok[] }> = {
  P: { re: /^P/, unit: 0, next: ["Y", "Mo", "D", "T", "W"] },
  Y: { re: /^(\d+)Y/, unit: 52 * WEEK, next: ["Mo", "END"] },
  Mo: { re: /^(\d+)M/, unit: 4 * WEEK, next: ["D", "END"] },
  D: { re: /^(\d+)D/, unit: DAY, next: ["T", "END"] },
  T: { re: /^T/, unit: 0, next: ["H", "Mi", "S"] },
  H: { re: /^(\d+)H/, unit: HOUR, next: ["Mi", "END"] },
  Mi: { re: /^(\d+)M/, unit: MINUTE, next: ["S", "END"] },
  S: { re: /^(\d+)S/, unit: SECOND, next: ["END"] },
  W: { re: /^(\d+)W/, unit: WEEK, next: ["END"] },
  END: { re: /^$/, unit: 0, next: [] },
};

export function parseRfc3339Duration(text: string): number {
  const ms = rfc3339(text);
  if (ms === null) throw new DurationError(`Invalid RFC 3339 duration: ${JSON.stringify(text)}`);
  return ms;
}

/** The RFC 3339 form, or null (no exception: most files use the older form). */
function rfc3339(text: string): number | null {
  let s = text;
  let value = 0;
  let followers: Tok[] = ["P"];
  for (;;) {
    let found: Tok | null = null;
    for (const t of followers) {
      const m = TOKENS[t].re.exec(s);
      if (!m) continue;
      if (m[1] !== undefined) value += Number(m[1]) * TOKENS[t].unit;
      s = s.slice(m[0].length);
      found = t;
      break;
    }
    if (found === null) return null;
    if (found === "END") return value;
    followers = TOKENS[found].next;
  }
}

const UNITS: Readonly<Record<string, number>> = { s: SECOND, m: MINUTE, h: HOUR, d: DAY, w: WEEK };

/** The reference's string_to_delta. An empty string is zero, as there. */
export function parseDuration(text: string): number {
  const iso = rfc3339(text);
  if (iso !== null) return iso;
  let total = 0;
  for (const token of text.split(/\s+/).filter((t) => t !== "")) {
    const suffix = token.slice(-1);
    const number = token.slice(0, -1);
    if (!/^[+-]?[0-9](?:_?[0-9])*$/.test(number)) {
      throw new DurationError(`invalid number ${JSON.stringify(number)} in duration ${JSON.stringify(text)}`);
    }
    const unit = UNITS[suffix];
    if (unit === undefined) throw new DurationError(`Unknown suffix ${JSON.stringify(suffix)} in duration ${JSON.stringify(text)}`);
    total += Number(number.replace(/_/g, "")) * unit;
  }
  return total;
}

/** Milliseconds as an RFC 3339 duration, for messages and state. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "PT0S";
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  const d = Math.floor(rest / 86400);
  rest -= d * 86400;
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  rest -= m * 60;
  let out = "P";
  if (d) out += `${d}D`;
  if (h || m || rest) {
    out += "T";
    if (h) parts.push(`${h}H`);
    if (m) parts.push(`${m}M`);
    if (rest) parts.push(`${rest}S`);
  }
  return out + parts.join("");
}
