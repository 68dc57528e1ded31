// The server's effective settings: mandos.conf's [DEFAULT] values, overridden
// by whatever the command line gave, exactly as the reference's main() merges
// them (debug implies foreground; without Zeroconf a port or socket is needed).
// The values checked only here (debuglevel, priority, metrics, the etcd
// pairs) name their source in an error: mandos.conf's file, line and key,
// or the command-line option.

import type { CommandLine } from "./cli.js";
import { placeText } from "./errors.js";
import { DEFAULT_SECTION } from "./ini.js";
import { SERVER_OPTION_NAMES, type ServerConfig, type ServerConfigFile } from "./server-config.js";
import { parsePriority } from "../../tls/priority.js";
import { parseLogLevel, type LogLevel } from "../daemon/log.js";
import { SettingsError } from "../daemon/errors.js";
import { DEFAULT_ETCD_PREFIX, type EtcdOptions, type EtcdSettings } from "../fleet/settings.js";

/** mandos.conf values (already typed), each present only if the file set it. */
export interface ServerFileSettings extends EtcdOptions {
  interface?: string;
  address?: string;
  port?: number;
  debug?: boolean;
  debuglevel?: string;
  priority?: string;
  servicename?: string;
  useDbus?: boolean;
  useIpv6?: boolean;
  restore?: boolean;
  statedir?: string;
  foreground?: boolean;
  socket?: number;
  zeroconf?: boolean;
  maxPerSource?: number;
  metrics?: string;
  auditLog?: string;
  auditSyslog?: boolean;
}

export interface ServerSettings {
  readonly interface: string;
  readonly address: string;
  /** 0: OS-chosen. */
  readonly port: number;
  readonly debug: boolean;
  /** Threshold for the console (with --debug) and syslog. */
  readonly debuglevel: LogLevel;
  readonly priority: string;
  readonly servicename: string;
  readonly configdir: string;
  readonly useDbus: boolean;
  readonly useIpv6: boolean;
  readonly restore: boolean;
  readonly statedir: string;
  readonly foreground: boolean;
  readonly socket: number | undefined;
  readonly zeroconf: boolean;
  /** Handshake worker threads; 0 = inline. */
  readonly workers: number;
  /** Threads that serve connections whole; 0 = the main thread accepts (serve/serve-threads.ts). */
  readonly serveThreads: number;
  /** Open connections per source at most; 0 = no limit (serve/admission.ts). */
  readonly maxPerSource: number;
  /** Where /metrics and /health listen; undefined: off. */
  readonly metrics: MetricsAddress | undefined;
  /** The audit log file; "" for none. */
  readonly auditLog: string;
  readonly auditSyslog: boolean;
  /** The shared registry; null without `etcd` (docs/ETCD.md). */
  readonly etcd: EtcdSettings | null;
}

/** A parsed `metrics = HOST:PORT`. */
export interface MetricsAddress {
  readonly host: string;
  readonly port: number;
}

/** The loopback address a bare `:PORT` binds: never reachable from another machine. */
export const METRICS_DEFAULT_HOST = "127.0.0.1";

/**
 * Parses `HOST:PORT`, `[IPV6]:PORT` or `:PORT` (loopback only); port 0 lets
 * the OS choose (tests). `where` names the value's source in the error.
 */
export function parseMetricsAddress(text: string, where = "metrics"): MetricsAddress {
  const m = /^(?:\[([0-9A-Fa-f:.%\w-]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new SettingsError("MANDOS_BAD_METRICS_ADDRESS", `${where}: not HOST:PORT, [IPV6]:PORT or :PORT: ${JSON.stringify(text)}`);
  }
  const host = m[1] ?? m[2] ?? "";
  return { host: host === "" ? METRICS_DEFAULT_HOST : host, port };
}

/** What mandos.conf set, and only that: the command line overrides it, defaults fill the rest (an empty value is the default). */
export function givenInFile(file: ServerConfigFile): ServerFileSettings {
  const out: Record<string, unknown> = {};
  for (const key of file.setInFile) {
    const value = file.settings[key];
    if (value === undefined || value === "") continue;
    out[key] = value;
  }
  return out as ServerFileSettings;
}

export const DEFAULT_STATEDIR = "/var/lib/mandos";
export const DEFAULT_SERVICENAME = "Mandos";

/** Where mandos.conf's settings stand: its path and each set option's line (a ServerConfigFile is one). */
export interface FileOrigin {
  readonly file: string;
  readonly lines: ReadonlyMap<keyof ServerConfig, number>;
}

/** A setting both mandos.conf and the command line can give. */
type SharedKey = keyof ServerFileSettings & keyof CommandLine & keyof ServerConfig;

export function mergeSettings(
  cli: CommandLine,
  file: ServerFileSettings,
  defaults: { priority: string; workers: number; maxPerSource: number; serveThreads?: number },
  origin?: FileOrigin,
): ServerSettings {
  const pick = <K extends keyof ServerFileSettings & keyof CommandLine>(key: K): CommandLine[K] | ServerFileSettings[K] =>
    cli[key] !== undefined ? cli[key] : file[key];
  // Only for the keys checked here, whose option is spelled as the file's
  // key (--debuglevel, --priority, --metrics, --etcd_cert ...).
  const where = (key: SharedKey): string => {
    const name = SERVER_OPTION_NAMES[key];
    if (cli[key] !== undefined) return `--${name}`;
    const line = origin?.lines.get(key);
    return origin && line !== undefined ? placeText({ file: origin.file, line, section: DEFAULT_SECTION, key: name }) : name;
  };
  const debug = pick("debug") ?? false;
  const levelName = pick("debuglevel") ?? "";
  let debuglevel: LogLevel = "WARNING";
  if (debug) debuglevel = "DEBUG";
  else if (levelName !== "") {
    const parsed = parseLogLevel(levelName);
    if (!parsed) throw new SettingsError("MANDOS_BAD_DEBUGLEVEL", `${where("debuglevel")}: unknown debug level ${JSON.stringify(levelName)}`);
    debuglevel = parsed;
  }
  const priority = pick("priority") ?? defaults.priority;
  // Checked here, before detaching, so that the error names its source
  // and reaches the terminal; the engine parses it again at start.
  try {
    parsePriority(priority);
  } catch (error) {
    throw new SettingsError("MANDOS_BAD_PRIORITY", `${where("priority")}: bad priority string: ${error instanceof Error ? error.message : String(error)}`);
  }
  // Strings Avahi's D-Bus API carries ("s"): no NUL (as clients.conf's).
  for (const key of ["servicename", "interface"] as const) {
    if ((pick(key) ?? "").includes("\0")) throw new SettingsError("MANDOS_BAD_TEXT", `${where(key)}: a NUL character, which D-Bus cannot carry`);
  }
  const metrics = pick("metrics") ?? "";
  const port = pick("port") ?? 0;
  const socket = pick("socket");
  const zeroconf = pick("zeroconf") ?? true;
  // The reference: "Needs port or socket to work without Zeroconf". We also
  // accept an explicit `--port 0` (an OS-chosen port, logged at start-up),
  // which the reference cannot express; tests and benchmarks rely on it.
  if (!zeroconf && port === 0 && socket === undefined && cli.port === undefined) {
    throw new SettingsError("MANDOS_NEEDS_PORT", "Needs port or socket to work without Zeroconf");
  }
  return {
    interface: pick("interface") ?? "",
    address: pick("address") ?? "",
    port,
    debug,
    debuglevel,
    priority,
    servicename: pick("servicename") ?? DEFAULT_SERVICENAME,
    configdir: cli.configdir,
    useDbus: pick("useDbus") ?? true,
    useIpv6: pick("useIpv6") ?? true,
    restore: pick("restore") ?? true,
    statedir: pick("statedir") ?? DEFAULT_STATEDIR,
    foreground: debug || (pick("foreground") ?? false),
    socket,
    zeroconf,
    workers: cli.workers ?? defaults.workers,
    serveThreads: cli.serveThreads ?? defaults.serveThreads ?? 0,
    maxPerSource: pick("maxPerSource") ?? defaults.maxPerSource,
    metrics: metrics === "" ? undefined : parseMetricsAddress(metrics, where("metrics")),
    auditLog: pick("auditLog") ?? "",
    auditSyslog: pick("auditSyslog") ?? false,
    etcd: etcdSettings(pick, where),
  };
}

function etcdSettings(
  pick: <K extends keyof ServerFileSettings & keyof CommandLine>(key: K) => CommandLine[K] | ServerFileSettings[K],
  where: (key: SharedKey) => string,
): EtcdSettings | null {
  const endpoints = (pick("etcd") ?? "").split(",").map((e) => e.trim()).filter((e) => e !== "");
  if (endpoints.length === 0) return null;
  // etcd3 would ignore a login in the URL and connect without one; and the
  // URL goes into log lines and --check's output: refused, and never shown.
  for (const e of endpoints) {
    const login = /^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i.exec(e);
    if (login) {
      throw new SettingsError("MANDOS_ETCD_OPTIONS", `${where("etcd")}: ${login[1]}…@${e.slice(login[0].length)} holds a login: give it as etcd_user and etcd_password_file`);
    }
  }
  const orNull = (v: string | undefined): string | null => (v === undefined || v === "" ? null : v);
  const settings: EtcdSettings = {
    endpoints,
    prefix: orNull(pick("etcdPrefix")) ?? DEFAULT_ETCD_PREFIX,
    ca: orNull(pick("etcdCa")),
    cert: orNull(pick("etcdCert")),
    key: orNull(pick("etcdKey")),
    user: orNull(pick("etcdUser")),
    passwordFile: orNull(pick("etcdPasswordFile")),
  };
  // One of a pair alone would silently connect without a client
  // certificate, or without a password: say so instead.
  const pairs = [["etcdCert", settings.cert, "etcdKey", settings.key], ["etcdUser", settings.user, "etcdPasswordFile", settings.passwordFile]] as const;
  for (const [a, aValue, b, bValue] of pairs) {
    if ((aValue === null) !== (bValue === null)) {
      const [given, lacking] = aValue === null ? [b, a] : [a, b];
      throw new SettingsError("MANDOS_ETCD_OPTIONS", `${where(given)}: needs ${SERVER_OPTION_NAMES[lacking]}`);
    }
  }
  return settings;
}
