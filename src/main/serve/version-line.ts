// The Mandos protocol's first step: the client's version line (docs/PROTOCOL.md,
// step 2). The reference reads one line, takes its first white-space-separated
// field as a Python int() and refuses anything greater than 1.

import { pyRepr, pyTextLine } from "../daemon/python-repr.js";

export type VersionLineVerdict =
  | { readonly ok: true; readonly version: number }
  | { readonly ok: false; readonly reason: string };

// Python's int() on a str: optional sign, decimal digits with single
// underscores between them; surrounding white space is already split off.
const PYTHON_INT = /^[+-]?[0-9](?:_?[0-9])*$/;

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
  const field = line.trim().split(/\s+/)[0] ?? "";
  if (field === "") return { ok: false, reason: "list index out of range" };
  if (!PYTHON_INT.test(field)) {
    const quoted = field.length > QUOTED_FIELD_MAX ? `${pyRepr(field.slice(0, QUOTED_FIELD_MAX))}...` : pyRepr(field);
    return { ok: false, reason: `invalid literal for int() with base 10: ${quoted}` };
  }
  const version = Number(field.replace(/_/g, ""));
  // The reference's text ends with the line's own newline (an empty log line after it); ours does not.
  if (version > 1) return { ok: false, reason: printable(pyTextLine(line).replace(/\n$/, "").slice(0, QUOTED_FIELD_MAX)) };
  return { ok: true, version };
}

/**
 * Finds the end of the version line in `buffer`: the index just past its
 * "\n", or -1 if the line is not complete yet.
 */
export function findLineEnd(buffer: Buffer): number {
  const i = buffer.indexOf(0x0a);
  return i < 0 ? -1 : i + 1;
}
