// SIGHUP: re-read clients.conf and apply it to the running registry without
// dropping a connection (the reference quits on SIGHUP; we reload). Clients
// gone from the file are removed, new ones added, and for the others every
// setting whose clients.conf value changed since the last read is applied,
// the same precedence a restart gives (a value changed at run time stays
// unless the file's value for it changed; a client given a new key keeps
// its state; a client removed at run time stays removed while the file
// keeps its section; a client a reload removed comes back as it was if a
// later reload adds its section back with the same key).
//
// A new configuration is applied only when the whole file was read and
// parsed: missing, unreadable (any errno) or malformed keeps the running
// one, with one error naming the path and the reason. Only a file that
// really lists no client removes them all.

import type { ClientRuntime } from "./contract.js";
import type { ClientSettings } from "./settings.js";
import { settingsDiff } from "./runtime-settings.js";
import type { ClientRegistry } from "./registry.js";
import type { ClientsFileReader } from "../config/clients-reader.js";
import { clientKeyWarnings, LOGGED_WARNINGS_PER_KIND, parsedTextDigest, type ClientsConfigOptions } from "../config/clients-config.js";
import { parseClientsFile } from "../config/clients-off-thread.js";
import type { Logger } from "../daemon/log.js";

export interface ReloadSummary {
  readonly added: string[];
  readonly removed: string[];
  readonly changed: string[];
}

/**
 * A client a reload removed, as it was: its section in the file then,
 * and its settings and state in effect. A later reload that adds a client
 * of that name and key back restores it from here, as if the section had
 * never gone: a file caught half written or empty (an editor's truncate,
 * a full disk, logrotate's weekly reload landing mid-edit) then loses
 * nothing once it is whole again, and a machine disabled at run time (a
 * stolen one) does not come back enabled.
 */
interface RemovedByReload {
  readonly file: ClientSettings;
  readonly settings: ClientSettings;
  readonly runtime: ClientRuntime;
}

/** Clients removed by reloads that are remembered, at most (the oldest go first): a fleet's worth. */
export const MAX_REMEMBERED_REMOVALS = 100_000;

/** Per registry, the clients its reloads removed, oldest first. */
const removedByReload = new WeakMap<ClientRegistry, Map<string, RemovedByReload>>();

export function applyReload(registry: ClientRegistry, before: readonly ClientSettings[], after: readonly ClientSettings[], logger: Logger): ReloadSummary {
  const old = new Map(before.map((c) => [c.name, c]));
  const next = new Map(after.map((c) => [c.name, c]));
  const summary: ReloadSummary = { added: [], removed: [], changed: [] };
  let removed = removedByReload.get(registry);
  if (!removed) removedByReload.set(registry, (removed = new Map()));
  for (const [name, file] of old) {
    if (next.has(name)) continue;
    const running = registry.entry(name);
    if (running) {
      removed.delete(name);
      removed.set(name, { file, settings: running.settings, runtime: { ...running.runtime } });
      if (removed.size > MAX_REMEMBERED_REMOVALS) removed.delete(removed.keys().next().value!);
      registry.remove(name);
      summary.removed.push(name);
    }
  }
  for (const c of after) {
    const o = old.get(c.name);
    if (!o) {
      summary.added.push(c.name);
      const gone = removed.get(c.name);
      removed.delete(c.name);
      if (!gone || gone.file.keyId !== c.keyId || gone.file.fingerprint !== c.fingerprint) {
        registry.add(c);
        continue;
      }
      // Back as it was when a reload removed it, with what the file changed since.
      registry.add(gone.settings, gone.runtime);
      logger.info(`Client ${c.name} is back in clients.conf: restored as it was when a reload removed it${gone.runtime.enabled ? "" : " (disabled)"}`);
      const patch = settingsDiff(gone.file, c);
      if (Object.keys(patch).length > 0) registry.reloaded(c.name, patch);
      registry.share(c);
      continue;
    }
    // The same in both files: the same object (parseClientsFile), nothing
    // to apply; shared, if a restore at start made the registry's a copy.
    if (o === c) {
      registry.share(c);
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
  logReloaded(logger, summary);
  return summary;
}

/** The reload's INFO line: what it added, removed and changed. */
function logReloaded(logger: Logger, summary: ReloadSummary): void {
  const part = (names: readonly string[], what: string): string => `${names.length} ${what}${names.length === 0 ? "" : ` (${named(names)})`}`;
  logger.info(`Reloaded clients.conf: ${part(summary.added, "added")}, ${part(summary.removed, "removed")}, ${part(summary.changed, "changed")}`);
}

/** Names a reload line gives, at most; a fleet's reload can change thousands. */
const NAMED_IN_RELOAD_LINE = 10;

function named(names: readonly string[]): string {
  const shown = names.slice(0, NAMED_IN_RELOAD_LINE).join(", ");
  return names.length > NAMED_IN_RELOAD_LINE ? `${shown} and ${names.length - NAMED_IN_RELOAD_LINE} more` : shown;
}

export type ReloadOutcome =
  | { readonly applied: true; readonly clients: readonly ClientSettings[]; readonly summary: ReloadSummary }
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
    // In a worker thread: the parse of a fleet's file would hold this one
    // for seconds. The same text as last applied (logrotate's weekly
    // SIGHUP), no secfile in it, is not parsed again: nothing can have changed.
    const parsed = await parseClientsFile(read.bytes, path, parsedTextDigest(running), running, opts);
    if (parsed.kind === "unchanged") {
      for (const warning of clientKeyWarnings(running, LOGGED_WARNINGS_PER_KIND)) logger.warning(warning);
      logger.debug(`${path} is as it was last read: not parsed again`);
      const summary: ReloadSummary = { added: [], removed: [], changed: [] };
      logReloaded(logger, summary);
      return { applied: true, clients: running, summary };
    }
    if (parsed.kind === "parsed") {
      const { clients } = parsed;
      if (clients.length === 0 && running.length > 0) {
        logger.warning(`${path} lists no clients: removing all ${running.length}`);
      }
      for (const warning of parsed.warnings) logger.warning(warning);
      return { applied: true, clients, summary: applyReload(registry, running, clients, logger) };
    }
    reason = parsed.reason;
  } else {
    reason = `${path}: ${read.reason}`;
  }
  logger.error(`Not reloading clients.conf: ${reason}; keeping the running configuration (${running.length} clients)`);
  return { applied: false, reason };
}
