// The command line, as the Python server's argparse defines it (mandos(8)),
// plus --workers, --serve-threads and --max-per-source. Parsing only: what was given, and nothing for what was
// not, so that mandos.conf can supply it (the command line wins).

import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { argparse, usage, type ArgSpec } from "./argparse.js";
import { REFERENCE_VERSION, VERSION } from "../daemon/version.js";
import { installedBuild, UNSTAMPED } from "../../build.js";
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

/** The integer options' ranges (the reference's --port and --socket take any int). */
const INTEGER_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  "--port": [0, 65535],
  "--socket": [0, 1 << 30],
  "--workers": [0, 1024],
  "--serve-threads": [0, 1024],
  "--max-per-source": [0, 1_000_000],
};

/** argparse's `type=int`: Python's int(), so "1_000" and " 21 " are numbers, as in mandos.conf. */
function integer(name: string): (value: string) => number {
  const [min, max] = INTEGER_RANGES[`--${name}`]!;
  return (value) => {
    const parsed = pyInt(value);
    if (parsed === undefined) throw new InvalidArgumentError(`${name} must be an integer`);
    const n = Number(parsed);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be from ${min} to ${max}`);
    return n;
  };
}

/** The reference's own options (/usr/sbin/mandos, main()); the rest are ours, and yield to these in an abbreviation. */
const REFERENCE_OPTIONS: ReadonlySet<string> = new Set([
  "--help", "--version", "--interface", "--address", "--port", "--check", "--debug", "--debuglevel", "--priority", "--servicename",
  "--configdir", "--no-dbus", "--no-ipv6", "--no-restore", "--socket", "--statedir", "--foreground", "--no-zeroconf",
]);

/** parse_test_args(): the reference's first reading of its command line. */
const TEST_OPTIONS: readonly ArgSpec[] = [
  { long: "--check", kind: "flag" },
  { long: "--prefix", kind: "value", metavar: "PREFIX" },
];

/** Commander's options (and its help option) as argparse would hold them, in the same order. */
function argSpecs(options: readonly Option[]): ArgSpec[] {
  const specs: ArgSpec[] = [{ short: "-h", long: "--help", kind: "help" }];
  for (const o of options) {
    if (o.long === undefined) continue;
    const metavar = /<([^>]+)>/.exec(o.flags)?.[1];
    const range = INTEGER_RANGES[o.long];
    specs.push({
      ...(o.short === undefined ? {} : { short: o.short }),
      long: o.long,
      kind: o.long === "--version" ? "version" : o.required ? "value" : "flag",
      ...(metavar === undefined ? {} : { metavar }),
      ...(range === undefined ? {} : { integer: { min: range[0], max: range[1] } }),
      ...(REFERENCE_OPTIONS.has(o.long) ? {} : { extra: true }),
    });
  }
  return specs;
}

/** As Python's shutil.get_terminal_size() finds the width argparse wraps at. */
function terminalColumns(): number {
  const fromEnv = Number(process.env.COLUMNS);
  if (Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  return process.stdout.isTTY && process.stdout.columns > 0 ? process.stdout.columns : 80;
}

export type ParseResult =
  | { readonly kind: "run"; readonly options: CommandLine }
  | { readonly kind: "exit"; readonly code: number };

/** The reference's form first (scripts read its second field), then ours, with the build installed (src/build.ts). */
function versionLine(): string {
  const { build } = installedBuild();
  return `mandos ${REFERENCE_VERSION} (mandos-ts ${VERSION}${build === UNSTAMPED ? "" : `, build ${build}`})`;
}

/** The command line's options, with commander writing to `out` and `err`. */
function commandLineProgram(out: (text: string) => void, err: (text: string) => void): Command {
  const program = new Command("mandos")
    .description("Mandos server: gives encrypted passwords to rebooting client machines (mandos-ts)")
    .version(versionLine(), "-v, --version", "show version number and exit")
    .helpOption("-h, --help", "show this help message and exit")
    .option("-i, --interface <IF>", "Bind to interface IF")
    .option("-a, --address <ADDRESS>", "Address to listen for requests on")
    .option("-p, --port <PORT>", "Port number to receive requests on", integer("port"))
    .option("--check", "Run self-test", false)
    .option("--debug", "Debug mode; run in foreground and log to terminal")
    .option("--debuglevel <LEVEL>", "Debug level for stdout output")
    .option("--priority <PRIORITY>", "GnuTLS priority string (see GnuTLS documentation)")
    .option("--servicename <NAME>", "Zeroconf service name")
    .option("--configdir <DIR>", "Directory to search for configuration files", "/etc/mandos")
    .addOption(new Option("--no-dbus", "Do not provide D-Bus system bus interface"))
    .addOption(new Option("--no-ipv6", "Do not use IPv6"))
    .addOption(new Option("--no-restore", "Do not restore stored state"))
    .option("--socket <SOCKET>", "Specify a file descriptor to a network socket to use instead of creating one", integer("socket"))
    .option("--statedir <DIR>", "Directory to save/restore state in")
    .option("--foreground", "Run in foreground")
    .addOption(new Option("--no-zeroconf", "Do not use Zeroconf"))
    .option("--workers <N>", "Handshake worker threads (0: run handshakes on the main thread; default: one per core but one, at most 4 (0 on one core))", integer("workers"))
    .option("--serve-threads <N>", "Threads that accept and serve connections whole, the main thread keeping the registry (0: the main thread accepts, handshakes on --workers; default: 0 below four cores, else one per core but one, at most 16)", integer("serve-threads"))
    .option("--max-per-source <N>", "Open connections per client address (IPv6: per /64) at most; 0: no limit (default: 128)", integer("max-per-source"))
    .option("--metrics <HOST:PORT>", "Serve Prometheus /metrics and /health on HOST:PORT (a bare :PORT is loopback only)")
    .option("--audit-log <FILE>", "Append one JSON line per secret released, known client refused or request cut short to FILE")
    .option("--audit-syslog", "Send the audit records to syslog too, tagged mandos-audit")
    .configureOutput({ writeOut: out, writeErr: err })
    .exitOverride()
    .allowExcessArguments(false);

  for (const [, , flags, description] of ETCD_OPTIONS) program.option(flags, description);
  return program;
}

/**
 * A usage error found after parsing (argparse's parser.error(), as the
 * reference calls it for a missing port): the usage line and `message`
 * on `err`; returns the exit status, 2.
 */
export function usageError(message: string, err: (text: string) => void = (t) => process.stderr.write(t)): number {
  const specs = argSpecs(commandLineProgram(() => undefined, err).options);
  err(`${usage("mandos", specs, terminalColumns())}mandos: error: ${message}\n`);
  return EXIT_USAGE;
}

/**
 * Parses `argv` (without node and script). Help and version are printed to
 * `out`; usage errors to `err`, and they exit with 2 as argparse does.
 */
export function parseCommandLine(
  argv: readonly string[],
  out: (text: string) => void = (t) => process.stdout.write(t),
  err: (text: string) => void = (t) => process.stderr.write(t),
): ParseResult {
  const program = commandLineProgram(out, err);
  const specs = argSpecs(program.options);
  const columns = terminalColumns();
  // The reference reads --check (and --prefix, its extra tests' prefix)
  // first, with parse_known_args, and with --check runs its self-tests
  // whatever else the line holds.
  const test = argparse(argv, TEST_OPTIONS, { known: true });
  if (test.kind === "parsed" && test.error !== undefined) {
    err(`${usage("mandos", TEST_OPTIONS, columns)}mandos: error: ${test.error}\n`);
    return { kind: "exit", code: EXIT_USAGE };
  }
  const selfTest = test.kind === "parsed" && test.words.includes("--check");
  const read = argparse(argv, specs, { lenient: selfTest });
  if (read.kind === "help") {
    program.outputHelp();
    return { kind: "exit", code: EXIT_OK };
  }
  if (read.kind === "version") {
    out(`${program.version() ?? ""}\n`);
    return { kind: "exit", code: EXIT_OK };
  }
  if (read.error !== undefined) {
    if (!selfTest) {
      err(`${usage("mandos", specs, columns)}mandos: error: ${read.error}\n`);
      return { kind: "exit", code: EXIT_USAGE };
    }
    out(`WARNING: command line: ${read.error} (left out; the self-tests run)\n`);
  }
  try {
    program.parse(selfTest ? [...read.words, "--check"] : read.words, { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Not reached: argparse() has taken every word commander is given.
      err(`mandos: error: ${error.message}\n`);
      return { kind: "exit", code: EXIT_USAGE };
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
