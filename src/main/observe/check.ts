// `mandos --check`'s look at the audit log and the metrics address, as the
// user the server runs as: since neither stops a start any more (one that
// cannot be had is said and tried again while the server serves), a
// mistake in either (a directory not made, a port below 1024, a port
// another program holds) would otherwise show only in the running
// server's log. Each is tried in a child process with the server's user
// and group (root could open and bind what they cannot); nothing is
// created: the file's directory is looked at, not written.

import { spawnSync } from "node:child_process";
import type { MetricsAddress } from "../config/server-settings.js";
import { reasonWithCode } from "../config/os-error.js";

/** What the child does: argv[1] the kind, the rest its arguments; prints "ok" or "CODE words". */
const PROBE = String.raw`
const fs = require("node:fs");
const path = require("node:path");
const [kind, a, b] = process.argv.slice(1);
const fail = (e) => { console.log((e.code ?? "ERROR") + " " + (e.message ?? String(e))); process.exit(0); };
if (kind === "audit") {
  try {
    let st = null;
    try { st = fs.statSync(a); } catch (e) { if (e.code !== "ENOENT") throw e; }
    if (st && !st.isFile() && !st.isCharacterDevice()) fail({ code: "EINVAL", message: "not a regular file" });
    if (st) fs.accessSync(a, fs.constants.W_OK);
    else fs.accessSync(path.dirname(a), fs.constants.W_OK | fs.constants.X_OK);
    console.log("ok");
  } catch (e) { fail(e); }
} else {
  const server = require("node:net").createServer();
  server.once("error", fail);
  server.listen({ host: a, port: Number(b) }, () => server.close(() => console.log("ok")));
}
`;

export interface RunsAs {
  readonly uid: number;
  readonly gid: number;
}

/** `kind` tried as `runsAs` (when started as root) or as this process: null if it works, else "CODE message". */
function probe(runsAs: RunsAs, asRoot: boolean, args: readonly string[]): string | null {
  const r = spawnSync(process.execPath, ["-e", PROBE, ...args], {
    encoding: "utf8", timeout: 10_000, ...(asRoot ? { uid: runsAs.uid, gid: runsAs.gid } : {}),
  });
  const out = r.stdout?.trim() ?? "";
  if (out === "ok") return null;
  return out !== "" ? out : `ERROR the check could not run (${r.error?.message ?? `exit ${r.status}`})`;
}

/** The child's "CODE message" in the server's words: "Permission denied (EACCES)". */
function words(result: string): string {
  const [code, ...rest] = result.split(" ");
  return reasonWithCode(Object.assign(new Error(rest.join(" ")), { code }));
}

/** --check's lines for the audit log and the metrics address (either may be absent). */
export function checkObservability(auditLog: string, metrics: MetricsAddress | undefined, runsAs: RunsAs, asRoot: boolean): string[] {
  const lines: string[] = [];
  const who = `${runsAs.uid}:${runsAs.gid}`;
  if (auditLog !== "") {
    const failed = probe(runsAs, asRoot, ["audit", auditLog]);
    lines.push(failed === null
      ? `ok: audit log: ${auditLog} can be opened for appending by ${who}`
      : `WARNING: audit log: ${auditLog} cannot be opened by ${who}: ${words(failed)}; a start serves without it, its records lost until it can be, tried every 10 s`);
  }
  if (metrics !== undefined) {
    const failed = probe(runsAs, asRoot, ["metrics", metrics.host, String(metrics.port)]);
    const where = `${JSON.stringify(metrics.host)}, port ${metrics.port}`;
    const why = failed === null ? "" : failed.startsWith("EADDRINUSE")
      ? " (held now: by the running server, if it runs, or by another program, which would answer Prometheus and /health in its place)"
      : failed.startsWith("EACCES") && metrics.port < 1024 ? " (ports below 1024 need root, and the server listens after it drops privileges)" : "";
    lines.push(failed === null
      ? `ok: metrics: ${who} can listen on ${where}`
      : `WARNING: metrics: ${who} cannot listen on ${where}: ${words(failed)}${why}; a start serves secrets without /metrics and /health until it can, tried every 10 s`);
  }
  return lines;
}
