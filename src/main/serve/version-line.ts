// The Mandos protocol's first step: the client's version line (docs/PROTOCOL.md,
// step 2). The reference reads one line through a text-mode file (UTF-8,
// universal newlines), takes its first white-space-separated field as a
// Python int() and refuses anything greater than 1. Python's notions are
// Unicode's: str.split() splits on U+00A0 too, and int() takes any decimal
// digit (U+FF11 FULLWIDTH DIGIT ONE is a 1), so we take them as it does; no
// real client sends them, but a peer that does meets the reference's
// behaviour, and none of it costs the "1\r\n" of a real client anything.

import { pyRepr, pyTextLine } from "../python/repr.js";

/** A line as the reference's text-mode file decodes it (`line`), with its verdict. */
export type VersionLineVerdict =
  | { readonly ok: true; readonly version: number; readonly line: string }
  | { readonly ok: false; readonly reason: string; readonly line: string };

/**
 * Python's white space (str.isspace(), what split() and strip() cut on):
 * JavaScript's \s without U+FEFF, with U+001C-U+001F and U+0085.
 */
const PY_SPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
/** The first white-space-separated field: Python's line.strip().split()[0]. */
const FIRST_FIELD = new RegExp(`^[${PY_SPACE}]*([^${PY_SPACE}]*)`, "u");

// Python's int() on a str: optional sign, decimal digits with single
// underscores between them; the ASCII form first, every line a real client sends.
const ASCII_INT = /^[+-]?[0-9](?:_?[0-9])*$/;
const UNICODE_INT = /^[+-]?\p{Nd}(?:_?\p{Nd})*$/u;
const DECIMAL_DIGIT = /\p{Nd}/u;
const NOT_ASCII = /[^\p{ASCII}]/u;

/** The value of a decimal digit (Unicode puts each script's 0-9 in a row of ten, rows side by side). */
function digitValue(codePoint: number): number {
  let zero = codePoint;
  while (zero > 0 && DECIMAL_DIGIT.test(String.fromCodePoint(zero - 1))) zero--;
  return (codePoint - zero) % 10;
}

/** int() of a field UNICODE_INT accepts; only its comparison with 1 matters, so large values may round. */
function unicodeInt(field: string): number {
  let value = 0;
  for (const ch of field) {
    if (ch === "_" || ch === "+" || ch === "-") continue;
    value = value * 10 + digitValue(ch.codePointAt(0)!);
  }
  return field.startsWith("-") ? -value : value;
}

/** A peer's text for a log line: itself when printable ASCII, else Python's repr of it. */
function printable(text: string): string {
  return /^[\x20-\x7e]*$/.test(text) ? text : pyRepr(text);
}

/** The longest field a refusal quotes (the reference quotes it whole; a peer could make that long). */
const QUOTED_FIELD_MAX = 64;

/**
 * Judges one line (with or without its terminator). A refusal's reason is
 * the reference's exception text, as its "Unknown protocol version: %s"
 * line prints it: IndexError for an empty line, int()'s ValueError, and the
 * line itself (its RuntimeError) for a version above 1.
 */
export function judgeVersionLine(line: string): VersionLineVerdict {
  const field = FIRST_FIELD.exec(line)?.[1] ?? "";
  if (field === "") return { ok: false, reason: "list index out of range", line };
  let version: number;
  if (ASCII_INT.test(field)) version = Number(field.replace(/_/g, ""));
  else if (UNICODE_INT.test(field)) version = unicodeInt(field);
  else {
    const quoted = field.length > QUOTED_FIELD_MAX ? `${pyRepr(field.slice(0, QUOTED_FIELD_MAX))}...` : pyRepr(field);
    return { ok: false, reason: `invalid literal for int() with base 10: ${quoted}`, line };
  }
  // The reference's text ends with the line's own newline (an empty log line after it); ours does not.
  if (version > 1) return { ok: false, reason: printable(pyTextLine(line).replace(/\n$/, "").slice(0, QUOTED_FIELD_MAX)), line };
  return { ok: true, version, line };
}

/** Strict UTF-8, as Python decodes it: no surrogates, no overlong forms, a byte order mark kept. */
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Where `bytes` stops being UTF-8, in the words of Python's
 * UnicodeDecodeError ("'utf-8' codec can't decode byte 0xff in position 0:
 * invalid start byte"); null when it is UTF-8.
 */
export function utf8Error(bytes: Uint8Array): string | null {
  const at = (start: number, good: number, why: string): string =>
    good === 1 ? `'utf-8' codec can't decode byte 0x${bytes[start]!.toString(16).padStart(2, "0")} in position ${start}: ${why}`
    : `'utf-8' codec can't decode bytes in position ${start}-${start + good - 1}: ${why}`;
  for (let i = 0; i < bytes.length;) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i++;
      continue;
    }
    const more = lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : 0;
    if (more === 0) return at(i, 1, "invalid start byte");
    // The second byte's narrower ranges shut out overlong forms, surrogates and code points past U+10FFFF.
    const low = lead === 0xe0 ? 0xa0 : lead === 0xf0 ? 0x90 : 0x80;
    const high = lead === 0xed ? 0x9f : lead === 0xf4 ? 0x8f : 0xbf;
    for (let k = 1; k <= more; k++) {
      if (i + k >= bytes.length) return at(i, k, "unexpected end of data");
      const b = bytes[i + k]!;
      if (k === 1 ? b < low || b > high : b < 0x80 || b > 0xbf) return at(i, k, "invalid continuation byte");
    }
    i += more + 1;
  }
  return null;
}

/**
 * Decodes and judges a line's bytes. Text that is not UTF-8 is refused with
 * Python's UnicodeDecodeError text: the reference's readline() raises it
 * outside its try, so it writes a traceback to standard error and no log
 * line, and closes the connection.
 */
export function judgeVersionBytes(bytes: Buffer): VersionLineVerdict {
  const latin1 = bytes.toString("latin1");
  if (!NOT_ASCII.test(latin1)) return judgeVersionLine(latin1);
  // Its line, for the log, byte by byte: U+0000-U+00FF, which ascii() escapes as \xNN.
  const error = utf8Error(bytes);
  if (error !== null) return { ok: false, reason: error, line: latin1 };
  return judgeVersionLine(UTF8.decode(bytes));
}

/**
 * Finds the end of the version line in `buffer` as Python's text-mode
 * readline() does (universal newlines): the index just past its "\n", its
 * "\r\n", or a "\r" followed by anything else; -1 if the line is not
 * complete yet (a last "\r" waits for the byte after it, or the end of the
 * stream, which ends any line).
 */
export function findLineEnd(buffer: Buffer): number {
  for (let i = 0; i < buffer.length; i++) {
    const b = buffer[i];
    if (b === 0x0a) return i + 1;
    if (b === 0x0d) {
      if (i + 1 === buffer.length) return -1;
      return buffer[i + 1] === 0x0a ? i + 2 : i + 1;
    }
  }
  return -1;
}
