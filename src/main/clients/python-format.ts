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

/** Python `template % mapping`, for the `%(key)s` and `%%` forms the checker uses; an error in Python's words where Python fails. */
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
    if (template[p + 1] === "%") {
      out += "%";
      i = p + 2;
      continue;
    }
    const spec = conversionAt(template, p);
    if (spec.key === null) throw new FormatError(`a conversion without a (key) at index ${p} (Python would format the whole mapping) in ${JSON.stringify(template)}`);
    const value = mapping.get(spec.key);
    if (value === undefined) throw new FormatError(`unknown key ${JSON.stringify(spec.key)} in ${JSON.stringify(template)}`);
    const conversion = spec.conversion;
    const wrongType = conversionTypeError(conversion, value);
    if (wrongType !== null) throw new FormatError(`${wrongType} in ${JSON.stringify(template)}`);
    // As Python's: %r and %a are repr() and ascii() of the (quoted) text;
    // ".N" keeps its first N characters, a width pads it with spaces, on
    // the right with "-" ("0" pads strings with spaces too).
    let chars = Array.from(conversion === "r" ? pyRepr(value) : conversion === "a" ? pyAscii(value) : value);
    if (spec.precision !== null) chars = chars.slice(0, spec.precision);
    const pad = " ".repeat(Math.max(0, spec.width - chars.length));
    out += spec.flags.includes("-") ? chars.join("") + pad : pad + chars.join("");
    i = spec.end;
  }
  return out;
}

/** One conversion of Python's printf-style formatting, starting at the `%` at `p`. */
interface Conversion {
  readonly key: string | null;
  readonly flags: string;
  readonly width: number;
  readonly precision: number | null;
  readonly conversion: string;
  /** Just past it. */
  readonly end: number;
}

/**
 * Parses a conversion as Python's PyUnicode_Format does: `(key)` with
 * nested parentheses counted, flags, width, precision, a length modifier
 * (h, l or L, ignored), the conversion character; throws in Python's words
 * ("incomplete format", "unsupported format character ...").
 */
function conversionAt(template: string, p: number): Conversion {
  let at = p + 1;
  let key: string | null = null;
  if (template[at] === "(") {
    let depth = 1;
    const start = ++at;
    while (at < template.length && depth > 0) {
      if (template[at] === "(") depth++;
      else if (template[at] === ")") depth--;
      at++;
    }
    if (depth > 0) throw new FormatError(`incomplete format key in ${JSON.stringify(template)}`);
    key = template.slice(start, at - 1);
  }
  const rest = /^([-#0 +]*)(\*|\d*)(?:\.(\*|\d*))?[hlL]?/.exec(template.slice(at))!;
  const [whole, flags, width, precision] = rest as unknown as [string, string, string, string | undefined];
  if (width === "*" || precision === "*") throw new FormatError(`* wants int in ${JSON.stringify(template)}`);
  at += whole.length;
  const conversion = String.fromCodePoint(template.codePointAt(at) ?? 0);
  if (at >= template.length) throw new FormatError(`incomplete format in ${JSON.stringify(template)}`);
  if (!"srcadiouxXeEfFgG".includes(conversion)) {
    const code = conversion.codePointAt(0)!;
    const shown = code < 0x7f && code >= 0x20 ? conversion : "?";
    throw new FormatError(`unsupported format character '${shown}' (0x${code.toString(16)}) at index ${at} in ${JSON.stringify(template)}`);
  }
  return { key, flags, width: Number(width || 0), precision: precision === undefined ? null : Number(precision || 0), conversion, end: at + conversion.length };
}

/** What Python says of a conversion that a str value cannot take; null where it can. */
function conversionTypeError(conversion: string, value: string): string | null {
  if ("sra".includes(conversion)) return null;
  if (conversion === "c") return Array.from(value).length === 1 ? null : "%c requires int or char";
  if ("diu".includes(conversion)) return `%${conversion} format: a real number is required, not str`;
  if ("oxX".includes(conversion)) return `%${conversion} format: an integer is required, not str`;
  return "must be real number, not str";
}
