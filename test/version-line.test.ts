// The protocol's version line (src/main/serve/version-line.ts): what the reference accepts
// and refuses, line ends, UTF-8 and Unicode digits, python3 running its code as the oracle.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { findLineEnd, judgeVersionBytes, judgeVersionLine, utf8Error } from "../src/main/serve/version-line.js";

const PYTHON = "/usr/bin/python3";

test("version 1 and lower are accepted, as the reference's int(...) > 1 check", () => {
  for (const line of ["1\r", "1", " 1 extra words", "0", "-3", "+1", "0_1"]) {
    assert.equal(judgeVersionLine(line).ok, true, line);
  }
});

test("version 2, garbage and empty lines are refused", () => {
  for (const line of ["2\r", "10", "1_0", "x", "", "   ", "1.0", "__1", "1__0", "GET / HTTP/1.1\r"]) {
    assert.equal(judgeVersionLine(line).ok, false, line);
  }
});

test("the line ends as Python's text-mode readline() ends it: at \\n, \\r\\n, or \\r and anything else", () => {
  assert.equal(findLineEnd(Buffer.from("1\r\nrest")), 3);
  assert.equal(findLineEnd(Buffer.from("1\nrest")), 2);
  // A lone "\r" ends the line once the next byte shows it is not "\r\n".
  assert.equal(findLineEnd(Buffer.from("1\r")), -1);
  assert.equal(findLineEnd(Buffer.from("1\rx")), 2);
  assert.equal(findLineEnd(Buffer.from("1\r\r\n")), 2);
  assert.equal(findLineEnd(Buffer.from("1 ")), -1);
});

test("a refusal gives the reference's reason: its exception text", () => {
  const reason = (line: string): string => {
    const v = judgeVersionLine(line);
    assert.equal(v.ok, false, line);
    return v.ok ? "" : v.reason;
  };
  assert.equal(reason("\r\n"), "list index out of range");
  assert.equal(reason("x y\r\n"), "invalid literal for int() with base 10: 'x'");
  assert.equal(reason("it's\n"), `invalid literal for int() with base 10: "it's"`);
  assert.equal(reason("2\r\n"), "2");
  assert.equal(reason("2 \x1b[31m\r\n"), "'2 \\x1b[31m'");
  assert.equal(reason(`${"9".repeat(20)}x`.repeat(10)), `invalid literal for int() with base 10: '${`${"9".repeat(20)}x`.repeat(10).slice(0, 64)}'...`);
});

test("the line is UTF-8, as the reference's text-mode file decodes it; other bytes are refused in Python's words", () => {
  const judged = judgeVersionBytes(Buffer.from("\xc3\xa9\r\n", "latin1"));
  assert.deepEqual(judged, { ok: false, reason: "invalid literal for int() with base 10: 'é'", line: "é\r\n" });
  const bad = judgeVersionBytes(Buffer.from("1 \xff\r\n", "latin1"));
  assert.deepEqual(bad, { ok: false, reason: "'utf-8' codec can't decode byte 0xff in position 2: invalid start byte", line: "1 \xff\r\n" });
  // A byte order mark is a character like any other (TextDecoder would drop it).
  assert.equal(judgeVersionBytes(Buffer.from("\ufeff1\r\n")).ok, false);
  assert.equal(judgeVersionBytes(Buffer.from("1\r\n")).line, "1\r\n");
});

test("Unicode digits and white space count as Python's int() and split() count them", () => {
  assert.deepEqual(judgeVersionBytes(Buffer.from("\uff11\r\n")), { ok: true, version: 1, line: "\uff11\r\n" });
  assert.equal(judgeVersionBytes(Buffer.from("1\u00a0x\r\n")).ok, true);
  assert.equal(judgeVersionBytes(Buffer.from("\x1c1\r\n")).ok, true);
  // ARABIC-INDIC DIGIT TWO is a 2: refused, quoted with the line.
  assert.deepEqual(judgeVersionBytes(Buffer.from("\u0662\n")), { ok: false, reason: "'\u0662'", line: "\u0662\n" });
  // MATHEMATICAL MONOSPACE DIGIT ONE and TWO follow four other rows of mathematical digits.
  assert.deepEqual(judgeVersionBytes(Buffer.from("\u{1d7f6}\u{1d7f7}\n")), { ok: true, version: 1, line: "\u{1d7f6}\u{1d7f7}\n" });
  assert.deepEqual(judgeVersionBytes(Buffer.from("\u{1d7f8}\n")), { ok: false, reason: "'\u{1d7f8}'", line: "\u{1d7f8}\n" });
  assert.equal(judgeVersionBytes(Buffer.from("\u{1d7f6}__\u{1d7f7}\n")).ok, false);
});

/** Lines in bytes (latin1 strings), each judged by us and by the reference's own code in python3. */
const SAMPLES = [
  "1\r\n", "1\n", "1\r", "1", "", "2\r\n", " 1 x\r\n", "x\r\n", "\r\n", "+1_0\r\n", "0_1\r\n",
  "\xef\xbc\x91\r\n", "\xef\xbc\x92\r\n", "1\xc2\xa0x\r\n", "\xc2\xa01\r\n", "\x1c1\x1f\r\n", "\xc2\x851\r\n",
  "\xef\xbb\xbf1\r\n", "\xd9\xa1\xd9\xa0\r\n", "\xd9\xa0\xd9\xa1\r\n", "-\xd9\xa2\r\n", "\xe0\xa5\xa7\r\n", "\xf0\x9d\x9f\x8f\r\n",
  "\xc3\xa9\r\n", "\xff\r\n", "1 \xc3\r\n", "1 \xe2\x82\r\n", "\xe2\x82", "\xed\xa0\x80\r\n", "\xf4\x90\x80\x80\r\n", "\xc0\xaf\r\n", "\xf0\x9f\x98",
];

test("each sample line is judged as the reference's own code judges it (python3 as the oracle)", { skip: existsSync(PYTHON) ? false : "no python3" }, () => {
  // The reference's handle(): readline() on a text-mode file (UTF-8,
  // universal newlines), then int(line.strip().split()[0]) > 1.
  const script = [
    "import io, json, sys",
    "out = []",
    "for sample in json.loads(sys.stdin.read()):",
    "    data = sample.encode('latin-1')",
    "    try:",
    "        line = io.TextIOWrapper(io.BytesIO(data), encoding='utf-8').readline()",
    "    except UnicodeDecodeError as error:",
    "        out.append(['decode', str(error)]); continue",
    "    try:",
    "        if int(line.strip().split()[0]) > 1:",
    "            raise RuntimeError(line)",
    "        out.append(['ok', line])",
    "    except (ValueError, IndexError, RuntimeError) as error:",
    "        out.append(['refused', line])",
    "print(json.dumps(out))",
  ].join("\n");
  const python = JSON.parse(execFileSync(PYTHON, ["-c", script], { input: JSON.stringify(SAMPLES) }).toString("utf8")) as Array<[string, string]>;
  for (const [i, sample] of SAMPLES.entries()) {
    const bytes = Buffer.from(sample, "latin1");
    const end = findLineEnd(bytes);
    // A line with no end yet is judged at the end of the stream, whole.
    const ours = judgeVersionBytes(end < 0 ? bytes : bytes.subarray(0, end));
    const [verdict, text] = python[i]!;
    const name = JSON.stringify(sample);
    if (verdict === "decode") {
      assert.deepEqual({ ok: ours.ok, reason: ours.ok ? "" : ours.reason }, { ok: false, reason: text }, name);
      continue;
    }
    assert.equal(ours.ok, verdict === "ok", name);
    // Python's line is universal-newline text: "\r\n" and "\r" read as "\n".
    assert.equal(ours.line.replace(/\r\n?/g, "\n"), text, name);
  }
});

test("utf8Error names the first bad byte, or the run of them, as Python's UnicodeDecodeError does", () => {
  assert.equal(utf8Error(Buffer.from("1\r\n")), null);
  assert.equal(utf8Error(Buffer.from("\u{1f600}")), null);
  assert.equal(utf8Error(Buffer.from("\xe2\x82x", "latin1")), "'utf-8' codec can't decode bytes in position 0-1: invalid continuation byte");
  assert.equal(utf8Error(Buffer.from("ab\xed\xa0\x80", "latin1")), "'utf-8' codec can't decode byte 0xed in position 2: invalid continuation byte");
  assert.equal(utf8Error(Buffer.from("\xe2\x82", "latin1")), "'utf-8' codec can't decode bytes in position 0-1: unexpected end of data");
});
