// The command line, as the Python server's argparse defines it (mandos(8)),
// plus --workers, --serve-threads and --max-per-source. Parsing only: what was given, and nothing for what was
// not, so that mandos.conf can supply it (the command line wins).

import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { REFERENCE_VERSION, VERSION } from "../daemon/version.js";
import type { EtcdOptions } from "../fleet/settings.js";
import { pyInt } from "./python-values.js";

export interface CommandLine extends EtcdOptions {
  interface?: string;
  address?: string;
  port?: number;
  check: boolean;
  debug?: boolean;
  debuglevel?: string;
  priority?: string;
  servicename?: string;
  configdir: string;
  useDbus?: boolean;
  useIpv6?: boolean;
  restore?: boolean;
  socket?: number;
  statedir?: string;
  foreground?: boolean;
  zeroconf?: boolean;
  /** Handshake worker threads; 0 = inline; undefined = one per core. */
  workers?: number;
  /** Threads that accept and serve connections whole (serve/serve-threads.ts); 0 = the main thread accepts. */
  serveThreads?: number;
  /** Open connections per source (IPv4 address, IPv6 /64); 0 = no limit. */
  maxPerSource?: number;
  /** HOST:PORT for /metrics and /health (docs/OBSERVABILITY.md). */
  metrics?: string;
  /** The audit log file (JSON lines). */
  auditLog?: string;
  /** Audit records to syslog too, tagged mandos-audit. */
  auditSyslog?: boolean;
}

/** The etcd options, named as in mandos.conf (docs/ETCD.md): CommandLine field, option name, flag. */
const ETCD_OPTIONS = [
  ["etcd", "etcd", "--etcd <ENDPOINTS>", "Share client state with the other servers through etcd at these comma-separated URLs"],
  ["etcdPrefix", "etcd_prefix", "--etcd_prefix <PREFIX>", "Key prefix of this fleet in etcd (default /mandos/)"],
  ["etcdCa", "etcd_ca", "--etcd_ca <FILE>", "CA certificate to verify etcd's TLS certificate"],
  ["etcdCert", "etcd_cert", "--etcd_cert <FILE>", "Client certificate for etcd"],
  ["etcdKey", "etcd_key", "--etcd_key <FILE>", "Private key of --etcd_cert"],
  ["etcdUser", "etcd_user", "--etcd_user <USER>", "etcd user name"],
  ["etcdPasswordFile", "etcd_password_file", "--etcd_password_file <FILE>", "File holding the etcd user's password"],
] as const;

/** Exit codes as mandos(8) and argparse use them. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** argparse's `type=int`: Python's int(), so "1_000" and " 21 " are numbers, as in mandos.conf. */
function integer(name: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const parsed = pyInt(value);
    if (parsed === undefined) throw new InvalidArgumentError(`${name} must be an integer`);
    const n = Number(parsed);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be from ${min} to ${max}`);
    return n;
  };
}

/** A word argparse takes for a value, not an option: anything but "-" followed by more, unless a negative number. */
const looksLikeValue = (word: string): boolean => !word.startsWith("-") || word === "-" || /^-\d+$|^-\d*\.\d+$/.test(word);

/**
 * The command line as argparse reads it, where commander reads it
 * otherwise: a long option may be shortened to any prefix that names one
 * option alone (`--fore`, `--state=DIR`; argparse's allow_abbrev), and an
 * option that takes a value does not take a following option as its value
 * (`--statedir --foreground` is a usage error, not a state directory named
 * "--foreground"). Returns the words with every long option written out in
 * full, or argparse's message for the error.
 */
function argparseWords(argv: readonly string[], options: readonly Option[]): string[] | { readonly error: string } {
  const longs = ["--help", ...options.map((o) => o.long).filter((l): l is string => l !== undefined)];
  const takesValue = new Map<string, string>();
  for (const o of options) {
    if (!o.required) continue;
    const name = [o.short, o.long].filter(Boolean).join("/");
    for (const flag of [o.short, o.long]) if (flag) takesValue.set(flag, name);
  }
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    let word = argv[i]!;
    if (word === "--") {
      words.push(...argv.slice(i));
      break;
    }
    if (word.startsWith("--") && word.length > 2) {
      const equals = word.indexOf("=");
      const name = equals < 0 ? word : word.slice(0, equals);
      if (!longs.includes(name)) {
        const candidates = longs.filter((l) => l.startsWith(name));
        if (candidates.length > 1) return { error: `ambiguous option: ${name} could match ${candidates.join(", ")}` };
        if (candidates.length === 1) word = candidates[0]! + (equals < 0 ? "" : word.slice(equals));
      }
    }
    words.push(word);
    const valueOf = takesValue.get(word);
    if (valueOf !== undefined) {
      const next = argv[i + 1];
      if (next === undefined || !looksLikeValue(next)) return { error: `argument ${valueOf}: expected one argument` };
      words.push(next);
      i++;
    }
  }
  return words;
}

export type ParseResult =
  | { readonly kind: "run"; readonly options: CommandLine }
  | { readonly kind: "exit"; readonly code: number };

/**
 * Parses `argv` (without node and script). Help and version are printed to
 * `out`; usage errors to `err`, and they exit with 2 as argparse does.
 */
export function parseCommandLine(
  argv: readonly string[],
  out: (text: string) => void = (t) => process.stdout.write(t),
  err: (text: string) => void = (t) => process.stderr.write(t),
): ParseResult {
  const program = new Command("mandos")
    .description("Mandos server: gives encrypted passwords to rebooting client machines (mandos-ts)")
    .version(`mandos ${REFERENCE_VERSION} (mandos-ts ${VERSION})`, "-v, --version", "show version number and exit")
    .helpOption("-h, --help", "show this help message and exit")
    .option("-i, --interface <IF>", "Bind to interface IF")
    .option("-a, --address <ADDRESS>", "Address to listen for requests on")
    .option("-p, --port <PORT>", "Port number to receive requests on", integer("port", 0, 65535))
    .option("--check", "Run self-test", false)
    .option("--debug", "Debug mode; run in foreground and log to terminal")
    .option("--debuglevel <LEVEL>", "Debug level for stdout output")
    .option("--priority <PRIORITY>", "GnuTLS priority string (see GnuTLS documentation)")
    .option("--servicename <NAME>", "Zeroconf service name")
    .option("--configdir <DIR>", "Directory to search for configuration files", "/etc/mandos")
    .addOption(new Option("--no-dbus", "Do not provide D-Bus system bus interface"))
    .addOption(new Option("--no-ipv6", "Do not use IPv6"))
    .addOption(new Option("--no-restore", "Do not restore stored state"))
    .option("--socket <FD>", "Specify a file descriptor to a network socket to use instead of creating one", integer("socket", 0, 1 << 30))
    .option("--statedir <DIR>", "Directory to save/restore state in")
    .option("--foreground", "Run in foreground")
    .addOption(new Option("--no-zeroconf", "Do not use Zeroconf"))
    .option("--workers <N>", "Handshake worker threads (0: run handshakes on the main thread; default: one per core but one, at most 4 (0 on one core))", integer("workers", 0, 1024))
    .option("--serve-threads <N>", "Threads that accept and serve connections whole, the main thread keeping the registry (0: the main thread accepts, handshakes on --workers; default: 0 below four cores, else one per core but one, at most 16)", integer("serve-threads", 0, 1024))
    .option("--max-per-source <N>", "Open connections per client address (IPv6: per /64) at most; 0: no limit (default: 128)", integer("max-per-source", 0, 1_000_000))
    .option("--metrics <HOST:PORT>", "Serve Prometheus /metrics and /health on HOST:PORT (a bare :PORT is loopback only)")
    .option("--audit-log <FILE>", "Append one JSON line per secret released or known client refused to FILE")
    .option("--audit-syslog", "Send the audit records to syslog too, tagged mandos-audit")
    .configureOutput({ writeOut: out, writeErr: err })
    .exitOverride()
    .allowExcessArguments(false);

  for (const [, , flags, description] of ETCD_OPTIONS) program.option(flags, description);
  const words = argparseWords(argv, program.options);
  if (!Array.isArray(words)) {
    err(`error: ${words.error}\n`);
    return { kind: "exit", code: EXIT_USAGE };
  }
  try {
    program.parse(words, { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      const code = error.code === "commander.helpDisplayed" || error.code === "commander.version" ? EXIT_OK : EXIT_USAGE;
      return { kind: "exit", code };
    }
    throw error;
  }

  const o = program.opts<Record<string, unknown>>();
  const given = (name: string): boolean => program.getOptionValueSource(name) === "cli";
  const options: CommandLine = {
    check: o.check === true,
    configdir: String(o.configdir),
  };
  if (given("interface")) options.interface = String(o.interface);
  if (given("address")) options.address = String(o.address);
  if (given("port")) options.port = o.port as number;
  if (given("debug")) options.debug = true;
  if (given("debuglevel")) options.debuglevel = String(o.debuglevel);
  if (given("priority")) options.priority = String(o.priority);
  if (given("servicename")) options.servicename = String(o.servicename);
  if (given("dbus")) options.useDbus = false;
  if (given("ipv6")) options.useIpv6 = false;
  if (given("restore")) options.restore = false;
  if (given("socket")) options.socket = o.socket as number;
  if (given("statedir")) options.statedir = String(o.statedir);
  if (given("foreground")) options.foreground = true;
  if (given("zeroconf")) options.zeroconf = false;
  if (given("workers")) options.workers = o.workers as number;
  if (given("serveThreads")) options.serveThreads = o.serveThreads as number;
  if (given("maxPerSource")) options.maxPerSource = o.maxPerSource as number;
  if (given("metrics")) options.metrics = String(o.metrics);
  if (given("auditLog")) options.auditLog = String(o.auditLog);
  if (given("auditSyslog")) options.auditSyslog = true;
  for (const [field, name] of ETCD_OPTIONS) if (given(name)) options[field] = String(o[name]);
  return { kind: "run", options };
}
