// Configuration errors: one class, a stable `code` per failure, and always
// the file, line and key at fault. Messages never carry a value of `secret`
// (callers pass only what is safe to show).

export type ConfigErrorCode =
  | "CONFIG_UNREADABLE"
  | "CONFIG_MISSING_SECTION_HEADER"
  | "CONFIG_PARSING_ERROR"
  | "CONFIG_DUPLICATE_SECTION"
  | "CONFIG_DUPLICATE_OPTION"
  | "CONFIG_INTERPOLATION_SYNTAX"
  | "CONFIG_INTERPOLATION_MISSING_OPTION"
  | "CONFIG_INTERPOLATION_DEPTH"
  | "CONFIG_BAD_BOOLEAN"
  | "CONFIG_BAD_INTEGER"
  | "CONFIG_BAD_DURATION"
  | "CONFIG_BAD_SECRET"
  | "CONFIG_BAD_TEXT"
  | "CONFIG_NO_SECRET"
  | "CONFIG_SECFILE_UNREADABLE";

export interface ConfigErrorPlace {
  readonly file: string;
  /** 1-based line in `file`; 0 when the fault has no line (an unreadable file). */
  readonly line: number;
  /** The section, when one is at fault. */
  readonly section?: string;
  /** The option (lowercased), when one is at fault. */
  readonly key?: string;
}

/** `FILE:LINE [SECTION] key "KEY"`: how every error names its place, here and where a value is checked later (server-settings.ts). */
export function placeText(place: ConfigErrorPlace): string {
  const where = [`${place.file}:${place.line}`];
  if (place.section !== undefined) where.push(`[${visible(place.section)}]`);
  if (place.key !== undefined) where.push(`key "${visible(place.key)}"`);
  return where.join(" ");
}

/** A name from the file with its control characters (a NUL, an escape sequence) as \xNN: a log line is not a terminal's input. */
function visible(text: string): string {
  let out = "";
  for (const c of text) {
    const code = c.charCodeAt(0);
    out += code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, "0")}` : c;
  }
  return out;
}

export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  readonly file: string;
  readonly line: number;
  readonly section: string | undefined;
  readonly key: string | undefined;

  constructor(code: ConfigErrorCode, place: ConfigErrorPlace, detail: string) {
    super(`${placeText(place)}: ${detail}`);
    this.name = "ConfigError";
    this.code = code;
    this.file = place.file;
    this.line = place.line;
    this.section = place.section;
    this.key = place.key;
  }
}
