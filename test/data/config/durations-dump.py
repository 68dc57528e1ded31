#!/usr/bin/python3
# The reference server's own duration parsing (string_to_delta and
# rfc3339_duration_to_delta, taken from /usr/sbin/mandos by name) applied to
# each string of a JSON list on stdin: milliseconds, or null for an error.
import ast, collections, datetime, json, re, sys

source = open("/usr/sbin/mandos", encoding="utf-8").read()
wanted = {"rfc3339_duration_to_delta", "string_to_delta"}
module = ast.Module(body=[n for n in ast.parse(source).body
                          if isinstance(n, ast.FunctionDef) and n.name in wanted],
                    type_ignores=[])
scope = {"datetime": datetime, "re": re, "collections": collections}
exec(compile(module, "/usr/sbin/mandos", "exec"), scope)
out = []
for s in json.load(sys.stdin):
    try:
        out.append(scope["string_to_delta"](s) // datetime.timedelta(milliseconds=1))
    except Exception:
        out.append(None)
print(json.dumps(out))
