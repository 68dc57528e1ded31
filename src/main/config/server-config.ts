// mandos.conf: the server's own settings, all in [DEFAULT] (mandos.conf(5)),
// read as the reference server reads them (/usr/sbin/mandos, main()):
// booleans through getboolean, port and socket through getint when not
// empty, every other option raw (the reference takes them from
// `defaults()`, which does not interpolate). The command line overrides
// whatever `setInFile` lists; "debug implies foreground" is the caller's,
// after that override, as in the reference.

import { ConfigError } from "./errors.js";
import { DEFAULT_SECTION, type IniDocument, getOption, parseIni } from "./ini.js";
import { pyBoolean, pyInt } from "./python-values.js";
import { readConfigText } from "./read-file.js";

/**
 * Our default priority string: modern and legacy Mandos clients both
 * (docs/PROTOCOL.md, "Priority strings"). The reference's default depends
 * on its GnuTLS: raw public keys only (>= 3.6.6) or OpenPGP only (< 3.6).
 */
export { DEFAULT_PRIORITY } from "../../tls/priority.js";
import { DEFAULT_PRIORITY } from "../../tls/priority.js";

/** The reference's `server_defaults`, as strings, the way the file would spell them. */
export const SERVER_DEFAULTS: Readonly<Record<string, string>> = {
  interface: "",
  address: "",
  port: "",
  debug: "False",
  priority: DEFAULT_PRIORITY,
  servicename: "Mandos",
  use_dbus: "True",
  use_ipv6: "True",
  debuglevel: "",
  restore: "True",
  socket: "",
  statedir: "/var/lib/mandos",
  foreground: "False",
  zeroconf: "True",
  metrics: "",
  audit_log: "",
  audit_syslog: "False",
  // The shared registry (docs/ETCD.md); none of these is the reference's.
  etcd: "",
  etcd_prefix: "",
  etcd_ca: "",
  etcd_cert: "",
  etcd_key: "",
  etcd_user: "",
  etcd_password_file: "",
};

export interface ServerConfig {
  readonly interface: string;
  readonly address: string;
  /** undefined: not set (let the OS or Zeroconf choose). */
  readonly port: number | undefined;
  readonly debug: boolean;
  readonly priority: string;
  readonly servicename: string;
  readonly useDbus: boolean;
  readonly useIpv6: boolean;
  /** A log level name, or "" for the default. */
  readonly debuglevel: string;
  readonly restore: boolean;
  /** An inherited listening socket's file descriptor; undefined if not set. */
  readonly socket: number | undefined;
  readonly statedir: string;
  readonly foreground: boolean;
  readonly zeroconf: boolean;
  /**
   * Ours, not the reference's: open connections per source (an IPv4
   * address, an IPv6 /64), 0 for no limit; undefined if not set
   * (serve/limits.ts DEFAULT_MAX_PER_SOURCE).
   */
  readonly maxPerSource: number | undefined;
  /** HOST:PORT for /metrics and /health, or "" for off (not in the reference). */
  readonly metrics: string;
  /** The audit log file, or "" for none (not in the reference). */
  readonly auditLog: string;
  readonly auditSyslog: boolean;
  /** Comma-separated etcd endpoint URLs; "" for no shared registry. */
  readonly etcd: string;
  readonly etcdPrefix: string;
  readonly etcdCa: string;
  readonly etcdCert: string;
  readonly etcdKey: string;
  readonly etcdUser: string;
  readonly etcdPasswordFile: string;
}

/** The file's option names for each ServerConfig field. */
export const SERVER_OPTION_NAMES: Readonly<Record<keyof ServerConfig, string>> = {
  interface: "interface",
  address: "address",
  port: "port",
  debug: "debug",
  priority: "priority",
  servicename: "servicename",
  useDbus: "use_dbus",
  useIpv6: "use_ipv6",
  debuglevel: "debuglevel",
  restore: "restore",
  socket: "socket",
  statedir: "statedir",
  foreground: "foreground",
  zeroconf: "zeroconf",
  maxPerSource: "max_per_source",
  metrics: "metrics",
  auditLog: "audit_log",
  auditSyslog: "audit_syslog",
  etcd: "etcd",
  etcdPrefix: "etcd_prefix",
  etcdCa: "etcd_ca",
  etcdCert: "etcd_cert",
  etcdKey: "etcd_key",
  etcdUser: "etcd_user",
  etcdPasswordFile: "etcd_password_file",
};

export interface ServerConfigFile {
  readonly file: string;
  /** False when the file could not be read: then every setting is its default, as in the reference. */
  readonly found: boolean;
  /** Why, when not found. */
  readonly unreadable?: NodeJS.ErrnoException;
  readonly settings: ServerConfig;
  /** The settings the file itself gave (the rest are defaults). */
  readonly setInFile: ReadonlySet<keyof ServerConfig>;
  /** The line of each setting in `setInFile`, for the errors of values checked after parsing (server-settings.ts). */
  readonly lines: ReadonlyMap<keyof ServerConfig, number>;
}

/** Reads mandos.conf at `path`; a missing or unreadable file gives the defaults (`found: false`). */
export function loadServerConfig(path: string): ServerConfigFile {
  const text = readConfigText(path);
  if (typeof text !== "string") return { ...parseServerConfig("", path), found: false, unreadable: text.unreadable };
  return parseServerConfig(text, path);
}

/** Parses the text of a mandos.conf; `file` names it in errors. */
export function parseServerConfig(text: string, file: string): ServerConfigFile {
  const doc = parseIni(text, file, SERVER_DEFAULTS);
  const raw = (key: string): string => doc.defaults.get(key)?.value ?? "";
  // In the reference's order, so that the first bad option is the one it reports.
  const [debug, useDbus, useIpv6, restore, foreground, zeroconf] = ["debug", "use_dbus", "use_ipv6", "restore", "foreground", "zeroconf"].map(
    (key) => boolean(doc, key),
  ) as [boolean, boolean, boolean, boolean, boolean, boolean];
  const settings: ServerConfig = {
    interface: raw("interface"),
    address: raw("address"),
    port: raw("port") === "" ? undefined : portNumber(doc, "port"),
    debug,
    priority: raw("priority"),
    servicename: raw("servicename"),
    useDbus,
    useIpv6,
    debuglevel: raw("debuglevel"),
    restore,
    socket: raw("socket") === "" ? undefined : integer(doc, "socket"),
    statedir: raw("statedir"),
    foreground,
    zeroconf,
    maxPerSource: raw("max_per_source") === "" ? undefined : count(doc, "max_per_source"),
    metrics: raw("metrics"),
    auditLog: raw("audit_log"),
    auditSyslog: boolean(doc, "audit_syslog"),
    etcd: raw("etcd"),
    etcdPrefix: raw("etcd_prefix"),
    etcdCa: raw("etcd_ca"),
    etcdCert: raw("etcd_cert"),
    etcdKey: raw("etcd_key"),
    etcdUser: raw("etcd_user"),
    etcdPasswordFile: raw("etcd_password_file"),
  };
  const setInFile = new Set<keyof ServerConfig>();
  const lines = new Map<keyof ServerConfig, number>();
  for (const [field, key] of Object.entries(SERVER_OPTION_NAMES) as [keyof ServerConfig, string][]) {
    const line = doc.defaults.get(key)?.line ?? 0;
    if (line > 0) {
      setInFile.add(field);
      lines.set(field, line);
    }
  }
  return { file, found: true, settings, setInFile, lines };
}

function place(doc: IniDocument, key: string): { file: string; line: number; section: string; key: string } {
  return { file: doc.file, line: doc.defaults.get(key)?.line ?? 0, section: DEFAULT_SECTION, key };
}

function boolean(doc: IniDocument, key: string): boolean {
  const value = getOption(doc, DEFAULT_SECTION, key) ?? "";
  const parsed = pyBoolean(value);
  if (parsed === undefined) throw new ConfigError("CONFIG_BAD_BOOLEAN", place(doc, key), `not a boolean: ${JSON.stringify(value)}`);
  return parsed;
}

function count(doc: IniDocument, key: string): number {
  const n = integer(doc, key);
  if (n < 0) throw new ConfigError("CONFIG_BAD_INTEGER", place(doc, key), `not a count (0 or more): ${n}`);
  return n;
}

/** A port: the reference fails later, at bind(), on one out of range; here its line is named. */
function portNumber(doc: IniDocument, key: string): number {
  const n = integer(doc, key);
  if (n < 0 || n > 65535) throw new ConfigError("CONFIG_BAD_INTEGER", place(doc, key), `not a port number (0 to 65535): ${n}`);
  return n;
}

function integer(doc: IniDocument, key: string): number {
  const value = getOption(doc, DEFAULT_SECTION, key) ?? "";
  const parsed = pyInt(value);
  if (parsed === undefined || !Number.isSafeInteger(Number(parsed))) {
    throw new ConfigError("CONFIG_BAD_INTEGER", place(doc, key), `not an integer: ${JSON.stringify(value)}`);
  }
  return Number(parsed);
}
