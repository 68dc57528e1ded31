// Python's shlex.quote as the checker's runtime expansion uses it: what is
// left bare and what is quoted, pinned to what Python 3 prints (non-ASCII
// word characters included, which re.ASCII does not count as safe).

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { percentFormat, shellQuote } from "../src/main/clients/python-format.js";
import { missing } from "./helpers/peers.js";

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

// The checker string's errors in Python's own words (found by an audit: a
// trailing "%" read "unsupported format character at index 8", where the
// reference's log says "incomplete format"): each template formatted by
// python3 itself and by percentFormat, the results or the messages equal.
test("percentFormat formats, and fails, as Python's % does", { skip: missing("/usr/bin/python3") }, () => {
  const mapping = new Map([["host", "hh"], ["name", "a b"], ["x", "y"]]);
  const templates = [
    "fping -q -- %(host)s", "echo 100%", "echo %(host)", "echo %(host)s%", "echo %(host", "%(host)d", "%(host)i", "%(host)x", "%(host)f",
    "%(host)y", "%(host)-5", "%(host)5.1s|", "%(host)-4r|", "%(name)a", "%(x)c", "%(host)c", "%(host)ls", "%(host)*s", "%(host)%", "%(host)\u00e9",
    "%(ho(s)t)s", "%%(host)s %(host)s %%", "%(nope)s",
  ];
  const python = JSON.parse(execFileSync("python3", ["-c", [
    "import json, sys",
    "m = json.loads(sys.argv[1])",
    "out = []",
    "for t in json.loads(sys.argv[2]):",
    "    try: out.append(['ok', t % m])",
    "    except KeyError as e: out.append(['key', e.args[0]])",
    "    except (ValueError, TypeError) as e: out.append(['error', str(e)])",
    "print(json.dumps(out))",
  ].join("\n"), JSON.stringify(Object.fromEntries(mapping)), JSON.stringify(templates)]).toString("utf8")) as Array<[string, string]>;
  templates.forEach((template, n) => {
    const [kind, expected] = python[n]!;
    let ours: [string, string];
    try {
      ours = ["ok", percentFormat(template, mapping)];
    } catch (error) {
      const message = (error as Error).message;
      const key = /^unknown key "(.*)" in /.exec(message);
      ours = key ? ["key", key[1]!] : ["error", message.replace(/ in ".*"$/s, "")];
    }
    assert.deepEqual(ours, [kind, expected], template);
  });
});
