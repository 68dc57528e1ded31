// The checker host: a process of its own that starts the server's checker
// processes, so that the fork and exec of each (which block the thread that
// spawns) do not stop the server's main thread (src/main/clients/
// checker-host.ts says why and how it is used). It loads nothing but that
// module (its protocol), the spawner and inherited-descriptors.ts, runs as
// the user the server became, and ends when the server's channel closes
// (not on the signals that stop the server, below); checkers it started go
// on, as they would have.

import { HOST_BUILD, HOST_NODE_OPTIONS, HOST_SHOW_OUTPUT, type HostReport, type HostRequest } from "../main/clients/checker-host.js";
import { otherBuildThan, type BuildStamp } from "../build.js";
import type { CheckerProcess } from "../main/clients/record.js";
import { closeInheritable } from "../main/clients/inherited-descriptors.js";
import { shellSpawner, showCheckerOutput } from "../main/clients/shell-spawner.js";

// Descriptors the server inherited and could not mark close-on-exec (no
// addon) came with us: closed here, so that no checker gets them, as no
// reference checker does (../main/clients/inherited-descriptors.ts). Our
// channel to the server stays.
const channelFd = (process.channel as { fd?: unknown } | undefined)?.fd;
closeInheritable(typeof channelFd === "number" ? [channelFd] : []);

// --debug: the checkers' output to the server's terminal, as from the server itself.
showCheckerOutput(process.env[HOST_SHOW_OUTPUT] === "1");
delete process.env[HOST_SHOW_OUTPUT];

// The server's environment for the checkers, as it was: we were started
// without its NODE_OPTIONS (its flags are not ours).
const nodeOptions = process.env[HOST_NODE_OPTIONS];
delete process.env[HOST_NODE_OPTIONS];
if (nodeOptions !== undefined) process.env.NODE_OPTIONS = nodeOptions;

// The server's build: ours (our files') must be it, or we start no checker.
const serverBuild = process.env[HOST_BUILD];
delete process.env[HOST_BUILD];
const otherBuild = otherBuildThan(serverBuild === undefined ? undefined : (JSON.parse(serverBuild) as BuildStamp));

const running = new Map<number, CheckerProcess>();

// A server that ended between our check and the write (a checker killed
// by its shutdown, reported as it closes the channel) makes the write fail
// with EPIPE: without a callback that is an uncaught 'error' and a stack
// trace on the server's stderr. The 'disconnect' that follows ends us.
const report = (m: HostReport): void => {
  if (process.connected) process.send?.(m, undefined, undefined, () => {});
};

process.on("message", (m: HostRequest) => {
  if (otherBuild !== null) return;
  if ("run" in m) {
    const id = m.run;
    try {
      running.set(
        id,
        shellSpawner(m.command, (code, signal, startError) => {
          running.delete(id);
          report(startError === undefined ? { done: id, code, signal } : { done: id, code, signal, startError });
        }),
      );
    } catch (error) {
      // What a shell that cannot be started reports (as shellSpawner's "error").
      report({ done: id, code: 127, signal: null, startError: (error as NodeJS.ErrnoException).code ?? (error as Error).message });
    }
  } else {
    running.get(m.kill)?.kill();
  }
});
process.on("disconnect", () => process.exit(0));
// The signals that stop the server reach its whole process group or
// control group (a terminal's ^C, systemd's KillMode=control-group): the
// server's own shutdown, which kills its checkers, then closes the channel.
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(signal, () => {});
if (otherBuild === null) report({ ready: true });
// Said; the server then closes our channel, which ends us, and starts its checkers itself.
else report({ otherBuild });
