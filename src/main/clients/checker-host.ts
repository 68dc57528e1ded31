// Where checker processes are started: in a small helper process, the
// checker host (../../workers/checker-host.ts), not in the server.
//
// Why: Node's spawn() blocks its thread until the child has called exec,
// and the fork before it copies the page tables of the whole server. An
// idle server with 10,000 clients and a two-minute interval (83 checkers a
// second) spent 34% of a core on its main thread in spawn() alone, and a
// spawn in a reboot wave took ~60 ms of the main thread (docs/
// BENCHMARK.md, "Timers in one heap, checkers in a process of their
// own"). The host pays that instead, on another core, and the main thread
// sends one message a checker.
//
// A small installation does not need it: below CHECKER_HOST_MIN_CLIENTS
// clients (asked at each checker, so a fleet that grows gets it) checkers
// start in the server, as the reference starts them, and no helper
// process takes its memory. Once started, the host stays.
//
// The host is started by allow() when the server has enough clients then,
// else on the first checker once it has: the server calls allow() once
// privileges are dropped, so the host, and every checker it starts, runs
// as the user the server becomes. Started then, before the first
// connection, its fork (~25 ms of the main thread) and its start-up (~0.1 s
// of a core) do not fall in a reboot wave, where the first checker due
// used to start it (docs/BENCHMARK.md, "A wave's slowest 1%"). Checkers
// due before allow() wait for it: the reference drops privileges before
// it makes its clients, so none of its checkers runs as root either. If the host cannot start, checkers
// are started here. A host that dies is started again on the next
// checker; the checkers it was waiting for are reported as killed by
// SIGKILL (their outcome is unknown). A host whose files are another build
// than the server's (`npm install -g` of another tarball meanwhile,
// src/build.ts) says so and ends; checkers then start here until restart.

import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Logger } from "../daemon/log.js";
import type { BuildStamp } from "../../build.js";
import type { CheckerProcess } from "./record.js";
import { shellSpawner, type CheckerSpawner } from "./shell-spawner.js";

/** Server to host. */
export type HostRequest = { readonly run: number; readonly command: string } | { readonly kill: number };
/**
 * Host to server: once when loaded, then once a checker; or, from a host
 * of another build, `otherBuild` (what to log) and nothing else. Every
 * later build must say that alike (src/build.ts).
 */
export type HostReport =
  | { readonly ready: true }
  | { readonly done: number; readonly code: number | null; readonly signal: number | null; readonly startError?: string }
  | { readonly otherBuild: string };

const HOST_SCRIPT = fileURLToPath(new URL("../../workers/checker-host.js", import.meta.url));

/**
 * From how many clients the host is worth its ~20 MiB (60 MiB RSS, 40 of
 * them the node binary's pages shared with the server). Below it, at the
 * default two-minute interval, fewer than one checker starts a second,
 * each ~5 ms of the main thread of a server this small (docs/BENCHMARK.md):
 * under 0.4% of it.
 */
export const CHECKER_HOST_MIN_CLIENTS = 100;

/** Where the host finds the server's NODE_OPTIONS, which it is started without and gives back to the checkers. */
export const HOST_NODE_OPTIONS = "MANDOS_CHECKER_HOST_NODE_OPTIONS";
/** Set (to "1") for a host whose checkers write to the server's standard output and error (--debug). */
export const HOST_SHOW_OUTPUT = "MANDOS_CHECKER_HOST_SHOW_OUTPUT";
/** The server's build as JSON (a BuildStamp), which the host compares with its own files'. */
export const HOST_BUILD = "MANDOS_CHECKER_HOST_BUILD";

/** The outcome reported for checkers the host took with it. */
const HOST_DIED_SIGNAL = 9;

type Done = (code: number | null, signal: number | null, startError?: string) => void;

/** A checker due before allow(): started then, unless killed first. */
interface WaitingChecker extends CheckerProcess {
  readonly command: string;
  readonly done: Done;
  started: CheckerProcess | null;
  killed: boolean;
}

export interface CheckerHostOptions {
  readonly logger: Logger;
  /** The host's script; tests give another. */
  readonly script?: string;
  /** Whether a checker is worth starting the host for now (the server: enough clients); always, if not given. */
  readonly worthIt?: () => boolean;
  /** Checkers write to the server's standard output and error (--debug; shell-spawner.ts's showCheckerOutput). */
  readonly showOutput?: boolean;
  /** The server's build (src/build.ts), given to the host. */
  readonly build?: BuildStamp;
}

export class CheckerHost {
  readonly #logger: Logger;
  readonly #script: string;
  readonly #worthIt: () => boolean;
  readonly #showOutput: boolean;
  readonly #build: BuildStamp | undefined;
  /**
   * Where checkers go: "waiting" before allow(), "host" after it, "here"
   * (the server process) once the host could not start or was closed.
   */
  #stage: "waiting" | "host" | "here" = "waiting";
  readonly #waiting: WaitingChecker[] = [];
  #child: ChildProcess | null = null;
  #ready = false;
  #nextId = 1;
  /** Checkers sent to the current host, not yet reported. */
  readonly #pending = new Map<number, Done>();

  constructor(options: CheckerHostOptions) {
    this.#logger = options.logger;
    this.#script = options.script ?? HOST_SCRIPT;
    this.#worthIt = options.worthIt ?? (() => true);
    this.#showOutput = options.showOutput === true;
    this.#build = options.build;
  }

  /** What the registry calls to start a checker. */
  readonly spawner: CheckerSpawner = (command, done) => this.#spawn(command, done);

  /** Privileges are final: the host starts if it is worth it, and checkers go to it from now on, those waiting first. */
  allow(): void {
    if (this.#stage !== "waiting") return;
    this.#stage = "host";
    if (this.#worthIt()) this.#start();
    for (const w of this.#waiting.splice(0)) if (!w.killed) w.started = this.#dispatch(w.command, w.done);
  }

  /** The host's process ID while it runs (tests). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Ends the host (checkers already started go on, as in-process ones would). */
  close(): void {
    this.#stage = "here";
    for (const w of this.#waiting.splice(0)) w.kill();
    const child = this.#child;
    if (child?.connected) child.disconnect();
  }

  #spawn(command: string, done: Done): CheckerProcess {
    if (this.#stage !== "waiting") return this.#dispatch(command, done);
    const w: WaitingChecker = {
      command,
      done,
      started: null,
      killed: false,
      kill() {
        if (w.started) return w.started.kill();
        if (w.killed) return;
        w.killed = true;
        // Never started: reported as a checker killed by SIGTERM, later, as an exit is.
        queueMicrotask(() => done(null, 15));
      },
    };
    this.#waiting.push(w);
    return w;
  }

  #dispatch(command: string, done: Done): CheckerProcess {
    if (this.#stage !== "host" || (this.#child === null && !this.#worthIt())) return shellSpawner(command, done);
    const child = this.#child ?? this.#start();
    if (child === null) return shellSpawner(command, done);
    const id = this.#nextId++;
    this.#pending.set(id, done);
    if (this.#pending.size === 1) this.#hold(child, true);
    this.#send(child, { run: id, command });
    return {
      kill: () => {
        if (this.#child === child && this.#pending.has(id)) this.#send(child, { kill: id });
      },
    };
  }

  #send(child: ChildProcess, request: HostRequest): void {
    // A host gone meanwhile reports its pending checkers from "exit".
    if (child.connected) child.send(request, (error) => void error);
  }

  #start(): ChildProcess | null {
    let child: ChildProcess;
    try {
      // No inherited node flags (a profiler or a preload of the server's is
      // not the host's), from the command line or from NODE_OPTIONS, which
      // the host puts back for the checkers (HOST_NODE_OPTIONS); its own
      // stderr for a crash message.
      const { NODE_OPTIONS: nodeOptions, ...env } = process.env;
      if (nodeOptions !== undefined) env[HOST_NODE_OPTIONS] = nodeOptions;
      if (this.#showOutput) env[HOST_SHOW_OUTPUT] = "1";
      if (this.#build) env[HOST_BUILD] = JSON.stringify(this.#build);
      child = fork(this.#script, [], { execArgv: [], env, stdio: ["ignore", this.#showOutput ? "inherit" : "ignore", "inherit", "ipc"], cwd: "/", serialization: "json" });
    } catch (error) {
      this.#fail(`cannot start the checker host: ${error instanceof Error ? error.message : String(error)}`);
      return null;
    }
    this.#child = child;
    this.#ready = false;
    child.on("message", (m: HostReport) => this.#onReport(m));
    child.on("error", (error) => this.#onExit(child, error.message));
    child.on("exit", (code, signal) => this.#onExit(child, signal ?? `exit code ${code}`));
    // The host keeps the server's event loop alive only while it runs
    // checkers, as the checkers' own processes would.
    this.#hold(child, false);
    return child;
  }

  #hold(child: ChildProcess, hold: boolean): void {
    const channel = child.channel as { ref(): void; unref(): void } | null | undefined;
    if (hold) {
      child.ref();
      channel?.ref();
    } else {
      child.unref();
      channel?.unref();
    }
  }

  #onReport(m: HostReport): void {
    if ("ready" in m) {
      this.#ready = true;
      return;
    }
    if ("otherBuild" in m) {
      if (this.#stage === "host") this.#fail(`the checker host did not start: ${m.otherBuild}`);
      // Closing its channel ends it; its exit reports the checkers it was sent as killed.
      if (this.#child?.connected) this.#child.disconnect();
      return;
    }
    const done = this.#pending.get(m.done);
    if (!done) return;
    this.#pending.delete(m.done);
    if (this.#pending.size === 0 && this.#child) this.#hold(this.#child, false);
    done(m.code, m.signal, m.startError);
  }

  #onExit(child: ChildProcess, why: string): void {
    if (this.#child !== child) return;
    this.#child = null;
    const everReady = this.#ready;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    if (!everReady && this.#stage === "host") this.#fail(`the checker host ended before it was ready (${why})`);
    else if (this.#stage === "host") this.#logger.warning(`The checker host ended (${why}); ${pending.length} running checker(s) reported killed`);
    for (const done of pending) done(null, HOST_DIED_SIGNAL);
  }

  #fail(reason: string): void {
    this.#stage = "here";
    this.#logger.warning(`${reason}; checkers start in the server process`);
  }
}
