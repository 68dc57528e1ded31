// Python's configparser.ConfigParser (3.11, its defaults) re-done for our
// two files: the same sections, options, continuation lines, comments,
// DEFAULT inheritance and BasicInterpolation, with the same errors, and the
// line of every option kept for error messages. Differentially tested
// against python3's own configparser (test/config-ini.test.ts).
//
// Theory (configparser.RawConfigParser._read): lines are read one by one;
// a line whose stripped text starts with '#' or ';' is a comment; an empty
// line joins the current value as an empty line; a line indented deeper
// than the current option's line continues its value; otherwise it is a
// section header "[name]" or an option "key = value" / "key: value". Keys
// are lowercased; values are stripped and, when multi-line, joined with
// "\n" and right-stripped at the end.

import { ConfigError } from "./errors.js";

export interface IniOption {
  /** The raw value, before interpolation. */
  readonly value: string;
  /** Line of the option's key (1-based). */
  readonly line: number;
}

export type IniSection = Map<string, IniOption>;

export interface IniFile {
  readonly file: string;
  readonly defaults: IniSection;
  /** Sections in file order; DEFAULT is not among them. */
  readonly sections: Map<string, IniSection>;
  readonly sectionLines: Map<string, number>;
}

const DEFAULT_SECTION = "DEFAULT";
// RawConfigParser._SECT_TMPL and _OPT_TMPL with the default delimiters.
const SECTION_RE = /^\[(.+)\]/s;
const OPTION_RE = /^(.*?)\s*([=:])\s*(.*)$/s;

interface Building {
  lines: string[];
  line: number;
}

/** Parses `text` as configparser does; throws ConfigError naming `file` and the line. */
export function parseIni(text: string, file: string, initialDefaults: Readonly<Record<string, string>> = {}): IniFile {
  const defaults: Map<string, Building> = new Map();
  for (const [k, v] of Object.entries(initialDefaults)) defaults.set(k.toLowerCase(), { lines: [v], line: 0 });
  const sections = new Map<string, Map<string, Building>>();
  const sectionLines = new Map<string, number>();
  const added = new Set<string>();
  let current: Map<string, Building> | null = null;
  let sectionName = "";
  let option: string | null = null;
  let indentLevel = 0;
  const errors: Array<{ line: number; text: string }> = [];

  // Universal newlines, as Python's text-mode open() gives them.
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();

  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!;
    const stripped = pyStrip(line);
    const isComment = stripped.startsWith("#") || stripped.startsWith(";");
    const value = isComment ? "" : stripped;
    if (value === "") {
      // empty_lines_in_values: an empty (non-comment) line joins the value.
      if (!isComment && current !== null && option) {
        const opt = current.get(option);
        if (opt) opt.lines.push("");
      }
      continue;
    }
    const curIndent = firstNonSpace(line);
    if (current !== null && option && curIndent > indentLevel) {
      current.get(option)?.lines.push(value);
      continue;
    }
    indentLevel = curIndent;
    const header = SECTION_RE.exec(value);
    if (header) {
      const name = header[1]!;
      if (sections.has(name)) {
        if (added.has(`s:${name}`)) {
          throw new ConfigError("CONFIG_DUPLICATE_SECTION", file, lineNo, null, `section ${pyRepr(name)} already exists`);
        }
        current = sections.get(name)!;
        added.add(`s:${name}`);
      } else if (name === DEFAULT_SECTION) {
        current = defaults;
      } else {
        current = new Map();
        sections.set(name, current);
        sectionLines.set(name, lineNo);
        added.add(`s:${name}`);
      }
      sectionName = name;
      option = null;
      continue;
    }
    if (current === null) {
      throw new ConfigError("CONFIG_MISSING_SECTION_HEADER", file, lineNo, null, `file contains no section headers; line ${pyRepr(line)}`);
    }
    const opt = OPTION_RE.exec(value);
    if (!opt) {
      // configparser keeps going and reports all bad lines at the end.
      errors.push({ line: lineNo, text: line });
      continue;
    }
    // An empty key is an error too, yet configparser stores it (as "").
    if (opt[1] === "") errors.push({ line: lineNo, text: line });
    const key = pyRstrip(opt[1]!).toLowerCase();
    if (added.has(`o:${sectionName}\0${key}`)) {
      throw new ConfigError(
        "CONFIG_DUPLICATE_OPTION",
        file,
        lineNo,
        key,
        `option ${pyRepr(key)} in section ${pyRepr(sectionName)} already exists`,
      );
    }
    added.add(`o:${sectionName}\0${key}`);
    option = key;
    current.set(key, { lines: [pyStrip(opt[3]!)], line: lineNo });
  }
  if (errors.length > 0) {
    const first = errors[0]!;
    throw new ConfigError(
      "CONFIG_PARSE",
      file,
      first.line,
      null,
      `not a section header, option or comment: ${pyRepr(first.text)}` +
        (errors.length > 1 ? ` (and ${errors.length - 1} more bad line${errors.length > 2 ? "s" : ""}: ${errors.slice(1).map((e) => e.line).join(", ")})` : ""),
    );
  }
  const join = (m: Map<string, Building>): IniSection => {
    const out: IniSection = new Map();
    for (const [k, b] of m) out.set(k, { value: b.lines.length === 1 ? b.lines[0]! : pyRstrip(b.lines.join("\n")), line: b.line });
    return out;
  };
  return {
    file,
    defaults: join(defaults),
    sections: new Map([...sections].map(([k, m]) => [k, join(m)])),
    sectionLines,
  };
}

// Python's str.isspace() also holds for \x1c-\x1f (and not for U+FEFF,
// which JavaScript's trim() removes; a BOM inside a config value is not a
// case worth a slower path).
function isPyExtraSpace(c: number): boolean {
  return c >= 0x1c && c <= 0x1f;
}

/** Python str.strip() with no argument. */
function pyStrip(s: string): string {
  let t = s.trim();
  while (t.length > 0 && (isPyExtraSpace(t.charCodeAt(0)) || isPyExtraSpace(t.charCodeAt(t.length - 1)))) {
    t = (isPyExtraSpace(t.charCodeAt(0)) ? t.slice(1) : t.slice(0, -1)).trim();
  }
  return t;
}

function pyRstrip(s: string): string {
  let t = s.trimEnd();
  while (t.length > 0 && isPyExtraSpace(t.charCodeAt(t.length - 1))) t = t.slice(0, -1).trimEnd();
  return t;
}

/** Index of the first non-white-space character (configparser's NONSPACECRE), or 0. */
function firstNonSpace(line: string): number {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && !(c >= 0x0a && c <= 0x0d) && !isPyExtraSpace(c) && line[i]!.trim() !== "") return i;
  }
  return 0;
}

/** Roughly Python's repr() of a str, for messages. */
export function pyRepr(s: string): string {
  return s.includes("'") && !s.includes('"') ? `"${s}"` : `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/** configparser.MAX_INTERPOLATION_DEPTH. */
const MAX_DEPTH = 10;
const KEY_RE = /^%\(([^)]+)\)s/;

/**
 * BasicInterpolation.before_get: the value of `key` in `section` ("" for
 * DEFAULT), with `%(name)s` taken from that section or DEFAULT and `%%`
 * as a literal `%`.
 */
export function interpolate(ini: IniFile, section: string, key: string): string {
  const own = section === "" ? ini.defaults : ini.sections.get(section);
  const lookup = (name: string): IniOption | undefined => own?.get(name) ?? ini.defaults.get(name);
  const opt = lookup(key);
  if (!opt) throw new Error(`no option ${key}`);
  const out: string[] = [];
  expand(ini.file, opt.line, key, section, opt.value, lookup, out, 1);
  return out.join("");
}

function expand(
  file: string,
  line: number,
  key: string,
  section: string,
  raw: string,
  lookup: (name: string) => IniOption | undefined,
  out: string[],
  depth: number,
): void {
  if (depth > MAX_DEPTH) {
    throw new ConfigError("CONFIG_INTERPOLATION_DEPTH", file, line || null, key, `recursion limit exceeded in value substitution`);
  }
  let rest = raw;
  while (rest.length > 0) {
    const p = rest.indexOf("%");
    if (p < 0) {
      out.push(rest);
      return;
    }
    if (p > 0) {
      out.push(rest.slice(0, p));
      rest = rest.slice(p);
    }
    const c = rest.slice(1, 2);
    if (c === "%") {
      out.push("%");
      rest = rest.slice(2);
    } else if (c === "(") {
      const m = KEY_RE.exec(rest);
      if (!m) {
        throw new ConfigError("CONFIG_INTERPOLATION_SYNTAX", file, line || null, key, `bad interpolation variable reference ${pyRepr(rest)}`);
      }
      const name = m[1]!.toLowerCase();
      rest = rest.slice(m[0].length);
      const ref = lookup(name);
      if (!ref) {
        throw new ConfigError(
          "CONFIG_INTERPOLATION_MISSING",
          file,
          line || null,
          key,
          `bad value substitution: section [${section || DEFAULT_SECTION}] refers to missing option ${pyRepr(name)}`,
        );
      }
      if (ref.value.includes("%")) expand(file, line, key, section, ref.value, lookup, out, depth + 1);
      else out.push(ref.value);
    } else {
      throw new ConfigError(
        "CONFIG_INTERPOLATION_SYNTAX",
        file,
        line || null,
        key,
        `'%' must be followed by '%' or '(', found: ${pyRepr(rest)}`,
      );
    }
  }
}

/** Option names visible in a section: its own and DEFAULT's, as configparser.items() lists them. */
export function optionNames(ini: IniFile, section: string): string[] {
  const own = ini.sections.get(section);
  const names = new Set<string>(ini.defaults.keys());
  if (own) for (const k of own.keys()) names.add(k);
  return [...names];
}

/** Where an option was set: its section's line, else DEFAULT's (0 for built-in defaults). */
export function optionLine(ini: IniFile, section: string, key: string): number | null {
  const opt = ini.sections.get(section)?.get(key) ?? ini.defaults.get(key);
  return opt && opt.line > 0 ? opt.line : null;
}

const BOOLEANS: Readonly<Record<string, boolean>> = {
  "1": true, yes: true, true: true, on: true,
  "0": false, no: false, false: false, off: false,
};

/** RawConfigParser._convert_to_boolean. */
export function toBoolean(value: string, file: string, line: number | null, key: string): boolean {
  const b = BOOLEANS[value.toLowerCase()];
  if (b === undefined) throw new ConfigError("CONFIG_BAD_BOOLEAN", file, line, key, `not a boolean: ${pyRepr(value)} (use yes/no, true/false, on/off, 1/0)`);
  return b;
}

/** Python int() of a str. */
export function toInteger(value: string, file: string, line: number | null, key: string): number {
  const v = pyStrip(value);
  if (!/^[+-]?[0-9](?:_?[0-9])*$/.test(v)) {
    throw new ConfigError("CONFIG_BAD_INTEGER", file, line, key, `invalid literal for int() with base 10: ${pyRepr(value)}`);
  }
  return Number(v.replace(/_/g, ""));
}
