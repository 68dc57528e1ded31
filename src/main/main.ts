// Start-up and shutdown of the server: command line, configuration files,
// logging, registry, handshake runner, listener and signals, in the order
// the reference's main() does them. Exit codes as the reference's: 0; 1 on a
// fatal start-up failure; 2 on a usage error (argparse's).

import { existsSync, lstatSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { isIP } from "node:net";
import { DEFAULT_PRIORITY, parsePriority, type TlsSettings } from "../tls/index.js";
import { EXIT_FAILURE, EXIT_OK, parseCommandLine, usageError, type CommandLine } from "./config/cli.js";
import { createHandshakeRunner, defaultWorkerCount } from "./serve/handshake-runner.js";
import { Listener } from "./serve/listener.js";
import { interfaceExists } from "./serve/interface-filter.js";
import { checkPassedSocket } from "./serve/passed-socket.js";
import { bindOnDevice } from "./serve/device-socket.js";
import { defaultServeThreadCount, ServeThreads } from "./serve/serve-threads.js";
import { knownKeysOf } from "./serve/known-keys.js";
import { DEFAULT_MAX_PER_SOURCE, MAX_OPEN_CONNECTIONS, openConnectionsAllowed } from "./serve/limits.js";
import { openFilesLimit } from "./daemon/open-files.js";
import { consoleSink, FanOutLogger, silentLogger, type Logger } from "./daemon/log.js";
import { logServeEvents } from "./daemon/log-serve.js";
import { systemClock } from "./clock.js";
import { events } from "./events.js";
import { daemonize, isDaemonChild, notifyFailed, notifyReady } from "./daemon/daemonize.js";
import { takeEarlyHangup } from "./daemon/early-hangup.js";
import { ignoredOnStart } from "./daemon/inherited-signals.js";
import { PidFile } from "./daemon/pidfile.js";
import { checkClientsConfMode, chooseIds, dropPrivileges } from "./daemon/privileges.js";
import { syslogSink } from "./daemon/syslog.js";
import { givenInFile, mergeSettings, type ServerSettings } from "./config/server-settings.js";
import { ServerConfigRecheck } from "./config/server-recheck.js";
import { SettingsError } from "./daemon/errors.js";
import { clientsConfRefusal, loadServerConfig, clientKeyWarnings, LOGGED_WARNINGS_PER_KIND, readClientsConfig } from "./config/index.js";
import { createRegistry, type ClientRegistry } from "./clients/registry.js";
import { CHECKER_HOST_MIN_CLIENTS, CheckerHost } from "./clients/checker-host.js";
import { keepFromChildren } from "./clients/inherited-descriptors.js";
import { showCheckerOutput } from "./clients/shell-spawner.js";
import type { ClientSettings } from "./clients/settings.js";
import { reloadClientsConfig } from "./clients/reload.js";
import { logClientEvents } from "./daemon/log-clients.js";
import { clientsFileReader, readClientsBytes, reloadReadiness, type ClientsFileReader } from "./config/clients-reader.js";
import { runSelfTest } from "./daemon/self-test.js";
import { readState, restoreState, routineChange, SAVE_RETRY_MS, StateSaver, StateSerialiser, STATE_FILE_NAME, STATE_PREPARE_DELAY_MS, STATE_PREPARE_SLICE_MS, STATE_WARM_SLICE_MS, type ClientView, type ConfigField, type StateFile } from "./state/state-file.js";
import { checkStateDirWritable, ensureStateDir, prepareStateDir, stateDirNotDirectory } from "./state/state-dir.js";
import { migrateReferenceState, pendingMigration, pickleClientCount, PICKLE_FILE_NAME } from "./state/pickle-import.js";
import { referencePickle, warmReferencePickle, type ReferencePickle } from "./state/pickle-export.js";
import { removeStaleTemporaries, writeAtomically } from "./state/state-writer.js";
import { reasonInWords, strerror } from "./config/os-error.js";
import { handshakesUnderWay, SecretOpening } from "./state/secret-opening.js";
import type { Announcement } from "./zeroconf/announcement.js";
import type { DbusService } from "./dbus/index.js";
import type { FleetState } from "./fleet/fleet-state.js";
import { collectGarbage, HeapWatch } from "./daemon/memory.js";
import { markCloseOnExec, nameProcess, releaseFreePages } from "./daemon/unix-datagram.js";
import { Observability } from "./observe/index.js";
import { checkObservability } from "./observe/check.js";
import { LISTEN_CHECK_MS, listeningSocketLost } from "./serve/listening-socket.js";
import { systemdNotifier, type SystemdNotifier } from "./observe/sd-notify.js";
import { openingProgress, roughly } from "./observe/start-progress.js";
import { StartPhases } from "./observe/start-phases.js";
import { installedBuild, readableBuild } from "../build.js";
import { BuildWatch } from "./daemon/build-watch.js";

/** How long SIGTERM waits for connections already in progress. */
const SHUTDOWN_GRACE_MS = 5_000;
/** How long the stop's pickle keys wait, while handshakes are under way, before they look again. */
const PICKLE_KEYS_BUSY_WAIT_MS = 1_000;

/**
 * The build whose modules this process loaded: read as they are, once.
 * What it starts later (handshake workers, serve threads, the checker
 * host) is checked against it (src/build.ts).
 */
const RUNNING_BUILD = installedBuild();

/** The settings --check looks at; the error when they cannot be read (the self-test says the rest). */
function checkSettings(cli: CommandLine): { settings: ServerSettings; unreadable: string | null } | Error {
  try {
    const file = loadServerConfig(join(cli.configdir, "mandos.conf"));
    return { settings: mergeSettings(cli, givenInFile(file), { priority: DEFAULT_PRIORITY, workers: 0, maxPerSource: DEFAULT_MAX_PER_SOURCE }, file), unreadable: file.found ? null : reasonInWords(file.unreadable) };
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

/**
 * `--check`: mandos.conf (with the command line) and clients.conf read as a
 * start reads them, secfiles too; the first error of each, which names
 * file, line and key, is a FAILED line. True when a start would get past both.
 */
function checkConfiguration(cli: CommandLine, checked: ReturnType<typeof checkSettings>): boolean {
  const mandosConf = join(cli.configdir, "mandos.conf");
  // "settings": the error may be the command line's (--priority: ...).
  if (checked instanceof Error) process.stdout.write(`FAILED: settings: ${checked.message}\n`);
  else process.stdout.write(`ok: settings: ${checked.unreadable === null ? mandosConf : `the defaults (${mandosConf} cannot be read: ${checked.unreadable})`} and the command line are as a start reads them\n`);
  const clientsPath = join(cli.configdir, "clients.conf");
  // A relative secfile is read from the start's working directory: "/"
  // once it detaches (below), and under systemd (the unit's default).
  const detaches = checked instanceof Error ? !cli.debug && !cli.foreground : !checked.settings.debug && !checked.settings.foreground;
  const relative: string[] = [];
  try {
    const read = readClientsConfig(clientsPath, {
      secfileBase: detaches ? "/" : process.cwd(),
      onRelativeSecfile: (place, value, path) => relative.push(`${place.file}:${place.line} [${place.section}]: secfile ${JSON.stringify(value)} is relative: a start reads it from its working directory, "/" when it detaches or runs under systemd; checked as ${path}`),
    });
    // There and unreadable stops a start; missing does only beside saved clients (checkState).
    const refusal = read.unreadable?.code === "ENOENT" ? null : clientsConfRefusal(clientsPath, read.unreadable, 0, "");
    if (refusal !== null) throw new Error(refusal);
    const clients = read.clients;
    process.stdout.write(`ok: clients.conf: ${clientsPath} is as a start reads it, ${clients.length} client${clients.length === 1 ? "" : "s"}\n`);
    for (const warning of [...relative, ...clientKeyWarnings(clients)]) process.stdout.write(`WARNING: clients.conf: ${warning}\n`);
  } catch (error) {
    process.stdout.write(`FAILED: clients.conf: ${error instanceof Error ? error.message : String(error)}\n`);
    return false;
  }
  return !(checked instanceof Error);
}

/**
 * `--check`: the state a start would restore. What it would import from a
 * Python server's clients.pickle, and how long it would open its secrets
 * while serving (docs/ENROLL.md); else whether clients.json can be read
 * back. False where a start would stop on it.
 */
async function checkState(settings: ServerSettings, uid: number): Promise<boolean> {
  let config: ClientSettings[];
  const clientsPath = join(settings.configdir, "clients.conf");
  let unreadable: NodeJS.ErrnoException | null;
  try {
    ({ clients: config, unreadable } = readClientsConfig(clientsPath));
  } catch {
    return true; // the self-test and the start say why
  }
  const notDirectory = stateDirNotDirectory(settings.statedir);
  if (notDirectory !== null) {
    process.stdout.write(`FAILED: state: ${notDirectory}\n`);
    return false;
  }
  const statePath = join(settings.statedir, STATE_FILE_NAME);
  const owners = process.getuid?.() === 0 ? [uid] : [];
  let ours: StateFile | null;
  try {
    ours = readState(statePath, silentLogger, owners);
  } catch (error) {
    process.stdout.write(`FAILED: state: ${(error as Error).message}\n`);
    return false;
  }
  if (unreadable?.code === "ENOENT") {
    const refusal = unreadClientsConf(clientsPath, unreadable, settings.statedir, ours, true, owners);
    if (refusal !== null) {
      process.stdout.write(`FAILED: state: ${refusal}\n`);
      return false;
    }
  }
  const pending = await pendingMigration(settings.statedir, statePath, ours, config, owners);
  if (pending === null) {
    if (ours !== null) process.stdout.write(`ok: state: ${statePath} restores ${Object.keys(ours.clients).length} clients\n`);
    return true;
  }
  if ("unreadable" in pending) {
    process.stdout.write(`FAILED: state: ${pending.path} cannot be imported (${pending.unreadable}): a start stops on it; move it, or start with --no-restore to begin from clients.conf alone\n`);
    return false;
  }
  const time = pending.oneSecretMs === null ? "" :
    ` (about ${roughly((pending.sealed * pending.oneSecretMs) / pending.threads)} in all on ${pending.threads} thread${pending.threads === 1 ? "" : "s"}, more while connections are served; one took ${Math.round(pending.oneSecretMs)} ms here)`;
  const which = pending.replaces ? `the next start imports ${pending.path} in place of ${statePath} (the Python server ran after this one last saved)` : `the first start imports ${pending.path}`;
  process.stdout.write(`ok: ${which}: ${pending.clients} clients; it serves at once and opens their ${pending.sealed} sealed secrets meanwhile, each asking client's first${time}\n`);
  return true;
}

/**
 * Why a start must stop on clients.conf unread (clientsConfRefusal), given
 * the state it would restore: clients.json as read (`ours`), or the
 * pickle it would import, whichever holds more clients; null: it may start.
 */
function unreadClientsConf(clientsPath: string, unreadable: NodeJS.ErrnoException, statedir: string, ours: StateFile | null, restore: boolean, owners: readonly number[]): string | null {
  const statePath = join(statedir, STATE_FILE_NAME);
  const held = ours === null ? 0 : Object.keys(ours.clients).length + (ours.removed?.length ?? 0);
  const inPickle = restore ? pickleClientCount(statedir, statePath, ours, owners) : 0;
  return clientsConfRefusal(clientsPath, unreadable, Math.max(held, inPickle), inPickle > held ? join(statedir, PICKLE_FILE_NAME) : statePath);
}

/** Whether `path` exists, a dangling symbolic link included (readState then says why it is refused). */
function pathExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function fail(message: string): number {
  process.stderr.write(`mandos: ${message}\n`);
  notifyFailed(message); // a detached child tells the waiting parent
  return EXIT_FAILURE;
}

export async function main(argv: readonly string[]): Promise<number> {
  const parsed = parseCommandLine(argv);
  if (parsed.kind === "exit") return parsed.code;
  const cli = parsed.options;
  if (cli.check) {
    // Not the server: a hangup (its terminal closed) ends it from here, as
    // any command's; one held while it loaded is dropped, there is nothing
    // here to reload (daemon/early-hangup.ts).
    takeEarlyHangup();
    const startedAsRoot = process.getuid?.() === 0;
    const runsAs = startedAsRoot ? chooseIds() : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const reload = reloadReadiness(join(cli.configdir, "clients.conf"), runsAs, startedAsRoot);
    process.stdout.write(`${reload.ok ? "ok" : "WARNING"}: clients.conf reloads: ${reload.message}\n`);
    const checked = checkSettings(cli);
    const configured = checkConfiguration(cli, checked);
    const etcd = checked instanceof Error ? null : checked.settings.etcd;
    if (etcd) {
      const { probeEtcd } = await import("./fleet/fleet-state.js");
      const why = await probeEtcd(etcd);
      process.stdout.write(why === null ? `ok: etcd reachable at ${etcd.endpoints.join(",")}\n` : `WARNING: etcd unreachable at ${etcd.endpoints.join(",")}: ${why}\n`);
    }
    if (!(checked instanceof Error)) {
      for (const line of checkObservability(checked.settings.auditLog, checked.settings.metrics, runsAs, startedAsRoot)) process.stdout.write(`${line}\n`);
    }
    const restorable = checked instanceof Error || !checked.settings.restore || await checkState(checked.settings, runsAs.uid);
    const passed = runSelfTest();
    return passed && configured && restorable ? EXIT_OK : EXIT_FAILURE;
  }

  // Where the start's time goes, said once serving (observe/start-phases.ts).
  const phases = new StartPhases();
  phases.end("loading");
  // /proc/PID/comm "mandos", as the reference's: Debian's init script
  // stops and reloads it by that name (start-stop-daemon --name mandos).
  nameProcess("mandos");

  let settings: ServerSettings;
  let recheck: ServerConfigRecheck;
  try {
    const path = join(cli.configdir, "mandos.conf");
    const file = loadServerConfig(path);
    const defaults = { priority: DEFAULT_PRIORITY, workers: defaultWorkerCount(), maxPerSource: DEFAULT_MAX_PER_SOURCE, serveThreads: defaultServeThreadCount() };
    settings = mergeSettings(cli, givenInFile(file), defaults, file);
    // Absolute now: a detached server reads it again (at SIGHUP) from "/".
    recheck = new ServerConfigRecheck(resolve(path), cli, defaults, file);
  } catch (error) {
    if (error instanceof SettingsError && error.code === "MANDOS_NEEDS_PORT") {
      return usageError(error.message);
    }
    return fail(error instanceof Error ? error.message : String(error));
  }

  // As the reference, whose socket.fromfd() and bind fail before it forks.
  if (settings.socket !== undefined && !isDaemonChild()) {
    const passed = checkPassedSocket(settings.socket, settings.address, settings.port);
    if (passed) return fail(`could not listen: ${passed.message}`);
  }

  // mandos(8): detach unless --foreground or --debug. The parent waits for
  // the child's listener (src/main/daemon/daemonize.ts) and never returns here.
  const detach = !settings.debug && !settings.foreground;
  // The child starts where we were, so relative --configdir/--statedir keep
  // their meaning; it then moves to "/" as daemon(3) does.
  if (detach && !isDaemonChild()) await daemonize({ cwd: process.cwd(), keepFds: settings.socket === undefined ? [] : [settings.socket] });
  if (detach) {
    settings = { ...settings, configdir: resolve(settings.configdir), statedir: resolve(settings.statedir) };
    process.chdir("/");
  }

  const logger = new FanOutLogger();
  // As the reference's initlogger(): syslog, and with --debug standard
  // error too. In the foreground (systemd's unit runs --foreground, and the
  // journal reads both /dev/log and standard error) a record goes to
  // standard error only when syslog does not take it.
  const fallback = !settings.debug && settings.foreground ? consoleSink(settings.debuglevel) : undefined;
  const syslog = syslogSink({ level: settings.debuglevel, serviceName: settings.servicename, fallback });
  logger.addSink(syslog);
  if (settings.debug) logger.addSink(consoleSink("DEBUG"));
  logClientEvents(logger);
  const stopServeLog = logServeEvents(logger);
  try {
    workerCountWarnings(settings, cli, logger);
    return await serve(settings, detach, logger, (name) => syslog.setServiceName(name), recheck, phases);
  } finally {
    // The summaries still pending (lines held back from a noisy peer,
    // connections refused at the open-files cap) are written as it leaves.
    stopServeLog();
    syslog.close();
  }
}

/** Everything from the configuration to shutdown; resolves to the exit code. */
async function serve(settings: ServerSettings, detach: boolean, logger: FanOutLogger, renamed: (name: string) => void, recheck: ServerConfigRecheck, phases: StartPhases): Promise<number> {
  // Signals that arrive while starting are held and handled once serving
  // (Node's default for SIGHUP and SIGTERM would kill the server at once,
  // even after its "Now listening" line).
  const early: NodeJS.Signals[] = [];
  const holdSignal = (signal: NodeJS.Signals): void => void early.push(signal);
  for (const signal of HANDLED_SIGNALS) process.on(signal, holdSignal);
  // One since exec, held by bin/mandos before this module loaded, is
  // applied first (daemon/early-hangup.ts). In the parent that detaches
  // (daemonize, which never returns), that holder stays until it exits.
  if (takeEarlyHangup() && HANDLED_SIGNALS.includes("SIGHUP")) early.push("SIGHUP");
  try {
    return await startAndServe(settings, detach, logger, early, renamed, recheck, phases);
  } finally {
    for (const signal of HANDLED_SIGNALS) process.off(signal, holdSignal);
  }
}

/**
 * Opens, in the background, the secrets the Python server sealed in
 * clients.pickle that the registry's clients still wait for (after a
 * switch, or a start that stopped before they were all open): followed in
 * the log and in systemd's STATUS= (observe/start-progress.ts); null when
 * there are none. It pauses while `busy` (a reboot storm gets every core).
 */
function openSealedSecrets(registry: ClientRegistry, logger: Logger, systemd: SystemdNotifier | null, busy: () => boolean): SecretOpening | null {
  const toOpen = registry.secretsToOpen();
  if (toOpen.length === 0) return null;
  const progress = openingProgress((line) => logger.info(line), systemd, "; clients are served meanwhile, each one's secret opened first as it asks");
  const opening = new SecretOpening(toOpen, { holder: registry, logger, watch: progress, busy });
  registry.onSecretWanted((name) => opening.hurry(name));
  opening.start();
  void opening.done.then((all) => all && progress.end());
  return opening;
}

/** SIGINT is the reference's KeyboardInterrupt, unless it came ignored (daemon/inherited-signals.ts). */
const HANDLED_SIGNALS: readonly NodeJS.Signals[] = (["SIGTERM", "SIGINT", "SIGHUP"] as const).filter((signal) => !ignoredOnStart(signal));

/** What --workers and --serve-threads cannot do as given: said, not refused. */
function workerCountWarnings(settings: ServerSettings, cli: CommandLine, logger: Logger): void {
  if (settings.serveThreads > 0 && (cli.workers ?? 0) > 0) logger.warning(`--workers ${cli.workers} is not used with ${settings.serveThreads} serve threads: they run the handshakes themselves`);
  // Each worker is a V8 isolate (~10 MiB, and its start-up); past the cores they serve no faster.
  const cores = availableParallelism();
  if (settings.serveThreads === 0 && settings.workers > cores) logger.warning(`${settings.workers} handshake workers on ${cores} cores: workers beyond the cores serve no faster, and each costs ~10 MiB and start-up time`);
}

async function startAndServe(
  settings: ServerSettings,
  detach: boolean,
  logger: FanOutLogger,
  early: NodeJS.Signals[],
  renamed: (name: string) => void,
  recheck: ServerConfigRecheck,
  phases: StartPhases,
): Promise<number> {
  let tlsSettings: TlsSettings;
  try {
    tlsSettings = parsePriority(settings.priority);
  } catch (error) {
    return fail(`bad priority string: ${error instanceof Error ? error.message : String(error)}`);
  }
  for (const what of tlsSettings.ignored) logger.warning(`Priority string: ${what}`);
  phases.end("settings");

  const clientsPath = join(settings.configdir, "clients.conf");
  const statePath = join(settings.statedir, STATE_FILE_NAME);
  // Under Type=notify (docs/OBSERVABILITY.md): READY=1 once serving, and
  // then how far the opening of a migrated pickle's secrets has come.
  const systemd = systemdNotifier();
  // The user we become after binding, when we start as root.
  const runAs = process.getuid?.() === 0 ? chooseIds() : undefined;
  let registry: ClientRegistry;
  // Descriptors we inherited reach no checker, as none reaches the
  // reference's (clients/inherited-descriptors.ts): marked close-on-exec,
  // or, where the addon cannot, closed by the checker host, which then
  // starts every checker.
  const unmarked = keepFromChildren(markCloseOnExec);
  if (unmarked.length > 0) {
    logger.debug(`Descriptors ${unmarked.join(", ")} were inherited and cannot be marked close-on-exec without the addon; checkers start in the checker host, which closes them`);
  }
  // Checker processes start in a helper process once privileges are dropped, given enough clients (clients/checker-host.ts).
  // --debug: checkers write to our standard output and error, as the reference's do.
  showCheckerOutput(settings.debug);
  const checkerHost = new CheckerHost({
    logger,
    build: RUNNING_BUILD,
    worthIt: () => unmarked.length > 0 || registry.size >= CHECKER_HOST_MIN_CLIENTS,
    showOutput: settings.debug,
  });
  // The state file's bytes, made from the registry (below) at each save.
  const serialiser = new StateSerialiser();
  // The Python server's state file: imported at a switch, left for it at each stop.
  const picklePath = join(settings.statedir, PICKLE_FILE_NAME);
  let config: readonly ClientSettings[];
  let editedInFile: ReadonlyMap<string, readonly ConfigField[]>;
  // The state file's changes not yet in etcd (docs/ETCD.md "When etcd is down").
  let fleetUnsent: readonly unknown[];
  try {
    const read = readClientsConfig(clientsPath);
    config = read.clients;
    for (const warning of clientKeyWarnings(config, LOGGED_WARNINGS_PER_KIND)) logger.warning(warning);
    phases.end("clients.conf");
    const owners = runAs ? [runAs.uid] : [];
    let saved: StateFile | null = null;
    // Not a directory: said so, not as a state file in it that cannot be read.
    const notDirectory = stateDirNotDirectory(settings.statedir);
    if (notDirectory !== null) return fail(`${notDirectory}; not started: give --statedir a directory (made if missing)`);
    // clients.conf unread: stopped on where a start would lose state (clientsConfRefusal).
    if (read.unreadable !== null) {
      const ours = settings.restore && pathExists(statePath) ? readState(statePath, silentLogger, owners) : null;
      const refusal = unreadClientsConf(clientsPath, read.unreadable, settings.statedir, ours, settings.restore, owners);
      if (refusal !== null) return fail(refusal);
    }
    if (settings.restore) {
      // Ours first (a file that cannot be restored stops the start), then
      // the Python server's clients.pickle (docs/ENROLL.md): imported when
      // there is no clients.json, or the reference ran since this server
      // last saved. Its sealed secrets are opened once serving
      // (state/secret-opening.ts).
      const hasOurs = pathExists(statePath);
      const ours = hasOurs ? readState(statePath, logger, owners) : null;
      const migrated = await migrateReferenceState(settings.statedir, statePath, ours, config, Date.now(), logger, owners);
      // Neither file: the reference's line for a first start.
      if (!hasOurs && migrated.pickleSha256 === null) readState(statePath, logger, owners);
      saved = migrated.state;
      serialiser.importedPickle = migrated.pickleSha256;
      phases.end("state file");
    }
    const restored = settings.restore ? restoreState(config, saved, Date.now(), logger) : { settings: config, runtimes: new Map(), edited: new Map() };
    // The reference replaces its file only as it exits; ours at its first save, a second from now.
    if (!settings.restore && existsSync(statePath)) logger.warning(`Not restoring state (--no-restore): ${statePath} is not read, and the first save replaces it`);
    // The Python server's, replaced as this one stops (state/pickle-export.ts), as the reference replaces it.
    if (!settings.restore && existsSync(picklePath)) logger.warning(`Not restoring state (--no-restore): ${picklePath} is not read, and is replaced as the server stops`);
    fleetUnsent = saved?.fleetUnsent ?? [];
    phases.end("restore");
    registry = createRegistry(restored.settings, { logger, spawner: checkerHost.spawner }, restored.runtimes);
    editedInFile = restored.edited;
    phases.end("registry");
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error));
  }
  // As the reference, after the restore: clients removed at run time count as none.
  if (registry.size === 0) {
    logger.warning("No clients defined");
    const read = config.length === 0 ? readClientsBytes(clientsPath) : { ok: true as const };
    if (!read.ok) logger.warning(`Could not read ${clientsPath}: ${read.reason}`);
  }

  // Several servers, one registry (docs/ETCD.md), made below when etcd is configured.
  let fleet: FleetState | null = null;
  // With etcd, the changes it has not yet acknowledged are saved with the state they belong to.
  // One lookup for every save, not an arrow made a save: the save calls it
  // for each client, and an arrow made anew lost its optimised code at
  // each full collection (docs/BENCHMARK.md, "Closures compiled again").
  const entryOf = (name: string): ClientView | undefined => registry.entry(name);
  // Each save makes the state directory again if it is missing (as the user we become).
  const saver = new StateSaver(statePath, () => serialiser.list(config, registry.entries(), Date.now(), fleet?.unsent() ?? [], entryOf), systemClock, () => ensureStateDir(settings.statedir));
  // Off until privileges are dropped: no save is written as root.
  let keepState = false;
  // Why the state directory could not be used at start, until a save succeeds (for /health).
  let stateDirProblem: string | null = null;
  const stateDirUsable = (): void => {
    stateDirProblem = null;
  };
  const stateChanged = (): void => {
    if (keepState) saver.changed();
  };
  // The keys that the stop's clients.pickle seals the secrets with
  // (state/pickle-export.ts), derived a slice at a time once the first
  // save is warm, and again over clients.conf after a reload changed it;
  // no more once the server stops. The stop then only ciphers. Not while
  // handshakes are under way: a server started with its fleet (a data
  // centre's power back) would spend ~4 s of its main thread on them
  // during the wave at 20,000 clients; they wait PICKLE_KEYS_BUSY_WAIT_MS
  // and look again.
  let pickleKeys: Iterator<ClientSettings> | null = null;
  let pickleKeysOff = false;
  const pickleKeySlice = (): void => {
    if (pickleKeysOff || pickleKeys === null) return;
    if (handshakesUnderWay(listener.handshakes)) {
      setTimeout(pickleKeySlice, PICKLE_KEYS_BUSY_WAIT_MS).unref();
      return;
    }
    if (!warmReferencePickle(pickleKeys, STATE_WARM_SLICE_MS)) {
      setImmediate(pickleKeySlice);
      return;
    }
    pickleKeys = null;
    logger.debug(`Derived ahead the keys that seal the secrets of ${config.length} client${config.length === 1 ? "" : "s"} for the Python server`);
  };
  const warmPickleKeys = (): void => {
    if (!keepState || pickleKeysOff) return;
    const idle = pickleKeys === null;
    pickleKeys = config[Symbol.iterator]();
    if (idle) setImmediate(pickleKeySlice);
  };
  // The changed clients' pieces are made ahead of the save, those of
  // STATE_PREPARE_DELAY_MS at a time, in slices (StateSerialiser.prepare).
  let preparing = false;
  const prepareSlice = (): void => {
    if (keepState && !serialiser.prepare(config, entryOf, STATE_PREPARE_SLICE_MS)) setImmediate(prepareSlice);
    else preparing = false;
  };
  registry.subscribe((event) => {
    if (event.type === "client-not-found" || event.type === "need-approval" || event.type === "checker-started" || event.type === "approval-wait-ended") return;
    // Which client to look at again; the set of clients, when it changed.
    serialiser.changed(event.type === "client-added" || event.type === "client-removed" ? null : event.client.name);
    // A checker's success and a secret sent wait for a routine save (ROUTINE_SAVE_DELAY_MS).
    if (keepState) {
      if (routineChange(event)) saver.routine();
      else saver.changed();
    }
    if (keepState && !preparing) {
      preparing = true;
      setTimeout(prepareSlice, STATE_PREPARE_DELAY_MS).unref();
    }
  });
  // registry.start() (checkers and expiry timers) waits for D-Bus, below.
  // Without etcd the fleet serves degraded. etcd3 (and its gRPC stack) is
  // loaded only when etcd is configured.
  if (settings.etcd) {
    const fleetModule = await import("./fleet/fleet-state.js");
    try {
      // Reads etcd's CA, certificate, key and password now, as root.
      fleet = new fleetModule.FleetState(settings.etcd, { registry, logger, clock: systemClock, editedInFile, unsent: fleetUnsent });
    } catch (error) {
      registry.stop();
      return fail(error instanceof Error ? error.message : String(error));
    }
    await fleet.start();
    phases.end("etcd");
    // gRPC says only "No connection established" when TLS fails: say why.
    if (fleet.degraded) {
      void (await import("./fleet/tls-diagnosis.js")).explainEtcdTls(settings.etcd, fleetModule.REQUEST_TIMEOUT_MS).then((why) => {
        if (why) logger.error(`etcd: ${why}`);
      });
    }
  }
  // D-Bus and Zeroconf code is loaded only when used, and now, while we
  // may still read files that the user we become cannot.
  const dbusModule = settings.useDbus ? await import("./dbus/index.js") : null;
  const zeroconfModule = settings.zeroconf ? await import("./zeroconf/announce.js") : null;
  // Start-up's garbage, once; none is forced later (memory.ts says why).
  collectGarbage();
  // What start-up freed in malloc's arenas goes back to the kernel, and so
  // after each full collection (docs/OPERATION.md, "Memory").
  releaseFreePages();
  // Warns when the clients alive near the heap's cap (docs/OPERATION.md, "Memory").
  const heapWatch = new HeapWatch(logger, { afterFull: releaseFreePages });
  heapWatch.start();
  // Says when another build is installed under us (npm install -g, no restart yet).
  const buildWatch = new BuildWatch(RUNNING_BUILD, logger);
  buildWatch.start();
  phases.end("modules and garbage collection");
  // Serve threads run their handshakes inline: no pool beside them.
  const threaded = settings.serveThreads > 0;
  const runner = createHandshakeRunner(threaded ? 0 : settings.workers, tlsSettings, knownKeysOf(registry), {
    build: RUNNING_BUILD,
    onInline: (why) => logger.warning(`A handshake worker did not start: ${why}; handshakes run on the main thread`),
    onWorkerError: (message) => logger.warning(`A handshake worker failed: ${message}`),
    onWorkerExit: (message) => logger.warning(message),
    onWorkerStuck: (message) => logger.error(message),
  });
  // Past the open-files limit, accept(2) fails and libuv closes every
  // connection waiting without a word: hold fewer than it allows.
  const openFiles = openFilesLimit();
  const maxOpen = openConnectionsAllowed(openFiles, threaded ? settings.serveThreads : settings.workers);
  if (maxOpen < MAX_OPEN_CONNECTIONS) {
    logger.warning(`Open files are limited to ${openFiles} (RLIMIT_NOFILE): at most ${maxOpen} connections open at once instead of ${MAX_OPEN_CONNECTIONS}; raise LimitNOFILE= (systemd) or ulimit -n`);
  }
  const serveThreads = threaded ? new ServeThreads(settings.serveThreads, { registry, tlsSettings, logger, maxPerSource: settings.maxPerSource, maxOpen, build: RUNNING_BUILD }) : null;
  const listener = serveThreads ?? new Listener({ registry, runner, tlsSettings, logger, clock: systemClock, maxPerSource: settings.maxPerSource, maxOpen });
  // Metrics, audit log, health (docs/OBSERVABILITY.md): counting from the first connection.
  let accepting = false;
  // The listening socket can die without a word (serve/listening-socket.ts): looked at while serving.
  let listenerLost: string | null = null;
  const observe = await Observability.start(settings, systemd, {
    clientCounts: () => registry.counts(), handshakes: () => listener.handshakes, get workers() { return runner.workers; }, serveThreads: settings.serveThreads, build: RUNNING_BUILD, installedBuild: readableBuild,
    workerQueue: () => runner.queued, workersReplaced: () => runner.replaced, workersUnanswering: () => runner.unanswering, ...(fleet ? { etcd: fleet.link.bind(fleet) } : {}), accepting: () => accepting, listenerLost: () => listenerLost ?? serveThreads?.unanswering() ?? null, stateNotKept: () => (stateDirProblem === null ? null : `${settings.statedir} is not usable: ${stateDirProblem}`),
  });
  // As the reference's SO_BINDTODEVICE failing with ENODEV: said, and every interface served.
  let servedInterface = settings.interface || undefined;
  if (servedInterface !== undefined && !interfaceExists(servedInterface)) {
    logger.error(`Interface ${servedInterface} does not exist, cannot bind`);
    servedInterface = undefined;
  }
  let bound: { address: string; port: number };
  try {
    // --interface: bound to it by the kernel where the addon can (as the
    // reference); else, or on a passed socket, filtered by local address.
    let fd = settings.socket;
    let filtered = servedInterface;
    if (servedInterface !== undefined && fd === undefined) {
      const onDevice = await bindOnDevice(servedInterface, settings.address, settings.port, settings.useIpv6);
      if (onDevice.kind === "bound") {
        fd = onDevice.fd;
        filtered = undefined;
      } else if (onDevice.kind === "refused") {
        // The reference's lines; it then serves every interface, we filter.
        if (onDevice.code === "EPERM") logger.error(`No permission to bind to interface ${servedInterface}`);
        else if (onDevice.code === "ENOPROTOOPT") logger.error(`SO_BINDTODEVICE not available; cannot bind to interface ${servedInterface}`);
        else {
          // Gone since it was looked for.
          logger.error(`Interface ${servedInterface} does not exist, cannot bind`);
          filtered = undefined;
        }
      }
    }
    bound = await listener.listen({
      address: settings.address,
      port: settings.port,
      ipv6: settings.useIpv6,
      fd,
      interface: filtered,
    });
    phases.end("handshake workers and listening socket");
  } catch (error) {
    registry.stop();
    await fleet?.stop();
    await runner.close();
    await observe.close();
    logger.critical(`Could not listen: ${error instanceof Error ? error.message : String(error)}`);
    return fail(`could not listen: ${error instanceof Error ? error.message : String(error)}`);
  }
  // As the reference's main(): open the pid file while still root, then drop
  // privileges, then write our pid.
  let pidFile: PidFile | undefined;
  if (detach) {
    try {
      pidFile = PidFile.open();
    } catch (error) {
      logger.error(error instanceof Error ? error.message : String(error));
    }
  }
  checkClientsConfMode(clientsPath, logger);
  // SIGHUP re-reads clients.conf after the drop: as root, through a reader
  // kept as root, so that Debian's root-only clients.conf still reloads.
  const clientsReader: ClientsFileReader = clientsFileReader(clientsPath);
  // The state directory is made if missing, for the user we become (as
  // Debian's package makes /var/lib/mandos), and must be writable by it.
  let stateDir = prepareStateDir(settings.statedir, runAs);
  if (stateDir.ok && stateDir.created) logger.info(`Created state directory ${settings.statedir}`);
  // Workers read their code as they start: let them, before the drop.
  if (runAs && !(await runner.ready())) logger.error("Handshake workers did not start in time; handshakes may fail");
  if (runAs && serveThreads && !(await serveThreads.ready())) logger.error("Serve threads did not start in time; connections may fail");
  try {
    dropPrivileges(logger);
  } catch (error) {
    clientsReader.close();
    await listener.close(0);
    registry.stop();
    await fleet?.stop();
    await runner.close();
    await observe.close();
    return fail(error instanceof Error ? error.message : String(error));
  }
  checkerHost.allow();
  if (stateDir.ok) stateDir = checkStateDirWritable(settings.statedir);
  // Saved from now on, whether or not the directory is usable yet: a save
  // that fails is said and tried again every SAVE_RETRY_MS until one
  // succeeds (a file system still read-only early in boot), as one that
  // starts failing later is, and the last save, as the server stops, fails
  // it (ERROR, exit 1) rather than leave without a word.
  keepState = true;
  if (stateDir.ok) {
    const stale = [...removeStaleTemporaries(statePath), ...removeStaleTemporaries(picklePath)];
    if (stale.length > 0) logger.info(`Removed ${stale.length} temporary state file${stale.length === 1 ? "" : "s"} that an interrupted save left in ${settings.statedir}: ${stale.join(", ")}`);
    // The first save's work (every secret sealed, every client serialised),
    // done ahead of it a few milliseconds at a time between connections.
    const warming = registry.entries();
    const warmSlice = (): void => {
      if (!serialiser.warm(config, warming, STATE_WARM_SLICE_MS)) setImmediate(warmSlice);
      else warmPickleKeys();
    };
    setImmediate(warmSlice);
  } else {
    stateDirProblem = stateDir.reason;
    events.stateSaved.subscribe(stateDirUsable);
    logger.warning(`Cannot keep persistent state in ${settings.statedir}: ${stateDir.reason}; state is not saved until it can be, tried again every ${SAVE_RETRY_MS / 1000} s`);
    warmPickleKeys();
  }
  saver.changed();
  try {
    pidFile?.write();
  } catch (error) {
    logger.error(error instanceof Error ? error.message : String(error));
  }
  phases.end("privileges and state directory");
  // Neither refuses the start: what cannot be opened is said and tried again (observe/index.ts).
  await observe.open((message) => logger.error(message), (message) => logger.info(message));
  phases.end("metrics and audit log");
  // The family of the socket bound, not use_ipv6: an IPv4 address or host
  // name binds IPv4 even with IPv6 on, ::1 binds IPv6 with --no-ipv6, and so
  // may a --socket (docs/DIFFERENCES.md). The line and the announcement
  // follow it: announced over the other protocol, a mandos-client resolves
  // an address of that family and is refused.
  const boundIpv6 = isIP(bound.address) === 6;
  if (boundIpv6) {
    logger.info(`Now listening on address '${bound.address}', port ${bound.port}, flowinfo 0, scope_id 0`);
  } else {
    logger.info(`Now listening on address '${bound.address}', port ${bound.port}`);
  }

  // DBUS-API, after dropping privileges as the reference does (the policy
  // file lets root and the _mandos group own the name). Without a bus we
  // log a warning and serve on.
  let dbus: DbusService | null = null;
  if (dbusModule) {
    dbus = await dbusModule.startDbusService(registry, { logger });
    phases.end("D-Bus");
  }
  // Checkers and expiry timers start once the clients are on the bus (or
  // D-Bus is off, or absent): as the reference, which exports each client
  // before its init_checker, so that mandos-monitor sees a checker's
  // CheckerStarted before its CheckerCompleted and each client's first
  // Expires after its InterfacesAdded. Secrets are served meanwhile; the
  // wait is the bus's answers to connecting and to claiming each name
  // (BUS_CONNECT_TIMEOUT_MS at most for each).
  registry.start();
  phases.end("checkers and expiry timers");

  // mandos(8): announce the port we got; a Zeroconf failure is logged inside
  // and the server keeps serving.
  let announcement: Announcement | undefined;
  if (zeroconfModule) {
    announcement = await zeroconfModule.startAnnouncement({
      name: settings.servicename,
      port: bound.port,
      interface: settings.interface,
      ipv6: boundIpv6,
      logger,
      // The syslog tag follows a rename ("Mandos (Mandos #2) [PID]:"), as the reference's does.
      onRename: renamed,
    });
    phases.end("Zeroconf");
  }

  notifyReady();
  accepting = true;
  observe.ready();
  // Once lost, said once: /health says 503 and the watchdog stops, so that
  // systemd restarts the server (WatchdogSec=, docs/OBSERVABILITY.md).
  // A socket never seen listening is not watched: one inherited (--socket)
  // from another network namespace is not in this one's tables, and would
  // be taken for lost at once, and restarted for ever by the watchdog.
  let seenListening = false;
  const lookAtListener = (): void => {
    if (!accepting) return;
    const lost = listeningSocketLost(listener.fd);
    if (lost === null) {
      seenListening = true;
      return;
    }
    clearInterval(listenCheck);
    if (!seenListening) {
      logger.debug(`The listening socket is not among this network namespace's listening sockets (${lost}): not watched`);
      return;
    }
    listenerLost = lost;
    logger.critical(`Not accepting connections: ${lost}; the server must be restarted (under systemd, its watchdog does)`);
  };
  const listenCheck = setInterval(lookAtListener, LISTEN_CHECK_MS);
  // A serve thread wedged by a bug: said, and /health and the watchdog fail.
  const stopLiveness = serveThreads?.watchLiveness();
  // Once now, as it has just begun to listen: a socket lost in the first second is still seen lost.
  lookAtListener();
  listenCheck.unref();
  // One line, not one a client (docs/OPERATION.md, "Starting").
  logger.debug(phases.line(registry.size));
  logger.debug("Starting main loop");
  const opening = openSealedSecrets(registry, logger, systemd, () => handshakesUnderWay(listener.handshakes));

  return new Promise<number>((resolve) => {
    let stopping = false;
    let exitCode = EXIT_OK;
    serveThreads?.onEnded((why) => {
      logger.critical(`A serve thread ended: ${why.message}; stopping`);
      exitCode = EXIT_FAILURE;
      stop("SIGTERM");
    });
    const pickleForReference = (): ReferencePickle | null => {
      try {
        return referencePickle(config, registry.entries(), Date.now());
      } catch (error) {
        logger.warning(`Could not make ${picklePath} for the Python server: ${reasonInWords(error)}`);
        return null;
      }
    };
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      accepting = false;
      pickleKeysOff = true;
      clearInterval(listenCheck);
      stopLiveness?.();
      // The reference logs nothing at SIGTERM and "Server exiting" as it
      // leaves its main loop; SIGINT is its KeyboardInterrupt.
      if (signal === "SIGINT") logger.debug("Server received KeyboardInterrupt");
      logger.debug("Server exiting");
      // Nothing of the reference runs once its loop has quit: no checker
      // starts and no client expires in the connections' grace below.
      registry.stopChecking();
      void (async () => {
        await announcement?.stop();
        // A serve thread that does not answer is given up on, said, and a failure exit.
        if ((await listener.close(SHUTDOWN_GRACE_MS)) === false) exitCode = EXIT_FAILURE;
        // After the connections' grace, in which one may wait for its
        // secret: those not yet open stay sealed in the state file, for
        // the next start.
        await opening?.stop();
        await dbus?.stop();
        registry.stop();
        heapWatch.stop();
        buildWatch.stop();
        // Saved before the fleet's last writes, which wait for etcd (at
        // most a few seconds); saved again after them, so the file holds
        // no change as unsent that etcd has since taken. The last save
        // looks at every client, announced changes or not.
        serialiser.changed(null);
        // The Python server's clients.pickle, for an admin going back to
        // it (state/pickle-export.ts), made first: clients.json records
        // its digest, so that our next start does not import it.
        const forReference = keepState ? pickleForReference() : null;
        if (forReference) {
          serialiser.importedPickle = forReference.sha256;
          const { ahead, now } = forReference.keys;
          logger.debug(`Sealed ${ahead + now} secrets for the Python server, ${now} of them with a key derived as the server stops`);
        }
        let unsaved = keepState ? saver.saveNow() : null;
        if (fleet) {
          await fleet.stop();
          if (keepState) unsaved = saver.saveNow();
        }
        // Said whatever the saves before said (the log says a failing
        // reason once), and a failure exit, as the reference's raise.
        if (unsaved !== null) {
          logger.error(`Could not save persistent state as the server stops: ${strerror(unsaved)} (${statePath}); the changes since the last save are lost`);
          exitCode = EXIT_FAILURE;
        }
        // A save overtaken by saveNow removes its temporary file.
        await saver.idle();
        // After clients.json, so that it is the newer of the two.
        if (forReference) {
          try {
            // The chunks as they were pickled, one writev(2) (pickle-write.ts).
            writeAtomically(picklePath, forReference.data.chunks);
          } catch (error) {
            logger.warning(`Could not write ${picklePath} for the Python server: ${reasonInWords(error)}; it would not find the state this server leaves`);
          } finally {
            forReference.data.wipe();
          }
        }
        events.stateSaved.unsubscribe(stateDirUsable);
        await observe.close();
        await runner.close();
        clientsReader.close();
        checkerHost.close();
        pidFile?.remove();
        resolve(exitCode);
      })();
    };
    const handlers: Record<string, () => void> = {
      SIGTERM: () => stop("SIGTERM"),
      SIGINT: () => stop("SIGINT"),
      SIGHUP: () => {
        // A failure is said, and tried again every 10 s (observe/audit.ts).
        observe.reopen();
        // A reload re-reads clients.conf, not the server's code nor
        // mandos.conf: said if either changed.
        buildWatch.check();
        recheck.check(logger);
        reload();
      },
    };
    // One reload at a time; signals during one ask for one more after it.
    let reloading = false;
    let again = false;
    const reload = (): void => {
      if (stopping) return;
      if (reloading) {
        again = true;
        return;
      }
      reloading = true;
      observe.reloading();
      void (async () => {
        do {
          again = false;
          const outcome = await reloadClientsConfig(registry, config, clientsPath, clientsReader, logger);
          if (outcome.applied) {
            config = outcome.clients;
            stateChanged();
            warmPickleKeys();
          }
        } while (again && !stopping);
        reloading = false;
        if (!stopping) observe.reloaded();
      })();
    };
    for (const signal of HANDLED_SIGNALS) process.on(signal, handlers[signal]!);
    for (const signal of early.splice(0)) handlers[signal]!();
  });
}
