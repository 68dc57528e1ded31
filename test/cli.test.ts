// The command line (src/main/config/cli.ts): the reference's options and usage errors,
// --help and --version, --check, and the default thread counts the README's table gives.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { EXIT_OK, EXIT_USAGE, parseCommandLine } from "../src/main/config/cli.js";
import { MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { installedBuild, UNSTAMPED } from "../src/build.js";
import { VERSION } from "../src/main/daemon/version.js";

function parse(...argv: string[]) {
  let out = "";
  let err = "";
  const result = parseCommandLine(argv, (t) => (out += t), (t) => (err += t));
  return { result, out, err };
}

test("options not given stay unset so that mandos.conf can supply them", () => {
  const { result } = parse();
  assert.equal(result.kind, "run");
  if (result.kind !== "run") return;
  assert.deepEqual(result.options, { check: false, configdir: "/etc/mandos" });
});

test("every reference option parses", () => {
  const { result } = parse(
    "-i", "eth0", "-a", "::1", "-p", "1234", "--debug", "--debuglevel", "INFO", "--priority", "NORMAL",
    "--servicename", "Other", "--configdir", "/tmp/x", "--no-dbus", "--no-ipv6", "--no-restore",
    "--socket", "3", "--statedir", "/tmp/s", "--foreground", "--no-zeroconf", "--workers", "0", "--check",
  );
  assert.equal(result.kind, "run");
  if (result.kind !== "run") return;
  assert.deepEqual(result.options, {
    interface: "eth0", address: "::1", port: 1234, check: true, debug: true, debuglevel: "INFO",
    priority: "NORMAL", servicename: "Other", configdir: "/tmp/x", useDbus: false, useIpv6: false,
    restore: false, socket: 3, statedir: "/tmp/s", foreground: true, zeroconf: false, workers: 0,
  });
});

test("usage errors exit with 2, as argparse does", () => {
  for (const argv of [["--port", "x"], ["--port", "70000"], ["--bogus"], ["stray"], ["--workers", "-1"]]) {
    const { result, err } = parse(...argv);
    assert.deepEqual(result, { kind: "exit", code: EXIT_USAGE }, argv.join(" "));
    assert.notEqual(err, "");
  }
});

test("--help and --version exit 0 and print", () => {
  const help = parse("--help");
  assert.deepEqual(help.result, { kind: "exit", code: EXIT_OK });
  assert.match(help.out, /--no-zeroconf/);
  const version = parse("--version");
  assert.deepEqual(version.result, { kind: "exit", code: EXIT_OK });
  // The reference's own form first (scripts read its second field), then ours.
  // With the build when the built files are stamped (npm run build, npm test): see build-stamp.test.ts.
  const stamp = installedBuild();
  const build = stamp.build === UNSTAMPED ? "" : `, build ${stamp.build}`;
  assert.match(stamp.build, /^(unstamped|[0-9a-f]{12})$/);
  assert.equal(version.out, `mandos 1.8.16 (mandos-ts ${VERSION}${build})\n`);
});

test("mandos --check runs the self-tests and exits 0", async () => {
  const { run } = await import("./helpers/server.js");
  const r = await run(process.execPath, [(await import("./helpers/server.js")).BIN_MANDOS, "--check"], 30_000);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.toString(), /^ok: the datagram addon \(syslog, systemd\) loads on this Node\.js$/m);
  assert.match(r.stdout.toString(), /^5 passed, 0 failed$/m);
});

test("the default worker count leaves the main thread a core, is 0 (inline) on one core, and stops at 4", async () => {
  const { defaultWorkerCount } = await import("../src/main/serve/handshake-runner.js");
  assert.deepEqual([1, 2, 3, 4, 5, 16, 64].map((cores) => defaultWorkerCount(cores)), [0, 1, 2, 3, 4, 4, 4]);
});

test("the default serve threads: none below four cores, then one per core but one, at most 16", async () => {
  const { defaultServeThreadCount } = await import("../src/main/serve/serve-threads.js");
  assert.deepEqual([1, 2, 3, 4, 8, 16, 17, 18, 64, 256].map((cores) => defaultServeThreadCount(cores)), [0, 0, 0, 3, 7, 15, 16, 16, 16, 16]);
});

test("--help and the README's option table give the same defaults", async () => {
  const { readFileSync } = await import("node:fs");
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const help = parse("--help").out.replace(/\s+/g, " ");
  const row = (option: string): string[] => {
    const line = readme.split("\n").find((l) => l.startsWith(`| \`${option}`)) ?? "";
    return line.split("|").map((cell) => cell.trim());
  };
  const workers = row("--workers N")[3] ?? "";
  assert.ok(workers.length > 0, "the README lists --workers with a default");
  assert.ok(help.includes(`default: ${workers}`), `--help says the --workers default as the README does (${workers})`);
  const threads = (row("--serve-threads N")[3] ?? "").replace("4 cores", "four cores");
  assert.ok(threads.length > 0, "the README lists --serve-threads with a default");
  assert.ok(help.includes(`default: ${threads}`), `--help says the --serve-threads default as the README does (${threads})`);
  assert.equal(row("--configdir DIR")[3], "`/etc/mandos`");
  assert.ok(help.includes('(default: "/etc/mandos")'));
});

test("long options may be shortened to a prefix that names one option alone, as argparse allows", () => {
  const { result } = parse("--fore", "--no-z", "--po", "21101", "--addr", "::1", "--state=/tmp/s", "--config", "/tmp/c", "--no-d");
  assert.equal(result.kind, "run");
  if (result.kind !== "run") return;
  assert.deepEqual(result.options, { check: false, configdir: "/tmp/c", address: "::1", port: 21101, statedir: "/tmp/s", foreground: true, zeroconf: false, useDbus: false });
  const ambiguous = parse("--deb");
  assert.deepEqual(ambiguous.result, { kind: "exit", code: EXIT_USAGE });
  assert.match(ambiguous.err, /\nmandos: error: ambiguous option: --deb could match --debug, --debuglevel\n$/);
  // A name given whole is that option, though it is another's prefix.
  const exact = parse("--debug");
  assert.ok(exact.result.kind === "run" && exact.result.options.debug === true);
});

test("a prefix the reference takes as its own option still is that option, beside our extra options", () => {
  // --a: --address, or our --audit-log, --audit-syslog; --se...: --servicename, or our --serve-threads.
  for (const [argv, options] of [
    [["--a", "::1"], { address: "::1" }],
    [["--se", "X"], { servicename: "X" }],
    [["--ser", "X"], { servicename: "X" }],
    [["--serv", "X"], { servicename: "X" }],
  ] as const) {
    const { result, err } = parse(...argv);
    assert.deepEqual(result, { kind: "run", options: { check: false, configdir: "/etc/mandos", ...options } }, `${argv.join(" ")}: ${err}`);
  }
  // Ambiguous among the reference's own options, as there; and among ours alone.
  for (const [word, could] of [["--s", /--servicename, .*--socket, .*--statedir/], ["--no-", /--no-dbus, --no-ipv6, --no-restore, --no-zeroconf/], ["--audit", /--audit-log, --audit-syslog/]] as const) {
    const { result, err } = parse(word, "x");
    assert.deepEqual(result, { kind: "exit", code: EXIT_USAGE }, word);
    assert.match(err, new RegExp(`mandos: error: ambiguous option: ${word} could match `), word);
    assert.match(err, could, word);
  }
});

test("an option's value is not the next option: a missing value is a usage error, as argparse says", () => {
  for (const [argv, said] of [
    [["--statedir", "--foreground"], "argument --statedir: expected one argument"],
    [["-a", "-x"], "argument -a/--address: expected one argument"],
    [["--servicename"], "argument --servicename: expected one argument"],
  ] as const) {
    const { result, err } = parse(...argv);
    assert.deepEqual(result, { kind: "exit", code: EXIT_USAGE }, argv.join(" "));
    assert.ok(err.startsWith("usage: mandos [-h] [-v] [-i IF]") && err.endsWith(`\nmandos: error: ${said}\n`), err);
  }
  // Given with "=", a value may start with "-".
  const explicit = parse("--servicename=-x");
  assert.ok(explicit.result.kind === "run" && explicit.result.options.servicename === "-x");
});

test("integers are read as Python's int() reads them, as in mandos.conf", () => {
  const { result } = parse("--port", "1_000", "--socket", " 3 ");
  assert.ok(result.kind === "run");
  if (result.kind !== "run") return;
  assert.equal(result.options.port, 1000);
  assert.equal(result.options.socket, 3);
  assert.deepEqual(parse("--port", "1__0").result, { kind: "exit", code: EXIT_USAGE });
});

/** The reference's standard error and exit status for `argv` (argparse fails before it needs a bus or root). */
function reference(argv: readonly string[]): { code: number | null; err: string; out: string } {
  const r = spawnSync(MANDOS_REFERENCE, argv, { encoding: "utf8", timeout: 60_000, env: { ...process.env, COLUMNS: "80" } });
  return { code: r.status, err: r.stderr, out: r.stdout };
}

/** argparse's usage line, ours without the options the reference lacks (its last lines). */
const referencePart = (usage: string): string => usage.replace(/\[--no-zeroconf\][^]*$/, "[--no-zeroconf]\n");

// Found beside the reference: commander's words ("error: unknown option
// '--bogus'") where argparse prints its usage line, then "mandos: error:".
test("usage errors: the reference's usage line and its argparse message, word for word, and exit status 2", { skip: missing(MANDOS_REFERENCE), timeout: 300_000 }, () => {
  const saved = process.env.COLUMNS;
  process.env.COLUMNS = "80";
  try {
    for (const argv of [
      ["--bogus"], ["stray"], ["-x"], ["-1"], ["--port", "1", "stray", "-1", "--bogus=3", "-x"], ["--"], ["--", "--port", "x"], ["--port", "80", "--", "x"],
      ["--port"], ["-i"], ["--statedir", "--foreground"], ["--servicename", "-foo"], ["--port", "--", "x"], ["--port", "-1x"],
      ["--port", "x"], ["--socket", "x"], ["-p1x"], ["-p=80x"], ["--port="], ["--port", "x", "-h"],
      ["--deb"], ["--deb=x"], ["--no-"], ["--bogus", "--deb"],
      ["--debug=1"], ["--debug="], ["--help=1"], ["-hx"], ["-vx"], ["--no-dbus=x"],
    ]) {
      const ref = reference(argv);
      const ours = parse(...argv);
      const said = argv.join(" ");
      assert.equal(ref.code, EXIT_USAGE, `reference, ${said}: ${ref.err}`);
      assert.deepEqual(ours.result, { kind: "exit", code: EXIT_USAGE }, said);
      const [refUsage, refError] = ref.err.split(/(?=^mandos: error: )/m);
      const [ourUsage, ourError] = ours.err.split(/(?=^mandos: error: )/m);
      assert.equal(ourError, refError, said);
      assert.equal(referencePart(ourUsage ?? ""), refUsage, said);
    }
    // Help and version where they stand, before anything unknown is refused.
    for (const argv of [["--bogus", "-h"], ["-h", "--port", "x"], ["--bogus", "--version"], ["-vh"]]) {
      assert.equal(reference(argv).code, EXIT_OK, argv.join(" "));
      const ours = parse(...argv);
      assert.deepEqual(ours.result, { kind: "exit", code: EXIT_OK }, argv.join(" "));
      assert.equal(ours.err, "");
      assert.notEqual(ours.out, "");
    }
  } finally {
    if (saved === undefined) delete process.env.COLUMNS;
    else process.env.COLUMNS = saved;
  }
});

test("the usage line wraps as argparse's does, at $COLUMNS less 2", () => {
  const saved = process.env.COLUMNS;
  try {
    const usageLines = (): string[] => parse("--bogus").err.split("\n").slice(0, -2);
    process.env.COLUMNS = "200";
    const wide = usageLines();
    assert.ok(wide[0]!.startsWith("usage: mandos [-h] [-v]") && wide[0]!.length > 78, wide[0]);
    for (const line of wide) assert.ok(line.length <= 198, line);
    process.env.COLUMNS = "80";
    const narrow = usageLines();
    assert.ok(narrow.length > wide.length);
    for (const line of narrow) assert.ok(line.length <= 78, line);
    for (const line of narrow.slice(1)) assert.match(line, /^ {14}\[/, "continuation lines line up under the first option");
  } finally {
    if (saved === undefined) delete process.env.COLUMNS;
    else process.env.COLUMNS = saved;
  }
});

// Found beside the reference: it reads --check first (parse_known_args)
// and then runs its self-tests whatever else is on the line; ours refused
// the line. Its first reading's own errors are usage errors there too.
test("--check runs the self-tests with words the server would refuse, as the reference does; its own errors are usage errors", { skip: missing(MANDOS_REFERENCE), timeout: 120_000 }, () => {
  for (const argv of [["--check", "--bogus"], ["--check", "--port", "x"], ["--c"], ["--ch", "stray"], ["--check", "-h"], ["--statedir", "--check"]]) {
    assert.equal(reference(argv).code, EXIT_OK, argv.join(" "));
    const ours = parse(...argv, "--configdir", "/tmp/conf");
    assert.equal(ours.result.kind, "run", argv.join(" "));
    if (ours.result.kind !== "run") continue;
    assert.equal(ours.result.options.check, true);
    assert.equal(ours.result.options.configdir, "/tmp/conf", "the words it can read still count");
    assert.equal(ours.err, "");
  }
  assert.match(parse("--check", "--bogus").out, /^WARNING: command line: unrecognized arguments: --bogus/);
  for (const argv of [["--check=1"], ["--check", "--prefix"], ["--p"]]) {
    const ref = reference(argv);
    const ours = parse(...argv);
    assert.equal(ref.code, EXIT_USAGE, argv.join(" "));
    assert.deepEqual(ours.result, { kind: "exit", code: EXIT_USAGE }, argv.join(" "));
    assert.equal(ours.err, ref.err, argv.join(" "));
  }
  // After "--" it is no option.
  assert.deepEqual(parse("--", "--check").result, { kind: "exit", code: EXIT_USAGE });
});

test("no port and no Zeroconf: the reference's parser.error(), usage line and all, exit status 2", { skip: missing(MANDOS_REFERENCE), timeout: 120_000 }, async () => {
  const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { BIN_MANDOS } = await import("./helpers/server.js");
  const conf = mkdtempSync(join(tmpdir(), "mandos-ts-noport-"));
  try {
    writeFileSync(join(conf, "clients.conf"), "");
    const argv = ["--foreground", "--no-zeroconf", "--no-dbus", "--configdir", conf, "--statedir", conf];
    const ref = reference(argv);
    const ours = spawnSync(process.execPath, [BIN_MANDOS, ...argv], { encoding: "utf8", timeout: 60_000, env: { ...process.env, COLUMNS: "80" } });
    assert.equal(ref.code, EXIT_USAGE, ref.err);
    assert.equal(ours.status, EXIT_USAGE, ours.stderr);
    const [refUsage, refError] = ref.err.split(/(?=^mandos: error: )/m);
    const [ourUsage, ourError] = ours.stderr.split(/(?=^mandos: error: )/m);
    assert.equal(ourError, refError);
    assert.equal(ourError, "mandos: error: Needs port or socket to work without Zeroconf\n");
    assert.equal(referencePart(ourUsage ?? ""), refUsage);
  } finally {
    rmSync(conf, { recursive: true, force: true });
  }
});
