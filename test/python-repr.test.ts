// pyRepr against python3's own repr(), on names, protocol lines and the
// control and separator characters a hostile peer might send.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { pyRepr, pyTextLine } from "../src/main/python/repr.js";

const CASES = [
  "1\n", "client-00001", "it's", 'say "hi"', `both ' "`, "tab\there", "back\\slash", "",
  "\x00\x1b\x7f\x85\x9b", "é\u2028\u00a0\u{1F600}\u{E0001}\u200b\ufeff", "1 \u0085\u009b[31m", "日本語",
];

test("pyRepr writes what python3's repr() writes", () => {
  const script = "import json,sys; print(json.dumps([repr(s) for s in json.load(sys.stdin)]))";
  const expected = JSON.parse(execFileSync("python3", ["-c", script], { input: JSON.stringify(CASES), encoding: "utf8" })) as string[];
  assert.deepEqual(CASES.map(pyRepr), expected);
});

test("a line as Python's text mode reads it: universal newlines", () => {
  assert.equal(pyTextLine("1\r\n"), "1\n");
  assert.equal(pyTextLine("1\r"), "1\n");
  assert.equal(pyRepr(pyTextLine("1\r\n")), "'1\\n'");
});
