// Python's repr() of a str, as the reference's `%r` writes names and the
// protocol line into its log: single quotes unless the text holds a single
// quote and no double one; backslash, the quote, \t \n \r escaped; what
// str.isprintable() calls unprintable as \xNN, \uNNNN or \UNNNNNNNN. So a
// peer's bytes never reach a log line raw.

const UNPRINTABLE = /[\p{C}\p{Z}]/u;

function escapeChar(ch: string): string {
  const code = ch.codePointAt(0)!;
  if (code < 0x100) return `\\x${code.toString(16).padStart(2, "0")}`;
  if (code < 0x10000) return `\\u${code.toString(16).padStart(4, "0")}`;
  return `\\U${code.toString(16).padStart(8, "0")}`;
}

export function pyRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of text) {
    if (ch === "\\") out += "\\\\";
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch !== " " && UNPRINTABLE.test(ch)) out += escapeChar(ch);
    else out += ch;
  }
  return out + quote;
}

/** A line as Python's text mode reads it: universal newlines ("\r\n" and "\r" become "\n"). */
export function pyTextLine(line: string): string {
  return line.replace(/\r\n?/g, "\n");
}

const NOT_PRINTABLE_ASCII = /[^\x20-\x7e]/gu;

/** Python's ascii(): repr() with every non-ASCII character escaped too, so the result is printable ASCII. */
export function pyAscii(text: string): string {
  return pyRepr(text).replace(NOT_PRINTABLE_ASCII, escapeChar);
}

/** Free text (not quoted) with every character outside printable ASCII escaped as ascii() escapes it. */
export function printableAscii(text: string): string {
  return text.replace(NOT_PRINTABLE_ASCII, escapeChar);
}
