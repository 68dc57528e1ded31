#!/usr/bin/python3
# Differential-test oracle: reads a JSON request on stdin and answers, as
# JSON on stdout, what python3's configparser (and the reference server's
# own duration parser, taken from /usr/sbin/mandos) make of it.
#   {"files": [text, ...], "durations": [str, ...], "base64": [str, ...],
#    "clients": [text, ...]}
# For each clients file: what the reference's Client.config_parser makes of
# it ({name: {setting: value}}, durations in ms, secret in hex), or
# {"error": class name}.
# For each file: {"error": {"type", "lineno"}} or
# {"defaults": {key: raw}, "sections": [[name, [[key, value-or-{"error"}]...]]]}.
import ast
import binascii
import codecs
import collections
import configparser
import datetime
import io
import json
import os
import re
import sys


def load_reference_functions(path="/usr/sbin/mandos"):
    """string_to_delta, Client.config_parser and Client.client_defaults,
    taken from the reference server's source without running the rest."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except OSError:
        return None
    wanted = {"rfc3339_duration_to_delta", "string_to_delta"}
    body = [node for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name in wanted]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Client":
            for item in node.body:
                if (isinstance(item, ast.FunctionDef)
                    and item.name == "config_parser"):
                    item.decorator_list = []
                    body.append(item)
                elif (isinstance(item, ast.Assign)
                      and getattr(item.targets[0], "id", "")
                      == "client_defaults"):
                    body.append(item)
    namespace = {"datetime": datetime, "re": re, "collections": collections,
                 "codecs": codecs, "os": os}
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"),
         namespace)
    return namespace


def dump_clients(reference, text):
    config = configparser.ConfigParser(reference["client_defaults"])
    try:
        config.read_file(io.StringIO(text, newline=None), "<test>")
        settings = reference["config_parser"](config)
    except Exception as e:
        return {"error": type(e).__name__}
    # config_parser takes a negative duration, but the server then fails
    # at start-up as it makes the client: ClientDBus publishes each one as
    # a D-Bus UInt64 (OverflowError: can't convert negative int to
    # unsigned), as GLib.timeout_add does an interval.
    # test/config-clients-reference.test.ts starts the real server on them.
    for client in settings.values():
        for value in client.values():
            if (isinstance(value, datetime.timedelta)
                    and value < datetime.timedelta(0)):
                return {"error": "OverflowError"}
    out = {}
    for name, client in settings.items():
        entry = {}
        for key, value in client.items():
            if isinstance(value, datetime.timedelta):
                value = value // datetime.timedelta(milliseconds=1)
            elif isinstance(value, bytes):
                value = value.hex()
            entry[key] = value
        out[name] = entry
    return out


def error_of(e):
    lineno = getattr(e, "lineno", None)
    if type(e) is configparser.ParsingError and e.errors:
        lineno = e.errors[0][0]
    return {"type": type(e).__name__, "lineno": lineno}


def dump_file(text):
    config = configparser.ConfigParser()
    try:
        # As read() does from a file: universal newlines.
        config.read_file(io.StringIO(text, newline=None), "<test>")
    except configparser.Error as e:
        return {"error": error_of(e)}
    defaults = {k: v for k, v in config.defaults().items()}
    sections = []
    for name in config.sections():
        options = []
        for key in config.options(name):
            try:
                options.append([key, config.get(name, key)])
            except configparser.Error as e:
                options.append([key, {"error": type(e).__name__}])
        sections.append([name, options])
    default_values = []
    for key in defaults:
        try:
            default_values.append([key, config.get("DEFAULT", key)])
        except configparser.Error as e:
            default_values.append([key, {"error": type(e).__name__}])
    return {"defaults": defaults, "defaultValues": default_values,
            "sections": sections}


def main():
    request = json.load(sys.stdin)
    reference = load_reference_functions()
    string_to_delta = reference and reference["string_to_delta"]
    answer = {"files": [dump_file(t) for t in request.get("files", [])]}
    durations = []
    for d in request.get("durations", []):
        if string_to_delta is None:
            durations.append(None)
            continue
        try:
            delta = string_to_delta(d)
            durations.append(delta // datetime.timedelta(milliseconds=1))
        except (ValueError, OverflowError) as e:
            durations.append({"error": type(e).__name__})
    answer["durations"] = durations
    b64 = []
    for s in request.get("base64", []):
        try:
            b64.append(codecs.decode(s.encode("utf-8"), "base64").hex())
        except binascii.Error:
            b64.append({"error": "binascii.Error"})
    answer["base64"] = b64
    answer["clients"] = [dump_clients(reference, t) if reference else None
                         for t in request.get("clients", [])]
    json.dump(answer, sys.stdout)


main()
