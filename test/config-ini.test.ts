// Our configparser (src/main/config/ini.ts): hand-written and generated files read as
// python3's configparser reads them, and errors naming the file, the line and the key.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../src/main/config/errors.js";
import { DEFAULT_SECTION, type IniDocument, getOption, parseIni } from "../src/main/config/ini.js";
import { PY_ERROR_CODES, type PyFile, type PyValue, askOracle, oracleMissing, random } from "./config-oracle.js";

/** Our reading of `text` in the oracle's shape. */
function ours(text: string): PyFile {
  let doc: IniDocument;
  try {
    doc = parseIni(text, "test.conf");
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return { error: { type: error.code, lineno: error.line } };
  }
  const value = (section: string, key: string): PyValue => {
    try {
      return getOption(doc, section, key) as string;
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return { error: error.code };
    }
  };
  const defaults: Record<string, string> = {};
  for (const [key, o] of doc.defaults) defaults[key] = o.value;
  return {
    defaults,
    defaultValues: [...doc.defaults.keys()].map((k) => [k, value(DEFAULT_SECTION, k)]),
    sections: [...doc.sections.values()].map((s) => {
      const keys = new Set([...s.options.keys(), ...doc.defaults.keys()]);
      return [s.name, [...keys].sort().map((k): [string, PyValue] => [k, value(s.name, k)])];
    }),
  };
}

/** The oracle's answer with Python's class names turned into our codes, in our key order. */
function normalise(py: PyFile): PyFile {
  const code = (v: PyValue): PyValue => (typeof v === "string" ? v : { error: PY_ERROR_CODES[v.error] ?? v.error });
  if (py.error !== undefined) return { error: { type: PY_ERROR_CODES[py.error.type] ?? py.error.type, lineno: py.error.lineno } };
  return {
    defaults: py.defaults ?? {},
    defaultValues: (py.defaultValues ?? []).map(([k, v]) => [k, code(v)]),
    sections: (py.sections ?? []).map(([name, options]) => [
      name,
      [...options].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([k, v]): [string, PyValue] => [k, code(v)]),
    ]),
  };
}

const HAND_WRITTEN: Record<string, string> = {
  "key = value and key: value": "[s]\na = 1\nb: 2\nc=3\nd:4\ne = x = y\nf : a:b\n",
  "DEFAULT inheritance": "[DEFAULT]\nhost = h\n[s]\nx = 1\n[t]\nhost = other\n",
  "case-insensitive keys, case-sensitive sections": "[S]\nKey = 1\n[s]\nKEY = 2\n",
  "continuation lines": "[s]\na = first\n  second\n\tthird\nb = x\n",
  "continuation deeper than an indented option": "[s]\n  a = 1\n   more\n  b = 2\n",
  "empty lines inside values": "[s]\na = one\n\n  two\n\n\nb = 3\n",
  "comments": "# top\n; top\n[s]\n# c\na = 1\n  # indented comment, not a value line\n  b\n;c = 3\nd = 4 # not an inline comment\n",
  "empty value": "[s]\na =\nb:\n",
  "interpolation": "[DEFAULT]\nd = D\n[s]\nx = %(d)s-%(y)s-%%-%(Y)s\ny = why\n",
  "interpolation missing option": "[s]\nx = %(nope)s\n",
  "interpolation syntax, lone %": "[s]\nx = 100%\n",
  "interpolation syntax, %(name)d": "[s]\nx = %(y)d\ny = 1\n",
  "interpolation syntax, unclosed": "[s]\nx = %(y\n",
  "interpolation depth": "[s]\na = %(b)s\nb = %(c)s\nc = %(d)s\nd = %(e)s\ne = %(f)s\nf = %(g)s\ng = %(h)s\nh = %(i)s\ni = %(j)s\nj = %(k)s\nk = %(l)s\nl = %%\n",
  "interpolation at the depth limit": "[s]\na = %(b)s\nb = %(c)s\nc = %(d)s\nd = %(e)s\ne = %(f)s\nf = %(g)s\ng = %(h)s\nh = %(i)s\ni = %(j)s\nj = %%\n",
  "interpolation loop": "[s]\na = %(b)s\nb = %(a)s\n",
  "duplicate section": "[s]\na = 1\n[t]\n[s]\n",
  "duplicate option": "[s]\na = 1\nA = 2\n",
  "duplicate option in DEFAULT reopened": "[DEFAULT]\na = 1\n[DEFAULT]\na = 2\n",
  "DEFAULT reopened": "[DEFAULT]\na = 1\n[s]\n[DEFAULT]\nb = 2\n",
  "missing section header": "a = 1\n[s]\n",
  "parsing error": "[s]\na = 1\nno delimiter here\nb = 2\n",
  "empty option name": "[s]\n= 1\n",
  "empty option name twice": "[s]\n= 1\n: 2\n",
  "parsing error then duplicate": "[s]\njunk\n[s]\n",
  "section header with trailing text": "[s] trailing\na = 1\n[a]b]\n",
  "CRLF and CR line ends": "[s]\r\na = 1\r\n  more\rb = 2\r\n",
  "no final newline": "[s]\na = 1",
  "unicode white space": "[s]\n\u00a0a\u2003=\u3000v\u00a0\n\u001fb = 2\n",
  "BOM is not white space": "\ufeff[s]\na = 1\n",
  "empty file": "",
  "only comments": "# x\n\n; y\n",
  "indents and white space at the ends, ASCII and not": "[s]\na \t = v  \n  \tmore \t\n  \u00a0x\n  y \u00a0 \n \t \nb\t: 2\t\n\t\u3000c = 3\u2003\nd = \n  QUJD\n  REVG\n  Rw==  \n",
};

const missing = oracleMissing();

test("hand-written files read as python3's configparser reads them", { skip: missing }, () => {
  const names = Object.keys(HAND_WRITTEN);
  const answer = askOracle({ files: names.map((n) => HAND_WRITTEN[n] as string) });
  names.forEach((name, i) => {
    assert.deepEqual(ours(HAND_WRITTEN[name] as string), normalise(answer.files[i] as PyFile), name);
  });
});

function generateFile(next: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T;
  const names = ["a", "B", "host", "Timeout", "x y", "checker", "k"];
  const values = ["1", "", "v", "%(a)s", "%(b)s", "%%", "100%", "%(host)s!", "%(missing)s", "a = b", "x:y", "%(k)s%(a)s", "%(x y)s"];
  const indents = ["", "", "", " ", "  ", "\t", " \t"];
  const lines: string[] = [];
  const count = 1 + Math.floor(next() * 14);
  if (next() < 0.9) lines.push(pick(["[DEFAULT]", "[s]", "[t]", "[S]", " [s] "]));
  for (let i = 0; i < count; i++) {
    const kind = next();
    if (kind < 0.45) lines.push(`${pick(indents)}${pick(names)}${pick([" = ", "=", ": ", " :", "\t=\t"])}${pick(values)}${pick(["", " ", "\t"])}`);
    else if (kind < 0.6) lines.push(`${pick(indents.slice(3))}${pick(values)}`);
    else if (kind < 0.7) lines.push(pick(["", " ", "\t"]));
    else if (kind < 0.78) lines.push(`${pick(indents)}${pick(["#", ";"])} comment`);
    else if (kind < 0.92) lines.push(`${pick(indents)}${pick(["[DEFAULT]", "[s]", "[t]", "[u]", "[S]", "[]", "[x]y]"])}`);
    else lines.push(`${pick(indents)}${pick(["junk", "= v", "[unclosed"])}`);
  }
  return lines.join(pick(["\n", "\n", "\r\n"])) + pick(["\n", ""]);
}

test("generated files read as python3's configparser reads them", { skip: missing }, () => {
  const next = random(0x6d616e64);
  const files = Array.from({ length: 400 }, () => generateFile(next));
  const answer = askOracle({ files });
  files.forEach((text, i) => {
    assert.deepEqual(ours(text), normalise(answer.files[i] as PyFile), `generated file ${i}:\n${JSON.stringify(text)}`);
  });
});

test("errors name the file, the line and the key", () => {
  assert.throws(() => parseIni("[s]\na = 1\nA = 2\n", "/etc/mandos/clients.conf"), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, "CONFIG_DUPLICATE_OPTION");
    assert.equal(error.line, 3);
    assert.equal(error.key, "a");
    assert.match(error.message, /clients\.conf:3 \[s\] key "a"/);
    return true;
  });
  const doc = parseIni("[s]\n\nsecret = abc%zz\n", "c.conf");
  assert.throws(() => getOption(doc, "s", "secret"), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, "CONFIG_INTERPOLATION_SYNTAX");
    assert.equal(error.line, 3);
    assert.doesNotMatch(error.message, /abc|zz/);
    return true;
  });
});
