#!/usr/bin/python3
# What Python's configparser.ConfigParser (the reference server's parser)
# makes of each file named on stdin (a JSON list): per file, either the
# interpolated items() of every section and the raw DEFAULT values, or the
# name of the exception class it raised. Used by test/config-ini.test.ts.
import configparser, json, sys

results = []
for path in json.load(sys.stdin):
    cp = configparser.ConfigParser()
    try:
        cp.read(path, encoding="utf-8")
        sections = {}
        for name in cp.sections():
            sections[name] = [[k, v] for k, v in cp.items(name)]
        defaults = [[k, v] for k, v in cp.defaults().items()]
        results.append({"ok": True, "sections": sections, "defaults": defaults})
    except configparser.Error as e:
        results.append({"ok": False, "error": type(e).__name__})
print(json.dumps(results))
