// Python's shlex.quote as the checker's runtime expansion uses it: what is
// left bare and what is quoted, pinned to what Python 3 prints (non-ASCII
// word characters included, which re.ASCII does not count as safe).

import { test } from "node:test";
import assert from "node:assert/strict";
import { shellQuote } from "../src/main/clients/python-format.js";

test("shellQuote quotes as Python's shlex.quote does", () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["", "''"],
    ["abc_1", "abc_1"],
    ["x@y%z+=:,./-", "x@y%z+=:,./-"],
    ["a b", "'a b'"],
    ["it's", `'it'"'"'s'`],
    ["héllo", "'héllo'"],
    ["ünï", "'ünï'"],
    ["\u0661", "'\u0661'"],
  ];
  for (const [input, quoted] of cases) assert.equal(shellQuote(input), quoted, JSON.stringify(input));
});
