// How the reference turns client attributes into checker command text:
// Python's str() of each value (datetime, timedelta, bool, None, str),
// shlex.quote() of that, and "%"-formatting with a mapping
// (mandos-clients.conf(5) RUNTIME EXPANSION).

import { CodedError } from "../../errors.js";
import { pyAscii, pyRepr } from "../python/repr.js";

/** Python str(datetime.timedelta) of a millisecond count: "0:05:00", "1 day, 2:00:00". */
export function pyTimedelta(ms: number): string {
  let micro = Math.round(ms * 1000);
  const dayMicro = 86_400_000_000;
  const days = Math.floor(micro / dayMicro);
  micro -= days * dayMicro;
  const seconds = Math.floor(micro / 1_000_000);
  const us = micro - seconds * 1_000_000;
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  let out = `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
  if (us) out += `.${String(us).padStart(6, "0")}`;
  if (days) out = `${days} day${Math.abs(days) === 1 ? "" : "s"}, ${out}`;
  return out;
}

/** Python str(datetime) of a naive UTC datetime: "2026-11-22 12:33:14.123000". */
export function pyDatetime(date: Date): string {
  return pyIsoformat(date, " ");
}

/** Python datetime.isoformat() of a naive UTC datetime (no zone suffix). */
export function pyIsoformat(date: Date, sep = "T"): string {
  const p = zeroPad;
  const base =
    `${p(date.getUTCFullYear(), 4)}-${p(date.getUTCMonth() + 1)}-${p(date.getUTCDate())}${sep}` +
    `${p(date.getUTCHours())}:${p(date.getUTCMinutes())}:${p(date.getUTCSeconds())}`;
  const ms = date.getUTCMilliseconds();
  return ms ? `${base}.${p(ms, 3)}000` : base;
}

function zeroPad(n: number, w = 2): string {
  return String(n).padStart(w, "0");
}

export type PyValue = string | number | boolean | null | Date | { readonly timedeltaMs: number };

export function pyStr(v: PyValue): string {
  if (v === null) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return v;
  if (v instanceof Date) return pyDatetime(v);
  return pyTimedelta(v.timedeltaMs);
}

const SAFE = /^[\w@%+=:,./-]+$/;

/** Python shlex.quote. */
export function shellQuote(s: string): string {
  if (s === "") return "''";
  // shlex's \w is re.ASCII's, and so is JavaScript's (no "u" flag): only ASCII is "safe".
  if (SAFE.test(s)) return s;
  return `'${s.replace(/'/g, `'"'"'`)}'`;
}

export class FormatError extends CodedError<"MANDOS_CHECKER_FORMAT"> {
  constructor(message: string) {
    super("MANDOS_CHECKER_FORMAT", message);
  }
}

/** Python `template % mapping`, for the `%(key)s` and `%%` forms the checker uses. */
export function percentFormat(template: string, mapping: ReadonlyMap<string, string>): string {
  let out = "";
  let i = 0;
  while (i < template.length) {
    const p = template.indexOf("%", i);
    if (p < 0) {
      out += template.slice(i);
      break;
    }
    out += template.slice(i, p);
    const next = template[p + 1];
    if (next === "%") {
      out += "%";
      i = p + 2;
      continue;
    }
    const m = /^%\(([^)]*)\)([-#0 +]*)(\d*)(?:\.(\d*))?([sra])/.exec(template.slice(p));
    if (!m) throw new FormatError(`unsupported format character at index ${p} in ${JSON.stringify(template)}`);
    const [whole, key, flags, width, precision, conversion] = m as unknown as [string, string, string, string, string | undefined, string];
    const value = mapping.get(key);
    if (value === undefined) throw new FormatError(`unknown key ${JSON.stringify(key)} in ${JSON.stringify(template)}`);
    // As Python's: %r and %a are repr() and ascii() of the (quoted) text;
    // ".N" keeps its first N characters, a width pads it with spaces, on
    // the right with "-" ("0" pads strings with spaces too).
    let chars = Array.from(conversion === "r" ? pyRepr(value) : conversion === "a" ? pyAscii(value) : value);
    if (precision !== undefined) chars = chars.slice(0, Number(precision));
    const pad = " ".repeat(Math.max(0, Number(width || 0) - chars.length));
    out += flags.includes("-") ? chars.join("") + pad : pad + chars.join("");
    i = p + whole.length;
  }
  return out;
}
