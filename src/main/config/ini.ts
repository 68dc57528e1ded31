// The INI dialect of Python's configparser.ConfigParser with its defaults
// (strict, BasicInterpolation, `=`/`:` delimiters, `#`/`;` full-line
// comments only, empty lines allowed inside values), as the reference
// server reads mandos.conf and clients.conf. The reference for every rule
// here is python3's Lib/configparser.py (`RawConfigParser._read`,
// `BasicInterpolation._interpolate_some`); test/config-differential.test.ts
// holds us to it.
//
// Theory of operation: the file is split into lines (universal newlines, as
// Python's text mode); each line is a comment, an empty line, a
// continuation (indented deeper than the line that opened the current
// option), a section header or an option. Values are kept raw with the line
// they started on; interpolation happens on reading a value, as in Python.

import { ConfigError } from "./errors.js";

/** The section every other section inherits from (configparser's `default_section`). */
export const DEFAULT_SECTION = "DEFAULT";

/** configparser's MAX_INTERPOLATION_DEPTH: nesting deeper than this is an error. */
export const MAX_INTERPOLATION_DEPTH = 10;

/**
 * Python's str.isspace() characters: what str.strip() and the regex `\s`
 * (on str) treat as white space. JavaScript's `\s` differs (it has U+FEFF,
 * lacks U+001C..U+001F and U+0085), so we spell Python's out.
 */
const PY_WS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const STRIP_RE = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, "g");
const RSTRIP_RE = new RegExp(`[${PY_WS}]+$`);
const WS_CHAR_RE = new RegExp(`^[${PY_WS}]$`);

/** Where the first non-white-space character is (configparser's NONSPACECRE search). */
function indentOf(line: string): number {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 0x20 || c === 0x09) continue;
    if (c > 0x20 && c < 0x7f) return i;
    if (!WS_CHAR_RE.test(line.charAt(i))) return i;
  }
  return 0;
}
/** configparser's SECTCRE, matched against the stripped line. */
const SECTION_RE = /^\[(.+)\]/s;
/** BasicInterpolation's _KEYCRE. */
const KEY_RE = /^%\(([^)]+)\)s/;

export function pyStrip(s: string): string {
  // Fast path: printable ASCII at both ends is never white space; nor
  // after an indent of spaces and tabs (a continuation line's, such as
  // each line of a secret: 500,000 lines in a fleet's clients.conf).
  if (s.length === 0) return s;
  const last = s.charCodeAt(s.length - 1);
  if (last > 0x20 && last < 0x7f) {
    let start = 0;
    let first = s.charCodeAt(0);
    while (first === 0x20 || first === 0x09) first = s.charCodeAt(++start);
    if (first > 0x20 && first < 0x7f) return start === 0 ? s : s.slice(start);
  }
  return s.replace(STRIP_RE, "");
}

/** Python white space among ASCII: \t \n \v \f \r, \x1c-\x1f and the space. */
function isAsciiSpace(c: number): boolean {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
}

/**
 * The text without Python white space at its end (RSTRIP_RE): ASCII white
 * space before printable ASCII is looked at first (a value followed by an
 * empty line ends in "\n"; the regular expression tried each of a
 * secret's line ends).
 */
function pyRstrip(s: string): string {
  let end = s.length;
  let last = s.charCodeAt(end - 1);
  while (isAsciiSpace(last)) last = s.charCodeAt(--end - 1);
  if (end === 0) return "";
  if (last > 0x20 && last < 0x7f) return end === s.length ? s : s.slice(0, end);
  return s.replace(RSTRIP_RE, "");
}

/**
 * configparser's OPTCRE with delimiters `=` and `:` (`(.*?)\s*(=|:)\s*(.*)$`):
 * the lazy option group ends at the first delimiter, so the option is what
 * precedes it and the value what follows, white space trimmed.
 */
function splitOption(line: string): [string, string] | undefined {
  const equals = line.indexOf("=");
  const colon = line.indexOf(":");
  const at = equals < 0 ? colon : colon < 0 ? equals : Math.min(equals, colon);
  if (at < 0) return undefined;
  return [pyRstrip(line.slice(0, at)), pyStrip(line.slice(at + 1))];
}

export interface IniOption {
  /** The raw value: lines joined with "\n", trailing white space removed. */
  readonly value: string;
  /** The line the option starts on. */
  readonly line: number;
}

/** An option while its lines are read; closed in place into an IniOption. */
interface OpenOption {
  value: string;
  line: number;
  /** Continuation and empty lines, when there are any. */
  more?: string[];
}

export interface IniSection {
  readonly name: string;
  readonly line: number;
  /** Options by lowercased name, in file order. */
  readonly options: ReadonlyMap<string, IniOption>;
}

export interface IniDocument {
  readonly file: string;
  readonly defaults: ReadonlyMap<string, IniOption>;
  /** Sections other than DEFAULT, by their case-sensitive name, in file order. */
  readonly sections: ReadonlyMap<string, IniSection>;
}

/**
 * Parses `text` as ConfigParser.read_string does, on top of `defaults`
 * (the ConfigParser constructor's defaults, which a file may override).
 * Throws ConfigError for what configparser raises.
 */
export function parseIni(text: string, file: string, defaults: Readonly<Record<string, string>> = {}): IniDocument {
  const defaultOptions = new Map<string, OpenOption>();
  for (const [key, value] of Object.entries(defaults)) defaultOptions.set(key.toLowerCase(), { value, line: 0 });
  const sections = new Map<string, { name: string; line: number; options: Map<string, OpenOption> }>();
  // configparser's `elements_added`: the sections, and DEFAULT's options, seen
  // in this file (a section opens only once, so its own map tells the rest).
  const seenSections = new Set<string>();
  const seenDefaults = new Set<string>();
  let current: Map<string, OpenOption> | undefined;
  let sectionName = "";
  let option: OpenOption | undefined; // configparser's `optname`, when truthy
  let indentLevel = 0;
  // configparser reports a malformed line only at the end of the file.
  let deferred: ConfigError | undefined;

  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    const lineNo = i + 1;
    const value = pyStrip(raw);
    if (value.startsWith("#") || value.startsWith(";")) continue; // full-line comment
    if (value === "") {
      // Empty lines belong to the value being read (joined, then stripped at its end).
      if (current !== undefined && option !== undefined) (option.more ??= []).push("");
      continue;
    }
    const indent = indentOf(raw);
    if (current !== undefined && option !== undefined && indent > indentLevel) {
      (option.more ??= []).push(value);
      continue;
    }
    indentLevel = indent;
    const header = SECTION_RE.exec(value);
    if (header !== null) {
      sectionName = header[1] as string;
      if (sectionName === DEFAULT_SECTION) {
        current = defaultOptions;
      } else {
        if (seenSections.has(sectionName)) {
          throw new ConfigError("CONFIG_DUPLICATE_SECTION", { file, line: lineNo, section: sectionName }, "section already exists");
        }
        seenSections.add(sectionName);
        const section = { name: sectionName, line: lineNo, options: new Map<string, OpenOption>() };
        sections.set(sectionName, section);
        current = section.options;
      }
      option = undefined;
      continue;
    }
    if (current === undefined) {
      throw new ConfigError("CONFIG_MISSING_SECTION_HEADER", { file, line: lineNo }, "file contains no section headers");
    }
    const match = splitOption(value);
    if (match === undefined) {
      deferred ??= new ConfigError("CONFIG_PARSING_ERROR", { file, line: lineNo, section: sectionName }, "line is neither an option, a section header nor a comment");
      continue;
    }
    const name = match[0].toLowerCase();
    if (name === "") {
      deferred ??= new ConfigError("CONFIG_PARSING_ERROR", { file, line: lineNo, section: sectionName }, "option without a name");
    }
    const seen = current === defaultOptions ? seenDefaults.has(name) : current.has(name);
    if (seen) {
      throw new ConfigError("CONFIG_DUPLICATE_OPTION", { file, line: lineNo, section: sectionName, key: name }, "option already exists in this section");
    }
    if (current === defaultOptions) seenDefaults.add(name);
    const opened: OpenOption = { value: match[1], line: lineNo };
    current.set(name, opened);
    // An empty name is falsy in Python: no continuation lines attach to it.
    option = name === "" ? undefined : opened;
  }
  if (deferred !== undefined) throw deferred;

  const close = (options: Map<string, OpenOption>): void => {
    for (const o of options.values()) {
      if (o.more === undefined) continue;
      o.value = pyRstrip(`${o.value}\n${o.more.join("\n")}`);
      delete o.more;
    }
  };
  close(defaultOptions);
  for (const s of sections.values()) close(s.options);
  return { file, defaults: defaultOptions, sections };
}

/** The raw option `key` of `section` (or of DEFAULT) as configparser looks it up, or undefined. */
export function rawOption(doc: IniDocument, section: string, key: string): IniOption | undefined {
  const own = section === DEFAULT_SECTION ? undefined : doc.sections.get(section)?.options.get(key);
  return own ?? doc.defaults.get(key);
}

/**
 * The value of `key` in `section` after BasicInterpolation: `%(name)s` from
 * the same section or DEFAULT, recursively up to MAX_INTERPOLATION_DEPTH;
 * `%%` is `%`. Returns undefined when the option is absent.
 */
export function getOption(doc: IniDocument, section: string, key: string): string | undefined {
  const option = rawOption(doc, section, key);
  return option === undefined ? undefined : interpolated(doc, section, key, option);
}

/** `option`, the raw value of `key` as `section` sees it, after BasicInterpolation (getOption). */
function interpolated(doc: IniDocument, section: string, key: string, option: IniOption): string {
  if (!option.value.includes("%")) return option.value;
  const place = { file: doc.file, line: option.line, section, key };
  const out: string[] = [];
  const expand = (text: string, depth: number): void => {
    if (depth > MAX_INTERPOLATION_DEPTH) {
      throw new ConfigError("CONFIG_INTERPOLATION_DEPTH", place, `interpolation nested deeper than ${MAX_INTERPOLATION_DEPTH}`);
    }
    let rest = text;
    while (rest !== "") {
      const p = rest.indexOf("%");
      if (p < 0) {
        out.push(rest);
        return;
      }
      if (p > 0) {
        out.push(rest.slice(0, p));
        rest = rest.slice(p);
      }
      const c = rest.charAt(1);
      if (c === "%") {
        out.push("%");
        rest = rest.slice(2);
      } else if (c === "(") {
        const m = KEY_RE.exec(rest);
        if (m === null) throw new ConfigError("CONFIG_INTERPOLATION_SYNTAX", place, "bad interpolation variable reference");
        const name = (m[1] as string).toLowerCase();
        rest = rest.slice(m[0].length);
        const referenced = rawOption(doc, section, name);
        if (referenced === undefined) {
          throw new ConfigError("CONFIG_INTERPOLATION_MISSING_OPTION", place, `bad interpolation: no option "${name}" in this section or DEFAULT`);
        }
        if (referenced.value.includes("%")) expand(referenced.value, depth + 1);
        else out.push(referenced.value);
      } else {
        throw new ConfigError("CONFIG_INTERPOLATION_SYNTAX", place, "'%' must be followed by '%' or '('");
      }
    }
  };
  expand(option.value, 1);
  return out.join("");
}

/** Every option of `section`, its own and DEFAULT's, interpolated (configparser's `items(section)`). */
export function sectionItems(doc: IniDocument, section: string): Map<string, string> {
  // DEFAULT's keys first, then the section's others (configparser's order),
  // each option looked up once: a fleet's start does this for every client.
  const own = section === DEFAULT_SECTION ? undefined : doc.sections.get(section)?.options;
  const out = new Map<string, string>();
  for (const [key, option] of doc.defaults) out.set(key, interpolated(doc, section, key, own?.get(key) ?? option));
  if (own !== undefined) {
    for (const [key, option] of own) if (!out.has(key)) out.set(key, interpolated(doc, section, key, option));
  }
  return out;
}
