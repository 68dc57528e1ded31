// mandos.conf (mandos.conf(5)): the [DEFAULT] section's server settings, as
// the reference's main() reads them: the boolean options through getboolean
// (so interpolated), port and socket through getint when set, every other
// option raw (no interpolation: the default priority string holds a "%").
// A missing file is no settings, as configparser.read() silently allows.

import { readFileSync } from "node:fs";
import type { ServerFileSettings } from "../server-settings.js";
import { ConfigError } from "./errors.js";
import { interpolate, optionLine, parseIni, toBoolean, toInteger } from "./ini.js";

const BOOLEANS = [
  ["debug", "debug"],
  ["use_dbus", "useDbus"],
  ["use_ipv6", "useIpv6"],
  ["restore", "restore"],
  ["foreground", "foreground"],
  ["zeroconf", "zeroconf"],
] as const;
const STRINGS = [
  ["interface", "interface"],
  ["address", "address"],
  ["priority", "priority"],
  ["servicename", "servicename"],
  ["debuglevel", "debuglevel"],
  ["statedir", "statedir"],
] as const;

export function loadServerConfig(path: string): ServerFileSettings {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new ConfigError("CONFIG_UNREADABLE", path, null, null, `cannot read: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
  return parseServerConfig(text, path);
}

export function parseServerConfig(text: string, file: string): ServerFileSettings {
  const ini = parseIni(text, file);
  const d = ini.defaults;
  const out: ServerFileSettings = {};
  for (const [key, field] of BOOLEANS) {
    if (!d.has(key)) continue;
    out[field] = toBoolean(interpolate(ini, "", key), file, optionLine(ini, "", key), key);
  }
  for (const [key, field] of STRINGS) {
    const v = d.get(key)?.value;
    if (v !== undefined && v !== "") out[field] = v;
  }
  for (const key of ["port", "socket"] as const) {
    const v = d.get(key)?.value;
    if (v === undefined || v === "") continue;
    out[key] = toInteger(interpolate(ini, "", key), file, optionLine(ini, "", key), key);
  }
  return out;
}
