// The one place the unix-dgram addon is loaded: Node's core has no unix
// datagram sockets, and syslog (/dev/log), the audit log's syslog copy and
// systemd's $NOTIFY_SOCKET all need sendto(2) (docs/OPERATION.md,
// "Logging"). It is the only native addon the server loads, built by
// node-gyp at `npm ci` for the Node.js release that ran the install; after
// an upgrade of Node.js without a rebuild it no longer loads. Losing those
// datagrams must not stop the server serving its clients: a failed load is
// said once, on standard error, with what to do, and the callers go on
// without it.

import { createRequire } from "node:module";
import { dirname } from "node:path";
import { notifyWarning } from "./daemonize.js";

export interface UnixDgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, callback: (err?: Error) => void): void;
  close(): void;
  on(event: "error", listener: (err: Error) => void): void;
}

export interface UnixDgramModule {
  createSocket(type: "unix_dgram"): UnixDgramSocket;
}

/** Why the addon did not load, said in full for an operator. */
export interface AddonUnavailable {
  readonly unavailable: string;
}

const require = createRequire(import.meta.url);

let loaded: UnixDgramModule | AddonUnavailable | undefined;

/** The installation's directory (where `npm rebuild` must run), or null if unix-dgram is not even there. */
function installDir(): string | null {
  try {
    // .../node_modules/unix-dgram/package.json
    return dirname(dirname(dirname(require.resolve("unix-dgram/package.json"))));
  } catch {
    return null;
  }
}

/**
 * Why a load failed, in one line: for an addon built for another release,
 * the two NODE_MODULE_VERSIONs Node's loader names; otherwise its first
 * line (bindings' "Could not locate the bindings file" for one never
 * built); and the command that fixes it.
 */
export function describeLoadFailure(error: unknown, dir: string | null = installDir(), version = process.version): string {
  const text = error instanceof Error ? error.message : String(error);
  const abi = /NODE_MODULE_VERSION (\d+)\. This version of Node\.js requires\s+NODE_MODULE_VERSION (\d+)/.exec(text);
  const why = abi ? `built for NODE_MODULE_VERSION ${abi[1]}, this release needs ${abi[2]}` : text.split(/\s*Tried:|\n/)[0]!.trim();
  const where = dir === null ? "where mandos-ts is installed" : `in ${dir}`;
  return `the unix-dgram addon does not load on Node.js ${version} (${why}); ` +
    `run "npm rebuild unix-dgram" ${where} (or npm ci again) after changing Node.js`;
}

/** The addon, or why it does not load; tried once a process. */
export function unixDgram(): UnixDgramModule | AddonUnavailable {
  if (loaded === undefined) {
    try {
      loaded = require("unix-dgram") as UnixDgramModule;
    } catch (error) {
      loaded = { unavailable: describeLoadFailure(error) };
    }
  }
  return loaded;
}

/** What the server already said it goes without, this process. */
const said = new Set<string>();

/**
 * The addon, or undefined after saying on `stderr` why not and what the
 * server goes without (`losing`, e.g. "syslog"): the reason once a
 * process, each loss once.
 */
export function unixDgramOrSay(losing: string, stderr: NodeJS.WritableStream = process.stderr): UnixDgramModule | undefined {
  const addon = unixDgram();
  if (!("unavailable" in addon)) return addon;
  if (!said.has(losing)) {
    const text = said.size === 0 ? `${addon.unavailable}; until then, no ${losing}` : `unix-dgram does not load (see above), so also no ${losing}`;
    stderr.write(`Mandos [${process.pid}]: ${text}\n`);
    // A detached daemon's stderr is /dev/null: whoever started it hears it through the parent.
    notifyWarning(text);
    said.add(losing);
  }
  return undefined;
}
