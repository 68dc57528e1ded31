// Signals ignored by whoever started the server stay ignored, as in the
// reference: Python keeps an inherited SIG_IGN (SIGINT included: its
// KeyboardInterrupt handler goes in only over SIG_DFL), so `mandos
// --foreground &` from a script (whose background jobs start with SIGINT
// and SIGQUIT ignored) survives a Ctrl-C in that terminal. Node resets every
// disposition but SIGPIPE's and SIGXFSZ's to the default before any script
// runs, so bin/mandos's first line, a shell, reads its own ignored set
// (/proc/self/status, SigIgn) and hands it over in MANDOS_IGNORED_SIGNALS.
// Run as `node bin/mandos`, nobody has read it and nothing is kept ignored.

import { constants } from "node:os";

export const IGNORED_SIGNALS_ENV = "MANDOS_IGNORED_SIGNALS";

/**
 * The signals kept ignored when inherited so; a listener that does nothing
 * stands for SIG_IGN, which Node cannot set. Not among them:
 * - SIGHUP, SIGTERM: the reference handles them whatever it inherits (GLib's
 *   unix_signal_add), and so do we; `nohup mandos` stops or reloads alike.
 * - SIGPIPE, SIGXFSZ (Node ignores them anyway), SIGUSR1 (always ignored:
 *   process-guards.ts), SIGCHLD (libuv's), SIGKILL, SIGSTOP.
 * - SIGTTIN, SIGTTOU: a caught one makes a background read or write on the
 *   terminal raise it again and restart, over and over, where an ignored
 *   one lets the write through and fails the read.
 * - The faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS),
 *   and SIGPROF, V8's profiler's.
 */
export const KEPT_IGNORED: readonly NodeJS.Signals[] = [
  "SIGINT", "SIGQUIT", "SIGUSR2", "SIGALRM", "SIGTSTP", "SIGVTALRM", "SIGXCPU", "SIGIO", "SIGPWR", "SIGSTKFLT",
];

/** The signals of KEPT_IGNORED set in `mask`, /proc's SigIgn hex (bit N-1 for signal N). */
export function parseIgnoredMask(mask: string | undefined): ReadonlySet<NodeJS.Signals> {
  const ignored = new Set<NodeJS.Signals>();
  if (mask === undefined || !/^[0-9a-fA-F]{1,32}$/.test(mask.trim())) return ignored;
  const bits = BigInt(`0x${mask.trim()}`);
  const numbers = constants.signals as Readonly<Record<string, number | undefined>>;
  for (const name of KEPT_IGNORED) {
    const n = numbers[name];
    if (n !== undefined && ((bits >> BigInt(n - 1)) & 1n) === 1n) ignored.add(name);
  }
  return ignored;
}

let inherited: { readonly mask: string | undefined; readonly signals: ReadonlySet<NodeJS.Signals> } | undefined;

/**
 * Once, first thing: reads and removes MANDOS_IGNORED_SIGNALS (checkers
 * are not to see it) and keeps those signals ignored. Returns them.
 */
export function keepInheritedIgnores(env: NodeJS.ProcessEnv = process.env): ReadonlySet<NodeJS.Signals> {
  if (inherited !== undefined) return inherited.signals;
  const mask = env[IGNORED_SIGNALS_ENV];
  delete env[IGNORED_SIGNALS_ENV];
  inherited = { mask, signals: parseIgnoredMask(mask) };
  for (const signal of inherited.signals) process.on(signal, () => undefined);
  return inherited.signals;
}

/** Whether `signal` came ignored and stays so (the server then takes no action on it). */
export function ignoredOnStart(signal: NodeJS.Signals): boolean {
  return keepInheritedIgnores().has(signal);
}

/** For a process that continues this one (the detached server): the variable as it came. */
export function inheritedIgnoresEnv(): NodeJS.ProcessEnv {
  keepInheritedIgnores();
  const mask = inherited?.mask;
  return mask === undefined ? {} : { [IGNORED_SIGNALS_ENV]: mask };
}
