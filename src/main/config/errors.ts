// Configuration errors: one class with a stable code, and always the file,
// the line and (where there is one) the key, so that an admin can go
// straight to the mistake. Messages never include a secret's value.

export type ConfigErrorCode =
  | "CONFIG_UNREADABLE"
  | "CONFIG_MISSING_SECTION_HEADER"
  | "CONFIG_PARSE"
  | "CONFIG_DUPLICATE_SECTION"
  | "CONFIG_DUPLICATE_OPTION"
  | "CONFIG_INTERPOLATION_SYNTAX"
  | "CONFIG_INTERPOLATION_MISSING"
  | "CONFIG_INTERPOLATION_DEPTH"
  | "CONFIG_BAD_BOOLEAN"
  | "CONFIG_BAD_INTEGER"
  | "CONFIG_BAD_DURATION"
  | "CONFIG_BAD_SECRET"
  | "CONFIG_NO_SECRET"
  | "CONFIG_SECFILE"
  | "CONFIG_NO_KEY"
  | "CONFIG_DUPLICATE_KEY";

export class ConfigError extends Error {
  constructor(
    readonly code: ConfigErrorCode,
    readonly file: string,
    readonly line: number | null,
    readonly key: string | null,
    detail: string,
  ) {
    const where = line === null ? file : `${file}:${line}`;
    super(key === null ? `${where}: ${detail}` : `${where}: ${key}: ${detail}`);
    this.name = "ConfigError";
  }
}
