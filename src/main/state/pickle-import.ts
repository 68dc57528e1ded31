// Migration from the Python server: its state file, STATEDIR/clients.pickle
// (a tuple of clients_data and the clients.conf settings at save time,
// written by the reference's cleanup() in main()), read with our own
// unpickler and turned into our state file's in-memory form, so that
// restoreState applies the reference's precedence rules to it as it does
// to clients.json. The secrets the reference sealed with `gpg --symmetric`
// under a passphrase made from each client's clients.conf secret
// (PGPEngine.password_encode) are opened with OpenPGP.js (reference-secret.ts):
// at start-up, once serving, in the background (secret-opening.ts), so
// the state carries them sealed as the pickle has them; for `mandos-keygen
// --import-pickle`, here, on every core.
//
// Used at start-up when clients.pickle is there and clients.json is not,
// or is older (the Python server ran since); the pickle is only read here,
// not removed (the reference removes it after reading): an admin can go
// back to the Python server, and each stop of ours replaces it with the
// state it leaves (pickle-export.ts).

import { createHash } from "node:crypto";
import { lstatSync } from "node:fs";
import { join } from "node:path";
import type { ClientSettings } from "../clients/settings.js";
import { silentLogger, type Logger } from "../daemon/log.js";
import { NOT_STARTED, readTrustedStateFile, sealSecret, STATE_FILE_NAME, unreadableReason, type StateFile } from "./state-file.js";
import { stateFileProblem } from "./state-check.js";
import { openReferenceSecret, openReferenceSecrets, type OpeningWatch, type SealedSecret } from "./reference-secret.js";
import { openingThreads } from "./secret-opening.js";
import { PyDatetime, PyTimedelta, PyTuple, unpickle, type PyDict, type PyValue } from "./unpickle.js";
import { CodedError } from "../../errors.js";
import { MAX_CLIENT_DURATION_MS } from "../config/duration.js";

export const PICKLE_FILE_NAME = "clients.pickle";

export class PickleImportError extends CodedError<"PICKLE_BAD_STATE"> {
  constructor(message: string) {
    super("PICKLE_BAD_STATE", message);
  }
}

function dict(v: PyValue | undefined, what: string): PyDict {
  if (!(v instanceof Map)) throw new PickleImportError(`${what} is not a dict`);
  return v;
}

const text = (v: PyValue | undefined): string | undefined =>
  typeof v === "string" ? v : Buffer.isBuffer(v) ? v.toString("utf8") : undefined;
/** A duration clients.conf and D-Bus could give; any other is left to clients.conf's. */
const duration = (v: PyValue | undefined): number | undefined =>
  v instanceof PyTimedelta && v.ms >= 0 && v.ms <= MAX_CLIENT_DURATION_MS ? v.ms : undefined;
const bool = (v: PyValue | undefined): boolean | undefined => (typeof v === "boolean" ? v : undefined);
const time = (v: PyValue | undefined): string | null => (v instanceof PyDatetime ? new Date(v.ms).toISOString() : null);

/** Our settings fields, read from one of the reference's client dicts; undefined where it has none. */
function settingsOf(d: PyDict): Record<string, unknown> {
  return {
    keyId: text(d.get("key_id"))?.toUpperCase().replace(/ /g, ""),
    fingerprint: text(d.get("fingerprint"))?.toUpperCase().replace(/ /g, ""),
    host: text(d.get("host")),
    timeout: duration(d.get("timeout")),
    extendedTimeout: duration(d.get("extended_timeout")),
    interval: duration(d.get("interval")),
    checker: text(d.get("checker_command")),
    approvedByDefault: bool(d.get("approved_by_default")),
    approvalDelay: duration(d.get("approval_delay")),
    approvalDuration: duration(d.get("approval_duration")),
    enabled: bool(d.get("enabled")),
  };
}

/** The pickle's clients that clients.conf still has, those removed at run time, and the secrets to open. */
function readPickle(data: Buffer, config: readonly ClientSettings[]): {
  imported: { conf: ClientSettings; client: PyDict; old: PyValue }[];
  removed: string[];
  sealed: SealedSecret[];
} {
  const root = unpickle(data);
  if (!(root instanceof PyTuple) || root.items.length !== 2) throw new PickleImportError("not a (clients, settings) tuple");
  const clientsData = dict(root.items[0], "the clients");
  const oldSettings = dict(root.items[1], "the settings");
  const removed: string[] = [];
  const imported: { conf: ClientSettings; client: PyDict; old: PyValue }[] = [];
  for (const conf of config) {
    const saved = clientsData.get(conf.name);
    const old = oldSettings.get(conf.name);
    // In its clients.conf settings and not among its clients: removed at
    // run time, and the reference keeps it removed.
    if (saved === undefined && old !== undefined) removed.push(conf.name);
    if (saved === undefined || old === undefined) continue;
    imported.push({ conf, client: dict(saved, `client ${conf.name}`), old });
  }
  const sealed = imported.flatMap(({ conf, client }) => {
    const s = client.get("encrypted_secret");
    return Buffer.isBuffer(s) ? [{ sealed: s, configSecret: conf.secret }] : [];
  });
  return { imported, removed, sealed };
}

/**
 * The pickle as our state file, for the clients clients.conf still has.
 * Where the reference's saved clients.conf settings lack a field (a pickle
 * from an older version), the saved value in effect wins, as the
 * reference's KeyError branch does. Each sealed secret is opened here,
 * followed by `watch`; with "later", none is: the state carries it sealed
 * (`referenceSecret`), for the server to open once serving.
 */
export async function stateFromPickle(data: Buffer, config: readonly ClientSettings[], now: number, logger: Logger, watch: OpeningWatch | "later" = {}): Promise<StateFile> {
  const { imported, removed, sealed } = readPickle(data, config);
  const state: StateFile = { format: "mandos-ts-state", version: 1, saved: new Date(now).toISOString(), clients: {} };
  const later = watch === "later";
  const opened = (later ? [] : await openReferenceSecrets(sealed, undefined, undefined, watch)).values();
  for (const { conf, client, old } of imported) {
    const current = settingsOf(client);
    const then = settingsOf(dict(old, `settings of ${conf.name}`));
    const confValues = conf as unknown as Record<string, unknown>;
    for (const f of Object.keys(current)) {
      current[f] ??= confValues[f];
      then[f] ??= current[f];
    }
    const encrypted = client.get("encrypted_secret");
    const toOpen = later && Buffer.isBuffer(encrypted) && encrypted.length > 0 ? encrypted : null;
    const opening = !later && Buffer.isBuffer(encrypted) ? opened.next().value?.secret : null;
    const secret = opening ? Buffer.from(opening) : null;
    const status = client.get("last_checker_status");
    const signal = client.get("last_checker_signal");
    state.clients[conf.name] = {
      config: then as unknown as StateFile["clients"][string]["config"],
      current: current as unknown as StateFile["clients"][string]["current"],
      runtime: {
        enabled: current.enabled as boolean,
        created: time(client.get("created")) ?? new Date(now).toISOString(),
        last_enabled: time(client.get("last_enabled")),
        expires: time(client.get("expires")),
        last_checked_ok: time(client.get("last_checked_ok")),
        last_approval_request: time(client.get("last_approval_request")),
        last_checker_status: typeof status === "number" ? status : -2,
        last_checker_signal: typeof signal === "number" ? signal : null,
      },
      // An unopened secret fails restoreState's decryption, which then
      // takes clients.conf's, as the reference does on a PGPError.
      ...(toOpen !== null ? { referenceSecret: toOpen.toString("base64") } : { secret: secret === null ? "" : sealSecret(secret, conf.secret) }),
    };
    const which = toOpen !== null ? "stored secret, opened once serving" : secret === null ? "secret from clients.conf (the stored one did not open)" : "stored secret";
    logger.info(`Imported ${conf.name} from ${PICKLE_FILE_NAME}: ${current.enabled ? "enabled" : "disabled"}, ${which}`);
  }
  if (removed.length > 0) {
    state.removed = removed;
    logger.info(`Not importing ${removed.join(", ")} from ${PICKLE_FILE_NAME}: removed at run time`);
  }
  // What the next start must read back from clients.json (a time past its range, say).
  const problem = stateFileProblem(state as unknown as Record<string, unknown>);
  if (problem !== null) throw new PickleImportError(problem);
  return state;
}

/** What a start does with STATEDIR/clients.pickle (decideMigration). */
export type MigrationDecision =
  /** Nothing to import: clients.json (if any) is restored; the pickle's digest, if there is one, is recorded. */
  | { readonly kind: "keep"; readonly pickleSha256: string | null }
  /** Import these bytes (empty: a fresh start, as the reference's EOFError), replacing clients.json when `replaces`. */
  | { readonly kind: "import"; readonly data: Buffer; readonly pickleSha256: string; readonly replaces: boolean }
  /** A pickle to import that cannot be read: the start stops. */
  | { readonly kind: "unreadable"; readonly reason: string };

/**
 * What to do with clients.pickle, given clients.json as read (null: there
 * is none). Without clients.json: import it. With one: import it only if
 * the Python server ran since this one last saved, which it tells by two
 * things together: the pickle is not the one clients.json records
 * (`importedPickle`, its SHA-256: each run of the reference writes new
 * bytes, every secret sealed anew) and it is newer than clients.json. A
 * pickle copied back from a backup, or touched, is the same pickle, and
 * the clients disabled or removed under this server stay so; a clients.json
 * of a release before the record is judged by time alone, once. An empty
 * pickle beside clients.json is ignored. Read as root, with the care our
 * own state file gets (no symbolic link, a trusted owner, writable by
 * nobody else): the reference read it as the user it had become.
 */
export function decideMigration(path: string, ourStatePath: string, ours: StateFile | null, owners: readonly number[], logger: Logger = silentLogger): MigrationDecision {
  const recorded = ours?.importedPickle ?? null;
  let data: Buffer;
  try {
    data = readTrustedStateFile(path, owners);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { kind: "keep", pickleSha256: recorded };
    if (ours === null) return { kind: "unreadable", reason: unreadableReason(error) };
    // clients.json is there and whole: restored; the pickle is said and left.
    logger.warning(`Not comparing ${path} with ${ourStatePath}, which is restored: ${unreadableReason(error)}`);
    return { kind: "keep", pickleSha256: recorded };
  }
  const sha = createHash("sha256").update(data).digest("hex");
  if (ours === null) return { kind: "import", data, pickleSha256: sha, replaces: false };
  if (data.length === 0) {
    logger.warning(`${path} is empty: ignored, ${ourStatePath} is restored`);
    return { kind: "keep", pickleSha256: recorded };
  }
  const newer = (modified(path) ?? 0n) > (modified(ourStatePath) ?? 0n);
  if (sha !== recorded && newer) return { kind: "import", data, pickleSha256: sha, replaces: true };
  return { kind: "keep", pickleSha256: sha };
}

/** A file's modification time (nanoseconds), not following a symbolic link; null when there is none. */
function modified(path: string): bigint | null {
  try {
    return lstatSync(path, { bigint: true }).mtimeNs;
  } catch {
    return null;
  }
}

/**
 * The clients whose fate differs between clients.json and the pickle that
 * replaces it (enabled, disabled, removed), for the WARNING that says so:
 * the Python server's decisions win, and an admin must see which.
 */
function fateChanges(ours: StateFile, theirs: StateFile): string[] {
  const fate = (state: StateFile, name: string): string => {
    if (state.removed?.includes(name)) return "removed";
    const entry = state.clients[name];
    return entry === undefined ? "absent" : entry.current.enabled ? "enabled" : "disabled";
  };
  const names = new Set([...Object.keys(ours.clients), ...(ours.removed ?? []), ...Object.keys(theirs.clients), ...(theirs.removed ?? [])]);
  const changes: string[] = [];
  for (const name of names) {
    const before = fate(ours, name);
    const after = fate(theirs, name);
    if (before !== after && before !== "absent" && after !== "absent") changes.push(`${name} (${before} -> ${after})`);
  }
  return changes;
}

/**
 * At start-up, after clients.json was read (`ours`; null when there is
 * none): the state to restore and the pickle's digest to record in
 * clients.json (decideMigration says which). An empty pickle with no
 * clients.json is a warning and a fresh start (as the reference's
 * EOFError); one that cannot be read or imported stops the start, as the
 * reference stops on it. Its sealed secrets stay sealed in the state
 * (`referenceSecret`), opened once serving (secret-opening.ts).
 */
export async function migrateReferenceState(
  statedir: string, ourStatePath: string, ours: StateFile | null, config: readonly ClientSettings[], now: number, logger: Logger, owners: readonly number[] = [],
): Promise<{ readonly state: StateFile | null; readonly pickleSha256: string | null }> {
  const picklePath = join(statedir, PICKLE_FILE_NAME);
  const decision = decideMigration(picklePath, ourStatePath, ours, owners, logger);
  if (decision.kind === "unreadable") throw new PickleImportError(`Could not import the Python server's state from ${picklePath}: ${decision.reason}; ${NOT_STARTED}`);
  if (decision.kind === "keep") return { state: ours, pickleSha256: decision.pickleSha256 };
  if (decision.data.length === 0) {
    logger.warning(`Could not import the Python server's state from ${picklePath}: the file is empty; starting from clients.conf`);
    return { state: null, pickleSha256: decision.pickleSha256 };
  }
  let state: StateFile;
  try {
    state = await stateFromPickle(decision.data, config, now, logger, "later");
  } catch (error) {
    throw new PickleImportError(`Could not import the Python server's state from ${picklePath}: ${(error as Error).message}; ${NOT_STARTED}`);
  }
  if (decision.replaces && ours !== null) {
    logger.warning(`${picklePath} is newer than ${ourStatePath} and not the one imported before: the Python server ran after this one last saved; importing its state in place of ${STATE_FILE_NAME}'s`);
    const changes = fateChanges(ours, state);
    if (changes.length > 0) {
      const shown = changes.slice(0, 20).join(", ");
      logger.warning(`Clients whose state the Python server's replaces: ${shown}${changes.length > 20 ? `, and ${changes.length - 20} more` : ""}`);
    }
  }
  logger.info(`Imported the Python server's state of ${Object.keys(state.clients).length} clients from ${picklePath}; it is left as it was until this server stops`);
  return { state, pickleSha256: decision.pickleSha256 };
}

/**
 * How many clients the pickle that a start would import holds, those
 * removed at run time included (the names in its saved settings and among
 * its clients); 0 when it would import none, or cannot be read (the import
 * then says why). clients.conf's absence must not drop them (clientsConfRefusal).
 */
export function pickleClientCount(statedir: string, ourStatePath: string, ours: StateFile | null, owners: readonly number[] = []): number {
  const decision = decideMigration(join(statedir, PICKLE_FILE_NAME), ourStatePath, ours, owners);
  if (decision.kind !== "import" || decision.data.length === 0) return 0;
  try {
    const root = unpickle(decision.data);
    if (!(root instanceof PyTuple) || root.items.length !== 2) return 0;
    const names = new Set<string>([...dict(root.items[0], "the clients").keys(), ...dict(root.items[1], "the settings").keys()]);
    return names.size;
  } catch {
    return 0;
  }
}

/** What the first start would import, for `mandos --check`. */
export type PendingMigration =
  | {
      readonly path: string; readonly clients: number; readonly sealed: number; readonly threads: number; readonly oneSecretMs: number | null;
      /** In place of clients.json. */
      readonly replaces: boolean;
    }
  | { readonly path: string; readonly unreadable: string };

/**
 * For `mandos --check`: what the next start would import from `statedir`'s
 * clients.pickle, given clients.json as read (null when there is nothing
 * to migrate), with one sealed secret opened here and timed, to tell how
 * long the server will open them while it serves. A pickle the start
 * would refuse (unreadable, or a state it cannot hold) is `unreadable`.
 */
export async function pendingMigration(
  statedir: string, ourStatePath: string, ours: StateFile | null, config: readonly ClientSettings[], owners: readonly number[] = [], threads = openingThreads(),
): Promise<PendingMigration | null> {
  const path = join(statedir, PICKLE_FILE_NAME);
  const decision = decideMigration(path, ourStatePath, ours, owners);
  if (decision.kind === "keep") return null;
  if (decision.kind === "unreadable") return { path, unreadable: decision.reason };
  if (decision.data.length === 0) return { path, clients: 0, sealed: 0, threads: 0, oneSecretMs: null, replaces: decision.replaces };
  let found: ReturnType<typeof readPickle>;
  try {
    found = readPickle(decision.data, config);
    // As the start builds it (no secret opened): a state it would refuse is refused here.
    await stateFromPickle(decision.data, config, Date.now(), silentLogger, "later");
  } catch (error) {
    return { path, unreadable: (error as Error).message };
  }
  const first = found.sealed[0];
  let oneSecretMs: number | null = null;
  if (first) {
    // Timed the second time: the first loads OpenPGP.js.
    await openReferenceSecret(first.sealed, first.configSecret);
    const start = performance.now();
    await openReferenceSecret(first.sealed, first.configSecret);
    oneSecretMs = performance.now() - start;
  }
  return { path, clients: found.imported.length, sealed: found.sealed.length, threads: Math.max(1, Math.min(threads, found.sealed.length)), oneSecretMs, replaces: decision.replaces };
}
