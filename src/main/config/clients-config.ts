// clients.conf (mandos-clients.conf(5)) into ClientSettings, with the
// reference's Client.config_parser semantics: every option of a section is
// interpolated (as configparser.items() does), booleans and durations
// converted, key IDs and fingerprints normalised, and the secret taken from
// `secret` (base64) or `secfile`.
//
// One deliberate difference: the reference requires `fingerprint` even for
// a client with a `key_id` (a known bug); we require one of the two, as the
// man page says.

import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { userInfo } from "node:os";
import { execFileSync } from "node:child_process";
import { CLIENT_DEFAULTS, normaliseKeyId, type ClientSettings } from "../client-settings.js";
import { decodeBase64Python } from "./base64.js";
import { parseDuration } from "./durations.js";
import { ConfigError } from "./errors.js";
import { interpolate, optionLine, optionNames, parseIni, toBoolean, type IniFile } from "./ini.js";

export interface ClientsConfigOptions {
  /** Environment for `$VAR` in secfile (default: process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Reads a secfile (default: readFileSync). */
  readonly readFile?: (path: string) => Buffer;
}

/** Reads and parses a clients.conf file. A missing file is no clients, as in the reference. */
export function loadClientsConfig(path: string, options: ClientsConfigOptions = {}): ClientSettings[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new ConfigError("CONFIG_UNREADABLE", path, null, null, `cannot read: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
  return parseClientsConfig(text, path, options);
}

export function parseClientsConfig(text: string, file: string, options: ClientsConfigOptions = {}): ClientSettings[] {
  const ini = parseIni(text, file, CLIENT_DEFAULTS);
  const clients: ClientSettings[] = [];
  const byKeyId = new Map<string, string>();
  for (const name of ini.sections.keys()) {
    const client = clientFromSection(ini, name, options);
    if (client.keyId !== "") {
      const other = byKeyId.get(client.keyId);
      if (other !== undefined) {
        throw new ConfigError("CONFIG_DUPLICATE_KEY", file, optionLine(ini, name, "key_id"), "key_id", `same key ID as client ${other}`);
      }
      byKeyId.set(client.keyId, name);
    }
    clients.push(client);
  }
  return clients;
}

function clientFromSection(ini: IniFile, name: string, options: ClientsConfigOptions): ClientSettings {
  const file = ini.file;
  // configparser.items(section) interpolates every option, used or not.
  const values = new Map<string, string>();
  for (const key of optionNames(ini, name)) values.set(key, interpolate(ini, name, key));
  const get = (key: string): string => values.get(key) ?? "";
  const line = (key: string): number | null => optionLine(ini, name, key) ?? ini.sectionLines.get(name) ?? null;
  const duration = (key: string): number => {
    try {
      return parseDuration(get(key));
    } catch (error) {
      throw new ConfigError("CONFIG_BAD_DURATION", file, line(key), key, `${(error as Error).message} in client ${name}`);
    }
  };
  const keyId = normaliseKeyId(get("key_id"));
  const fingerprint = normaliseKeyId(get("fingerprint"));
  if (keyId === "" && fingerprint === "") {
    throw new ConfigError("CONFIG_NO_KEY", file, ini.sectionLines.get(name) ?? null, "key_id", `client ${name} has neither key_id nor fingerprint`);
  }
  let secret: Buffer;
  if (values.has("secret")) {
    try {
      secret = decodeBase64Python(get("secret"));
    } catch (error) {
      throw new ConfigError("CONFIG_BAD_SECRET", file, line("secret"), "secret", `not valid base64 (${(error as Error).message}) in client ${name}`);
    }
  } else if (values.has("secfile")) {
    const path = expandUser(expandVars(get("secfile"), options.env ?? process.env));
    try {
      secret = (options.readFile ?? ((p: string) => readFileSync(p)))(path);
    } catch (error) {
      throw new ConfigError("CONFIG_SECFILE", file, line("secfile"), "secfile", `cannot read ${JSON.stringify(path)}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
    }
  } else {
    throw new ConfigError("CONFIG_NO_SECRET", file, ini.sectionLines.get(name) ?? null, "secret", `client ${name} has neither secret nor secfile`);
  }
  return {
    name,
    keyId,
    fingerprint,
    secret,
    host: get("host"),
    timeout: duration("timeout"),
    extendedTimeout: duration("extended_timeout"),
    interval: duration("interval"),
    checker: get("checker"),
    approvedByDefault: toBoolean(get("approved_by_default"), file, line("approved_by_default"), "approved_by_default"),
    approvalDelay: duration("approval_delay"),
    approvalDuration: duration("approval_duration"),
    enabled: toBoolean(get("enabled"), file, line("enabled"), "enabled"),
  };
}

/** posixpath.expandvars: $name and ${name} of set variables; others left as they are. */
export function expandVars(path: string, env: NodeJS.ProcessEnv): string {
  if (!path.includes("$")) return path;
  return path.replace(/\$(\w+|\{[^}]*\})/g, (whole, name: string) => {
    const key = name.startsWith("{") ? name.slice(1, -1) : name;
    const value = env[key];
    return value === undefined ? whole : value;
  });
}

/** posixpath.expanduser: ~ and ~user at the start; unknown users left as they are. */
export function expandUser(path: string): string {
  if (!path.startsWith("~")) return path;
  const slash = path.indexOf("/", 1);
  const end = slash < 0 ? path.length : slash;
  const user = path.slice(1, end);
  let home: string | undefined;
  if (user === "") {
    home = process.env.HOME ?? homedir();
  } else {
    home = homeOf(user);
    if (home === undefined) return path;
  }
  const trimmed = home.replace(/\/+$/, "");
  return (trimmed || "/") + path.slice(end);
}

function homeOf(user: string): string | undefined {
  if (user === userInfo().username) return userInfo().homedir;
  try {
    const entry = execFileSync("getent", ["passwd", user], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return entry.split(":")[5];
  } catch {
    return undefined;
  }
}
