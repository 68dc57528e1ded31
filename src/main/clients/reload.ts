// SIGHUP: re-read clients.conf and apply it to the running registry without
// dropping a connection (the reference quits on SIGHUP; we reload). Clients
// gone from the file are removed, new ones added, and for the others every
// setting whose clients.conf value changed since the last read is applied,
// the same precedence a restart gives (a value changed at run time stays
// unless the file's value for it changed; a client given a new key keeps
// its state; a client removed at run time stays removed while the file
// keeps its section).
//
// A new configuration is applied only when the whole file was read and
// parsed: missing, unreadable (any errno) or malformed keeps the running
// one, with one error naming the path and the reason. Only a file that
// really lists no client removes them all.

import type { ClientSettings } from "./settings.js";
import { settingsDiff } from "./runtime-settings.js";
import type { ClientRegistry } from "./registry.js";
import type { ClientsFileReader } from "../config/clients-reader.js";
import { parseClientsConfig, sharedKeyWarnings, type ClientsConfigOptions } from "../config/clients-config.js";
import type { Logger } from "../daemon/log.js";

export interface ReloadSummary {
  readonly added: string[];
  readonly removed: string[];
  readonly changed: string[];
}

export function applyReload(registry: ClientRegistry, before: readonly ClientSettings[], after: readonly ClientSettings[], logger: Logger): ReloadSummary {
  const old = new Map(before.map((c) => [c.name, c]));
  const next = new Map(after.map((c) => [c.name, c]));
  const summary: ReloadSummary = { added: [], removed: [], changed: [] };
  for (const name of old.keys()) {
    if (!next.has(name) && registry.get(name)) {
      registry.remove(name);
      summary.removed.push(name);
    }
  }
  for (const c of after) {
    const o = old.get(c.name);
    if (!o) {
      registry.add(c);
      summary.added.push(c.name);
      continue;
    }
    // In the file before and not in the registry: removed at run time
    // (mandos-ctl --remove). It stays removed, as a restart keeps it.
    if (!registry.get(c.name)) continue;
    // Every runtime setting whose clients.conf value changed, `enabled` included.
    const patch = settingsDiff(o, c);
    if (o.keyId !== c.keyId || o.fingerprint !== c.fingerprint) {
      // A new key: as a restart takes it (the reference's restore), the
      // client keeps its state and its settings changed at run time. Its
      // D-Bus object goes and comes back (KeyID and Fingerprint are const
      // there), and a connection of the old key that waits for approval
      // waits on the old record, and ends.
      const running = registry.entry(c.name)!;
      const runtime = { ...running.runtime };
      registry.remove(c.name);
      registry.add({ ...running.settings, keyId: c.keyId, fingerprint: c.fingerprint }, runtime);
      if (Object.keys(patch).length > 0) registry.reloaded(c.name, patch);
      summary.changed.push(c.name);
    } else if (Object.keys(patch).length > 0) {
      registry.reloaded(c.name, patch);
      summary.changed.push(c.name);
    }
    // Unless changed at run time, the client's settings now equal the new
    // file's: sharing its object lets the previous file's go.
    registry.share(c);
  }
  const part = (names: readonly string[], what: string): string => `${names.length} ${what}${names.length === 0 ? "" : ` (${named(names)})`}`;
  logger.info(`Reloaded clients.conf: ${part(summary.added, "added")}, ${part(summary.removed, "removed")}, ${part(summary.changed, "changed")}`);
  return summary;
}

/** Names a reload line gives, at most; a fleet's reload can change thousands. */
const NAMED_IN_RELOAD_LINE = 10;

function named(names: readonly string[]): string {
  const shown = names.slice(0, NAMED_IN_RELOAD_LINE).join(", ");
  return names.length > NAMED_IN_RELOAD_LINE ? `${shown} and ${names.length - NAMED_IN_RELOAD_LINE} more` : shown;
}

export type ReloadOutcome =
  | { readonly applied: true; readonly clients: ClientSettings[]; readonly summary: ReloadSummary }
  | { readonly applied: false; readonly reason: string };

/**
 * SIGHUP: reads `path` through `reader`, parses it, and applies it over
 * `running` when both succeeded. The caller keeps `clients` as the new
 * running configuration when `applied`.
 */
export async function reloadClientsConfig(
  registry: ClientRegistry,
  running: readonly ClientSettings[],
  path: string,
  reader: ClientsFileReader,
  logger: Logger,
  opts: ClientsConfigOptions = {},
): Promise<ReloadOutcome> {
  const read = await reader.read();
  let reason: string;
  if (read.ok) {
    try {
      const clients = parseClientsConfig(read.text, path, opts);
      if (clients.length === 0 && running.length > 0) {
        logger.warning(`${path} lists no clients: removing all ${running.length}`);
      }
      for (const warning of sharedKeyWarnings(clients)) logger.warning(warning);
      return { applied: true, clients, summary: applyReload(registry, running, clients, logger) };
    } catch (error) {
      // A ConfigError's message already names the file, line and key.
      reason = error instanceof Error ? error.message : String(error);
    }
  } else {
    reason = `${path}: ${read.reason}`;
  }
  logger.error(`Not reloading clients.conf: ${reason}; keeping the running configuration (${running.length} clients)`);
  return { applied: false, reason };
}
