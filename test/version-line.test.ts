import { test } from "node:test";
import assert from "node:assert/strict";
import { findLineEnd, judgeVersionLine } from "../src/main/serve/version-line.js";

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

test("the line ends at the first newline", () => {
  assert.equal(findLineEnd(Buffer.from("1\r\nrest")), 3);
  assert.equal(findLineEnd(Buffer.from("1\r")), -1);
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
