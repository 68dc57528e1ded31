// The Mandos protocol's first step: the client's version line (docs/PROTOCOL.md,
// step 2). The reference reads one line, takes its first white-space-separated
// field as a Python int() and refuses anything greater than 1.

export type VersionLineVerdict =
  | { readonly ok: true; readonly version: number }
  | { readonly ok: false; readonly reason: string };

// Python's int() on a str: optional sign, decimal digits with single
// underscores between them; surrounding white space is already split off.
const PYTHON_INT = /^[+-]?[0-9](?:_?[0-9])*$/;

/** Judges one line (without its terminator). Never echoes more than a short prefix. */
export function judgeVersionLine(line: string): VersionLineVerdict {
  const field = line.trim().split(/\s+/)[0] ?? "";
  if (field === "") return { ok: false, reason: "empty version line" };
  if (!PYTHON_INT.test(field)) {
    return { ok: false, reason: `invalid literal for int(): ${JSON.stringify(field.slice(0, 16))}` };
  }
  const version = Number(field.replace(/_/g, ""));
  if (version > 1) return { ok: false, reason: `unsupported protocol version ${field.slice(0, 16)}` };
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
