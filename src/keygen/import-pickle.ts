// `mandos-keygen --import-pickle FILE`: a dry run of the migration our
// server does at start-up from the Python server's clients.pickle
// (src/main/state/pickle-import.ts): what each client would start as,
// which settings come from the pickle rather than clients.conf, and whether
// its stored secret opens. Nothing is written; no secret is printed.

import { readFileSync } from "node:fs";
import { loadClientsConfig } from "../main/config/index.js";
import type { Logger } from "../main/daemon/log.js";
import { openingProgress } from "../main/observe/start-progress.js";
import { stateFromPickle } from "../main/state/pickle-import.js";
import { restoreState } from "../main/state/state-file.js";
import { KeygenError } from "./errors.js";

const SHOWN = ["enabled", "timeout", "extendedTimeout", "interval", "approvalDelay", "approvalDuration", "approvedByDefault", "checker", "host"] as const;

export async function importPickleDryRun(picklePath: string, clientsConfPath: string, out: (t: string) => void): Promise<number> {
  let data: Buffer;
  try {
    data = readFileSync(picklePath);
  } catch (error) {
    throw new KeygenError("ENROLL_BAD_INPUT", `Cannot read ${picklePath}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const config = loadClientsConfig(clientsConfPath);
  const notes: string[] = [];
  const logger: Logger = {
    debug: (m) => notes.push(m), info: (m) => notes.push(m), warning: (m) => notes.push(`warning: ${m}`),
    error: (m) => notes.push(`error: ${m}`), critical: (m) => notes.push(`critical: ${m}`),
  };
  const now = Date.now();
  let state;
  try {
    // Minutes for a big fleet: how far it has come goes to standard error.
    const progress = openingProgress((line) => void process.stderr.write(`${line}\n`), null);
    state = await stateFromPickle(data, config, now, logger, progress);
    progress.end();
  } catch (error) {
    out(`${picklePath} cannot be imported: ${(error as Error).message}\nThe server would not start on it: move it, or start the server with --no-restore to begin from ${clientsConfPath} alone.\n`);
    return 1;
  }
  const restored = restoreState(config, state, now, logger);
  const removed = new Set(state.removed ?? []);
  for (const conf of config) {
    if (removed.has(conf.name)) {
      out(`[${conf.name}] removed at run time (mandos-ctl --remove): stays removed while clients.conf keeps its section\n`);
      continue;
    }
    const s = restored.settings.find((c) => c.name === conf.name)!;
    if (!state.clients[s.name]) {
      out(`[${s.name}] not in the pickle: starts from clients.conf\n`);
      continue;
    }
    const changed = SHOWN.filter((f) => s[f] !== conf[f]).map((f) => `${f} ${String(conf[f])} -> ${String(s[f])}`);
    // Never the secret itself: only that the pickle's (set at run time, mandos-ctl --secret) is not clients.conf's.
    if (!s.secret.equals(conf.secret)) changed.push("secret (set at run time; not clients.conf's)");
    out(`[${s.name}] ${s.enabled ? "enabled" : "disabled"}; ${changed.length ? `from the pickle: ${changed.join(", ")}` : "as in clients.conf"}\n`);
  }
  for (const note of notes) out(`  ${note}\n`);
  out(`Dry run: nothing was written; ${picklePath} is never changed.\n`);
  return 0;
}
