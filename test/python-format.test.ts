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

// mandos-monitor reads Expires with strptime("%Y-%m-%dT%H:%M:%S.%f"), which
// refuses a time without a fraction; isoformat() writes none when the
// microseconds are 0, and our times (milliseconds) are so once in a
// thousand: mandos-monitor stopped with a ValueError on such a client.
test("D-Bus timestamps always carry their fraction, so mandos-monitor's strptime reads every one", async () => {
  const { timestampToDbus } = await import("../src/main/dbus/values.js");
  const { execFileSync } = await import("node:child_process");
  const whole = new Date(Date.UTC(2027, 0, 30, 11, 20, 15, 0));
  const some = new Date(Date.UTC(2027, 0, 30, 11, 20, 15, 8));
  assert.equal(timestampToDbus(whole), "2027-01-30T11:20:15.000000");
  assert.equal(timestampToDbus(some), "2027-01-30T11:20:15.008000");
  assert.equal(timestampToDbus(null), "");
  const script = 'import datetime, sys\nfor t in sys.argv[1:]: datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%f")';
  execFileSync("/usr/bin/python3", ["-c", script, timestampToDbus(whole), timestampToDbus(some)]);
});
