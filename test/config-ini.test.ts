// The configparser re-implementation, differentially against python3's own
// configparser (the reference server's parser) on hand-written files for
// every feature and error, and on a few hundred generated ones.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../src/main/config/errors.js";
import { interpolate, optionNames, parseIni } from "../src/main/config/ini.js";
import { REPO } from "./helpers/server.js";
import { executable } from "./helpers/peers.js";

const PYTHON = "/usr/bin/python3";
const DUMP = join(REPO, "test/data/config/configparser-dump.py");
const HAND = join(REPO, "test/data/config/ini");
const skip = executable(PYTHON) ? false : "python3 is missing";

const PY_ERROR: Record<string, string> = {
  CONFIG_MISSING_SECTION_HEADER: "MissingSectionHeaderError",
  CONFIG_PARSE: "ParsingError",
  CONFIG_DUPLICATE_SECTION: "DuplicateSectionError",
  CONFIG_DUPLICATE_OPTION: "DuplicateOptionError",
  CONFIG_INTERPOLATION_SYNTAX: "InterpolationSyntaxError",
  CONFIG_INTERPOLATION_MISSING: "InterpolationMissingOptionError",
  CONFIG_INTERPOLATION_DEPTH: "InterpolationDepthError",
};

type Dump = { ok: true; sections: Record<string, Array<[string, string]>>; defaults: Array<[string, string]> } | { ok: false; error: string };

function ours(path: string): Dump {
  try {
    const ini = parseIni(readFileSync(path, "utf8"), path);
    const sections: Record<string, Array<[string, string]>> = {};
    for (const name of ini.sections.keys()) {
      sections[name] = optionNames(ini, name).map((k) => [k, interpolate(ini, name, k)]);
    }
    return { ok: true, sections, defaults: [...ini.defaults].map(([k, v]) => [k, v.value]) };
  } catch (error) {
    if (error instanceof ConfigError) return { ok: false, error: PY_ERROR[error.code] ?? error.code };
    throw error;
  }
}

function python(paths: string[]): Dump[] {
  return JSON.parse(execFileSync(PYTHON, [DUMP], { input: JSON.stringify(paths), encoding: "utf8", maxBuffer: 64 << 20 })) as Dump[];
}

let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "mandos-ts-ini-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test("hand-written files: every feature and error class as configparser has it", { skip }, () => {
  const files = readdirSync(HAND).filter((f) => f.endsWith(".conf")).map((f) => join(HAND, f));
  assert.ok(files.length >= 10);
  const theirs = python(files);
  files.forEach((f, i) => assert.deepEqual(ours(f), theirs[i], f));
  // The set covers errors as well as successes.
  const kinds = new Set(theirs.map((d) => (d.ok ? "ok" : d.error)));
  for (const k of ["ok", "ParsingError", "MissingSectionHeaderError", "DuplicateSectionError", "DuplicateOptionError", "InterpolationSyntaxError", "InterpolationMissingOptionError", "InterpolationDepthError"]) {
    assert.ok(kinds.has(k), `no hand-written case for ${k}`);
  }
});

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generate(rand: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const keys = ["host", "Timeout", "secret", "a", "b", "key_id", "x y", "checker", "host", "a", "b"];
  const good = ["", "plain", "%(host)s", "%%(host)s", "50%%", "%(a)s-%(b)s", "[x]", "with : colon", "a=b", "  padded  ", "fping -q -- %%(host)s"];
  const bad = ["100%", "%(missing)s", "%("];
  const value = (): string => (rand() < 0.04 ? pick(bad) : pick(good));
  const lines: string[] = [];
  if (rand() < 0.9) lines.push(pick(["[DEFAULT]", "[one]"]));
  const n = 3 + Math.floor(rand() * 14);
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.12) lines.push(`[${pick(["one", "two", "DEFAULT", "Three", "one"])}]`);
    else if (r < 0.2) lines.push(pick(["# comment", "; comment", "   # indented comment", ""]));
    else if (r < 0.3) lines.push(`${pick(["  ", "\t", "    "])}${value()}`);
    else if (r < 0.31) lines.push(pick(["no delimiter here", " = nokey", "[unclosed"]));
    else lines.push(`${pick(keys)}${pick([" = ", "=", ": ", ":", " : "])}${value()}`);
  }
  return lines.join(pick(["\n", "\r\n"])) + (rand() < 0.8 ? "\n" : "");
}

test("300 generated files parse (or fail) exactly as configparser's", { skip }, () => {
  const rand = prng(20261122);
  const files: string[] = [];
  for (let i = 0; i < 300; i++) {
    const f = join(dir, `gen-${i}.conf`);
    writeFileSync(f, generate(rand));
    files.push(f);
  }
  const theirs = python(files);
  let oks = 0;
  files.forEach((f, i) => {
    assert.deepEqual(ours(f), theirs[i], `${f}:\n${readFileSync(f, "utf8")}`);
    if (theirs[i]!.ok) oks++;
  });
  // Both outcomes must be well represented for the comparison to mean much.
  assert.ok(oks > 30 && oks < 270, `${oks} of 300 parsed`);
});

test("errors name the file, the line and the key", () => {
  assert.throws(() => parseIni("[a]\nx = 1\nx = 2\n", "/etc/mandos/clients.conf"), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.code, "CONFIG_DUPLICATE_OPTION");
    assert.equal(e.line, 3);
    assert.equal(e.key, "x");
    assert.match(e.message, /^\/etc\/mandos\/clients\.conf:3: x: /);
    return true;
  });
  const ini = parseIni("[a]\nhost = %(nope)s\n", "f.conf");
  assert.throws(() => interpolate(ini, "a", "host"), { code: "CONFIG_INTERPOLATION_MISSING", line: 2, key: "host" });
});
