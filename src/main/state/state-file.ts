// Persistent client state (mandos(8) PERSISTENT STATE), as a JSON file in
// the state directory, written atomically (temporary file in the same
// directory, fsync, rename, fsync of the directory) so that a crash or
// kill -9 at any moment leaves either the old file or the new one.
//
// Format (`clients.json`, version 1):
//   { "format": "mandos-ts-state", "version": 1, "saved": ISO-8601,
//     "clients": { NAME: {
//        "config":  the client's clients.conf values at the time of saving,
//        "current": the values in effect (changed at run time or not),
//        "runtime": enabled, created, last_enabled, expires,
//                   last_checked_ok, last_approval_request,
//                   last_checker_status, last_checker_signal,
//        "secret":  the secret in effect, AES-256-GCM encrypted under a key
//                   derived from the clients.conf secret (as the reference
//                   encrypts it with that secret: edit the file's secret and
//                   the stored one can no longer be read, and is dropped) } } }
// Durations are milliseconds, timestamps ISO 8601 UTC, or null.
//
// Restoring follows the reference's main(): for each setting, a clients.conf
// value that differs from the one recorded at the last save wins; otherwise
// the saved value in effect wins. Clients gone from clients.conf are dropped,
// new ones start fresh. An enabled client past its expiry stays enabled only
// if its last checker succeeded (then it expires one timeout from now).

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { closeSync, constants, fstatSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writevSync } from "node:fs";
import { open, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { ClientSettings } from "../clients/settings.js";
import type { ClientRuntime } from "../clients/record.js";
import { PLAIN_SETTINGS, type PlainSetting } from "../clients/runtime-settings.js";
import type { Logger } from "../daemon/log.js";
import { reasonInWords } from "../config/os-error.js";
import { events } from "../events.js";
import { systemClock, type Clock, type TimerHandle } from "../clock.js";

export const STATE_FILE_NAME = "clients.json";

// The settings saved as "config" and "current": the keys, then every
// runtime setting but the secret (sealed apart), in the table's order.
/** A setting the state file records as clients.conf had it at the last save. */
export type ConfigField = "keyId" | "fingerprint" | PlainSetting;
const CONFIG_FIELDS: readonly ConfigField[] = ["keyId", "fingerprint", ...PLAIN_SETTINGS];
type ConfigValues = { [K in ConfigField]: ClientSettings[K] };

interface StoredRuntime {
  enabled: boolean;
  created: string;
  last_enabled: string | null;
  expires: string | null;
  last_checked_ok: string | null;
  last_approval_request: string | null;
  last_checker_status: number;
  last_checker_signal: number | null;
}

interface StoredClient {
  config: ConfigValues;
  current: ConfigValues;
  runtime: StoredRuntime;
  /** Absent when the secret in effect is clients.conf's (the usual case): only a secret set since (D-Bus) is kept. */
  secret?: string;
}

/**
 * A change of this server's to the shared state (docs/ETCD.md) that etcd
 * has not yet acknowledged: kept with the client state it belongs to, so
 * that a server restarted while etcd is down still replays it, stamped
 * with the time it was made, when etcd returns. `key` is relative to the
 * fleet's prefix (`clients/NAME/PROPERTY`). Never a secret: no secret is
 * a shared property.
 */
export interface FleetUnsentChange {
  key: string;
  value: string | number | boolean | null;
  at: number;
  by: string;
}

export interface StateFile {
  format: "mandos-ts-state";
  version: 1;
  saved: string;
  clients: Record<string, StoredClient>;
  /** Present only with etcd, and only while it has not acknowledged them. */
  fleetUnsent?: FleetUnsentChange[];
}

function configValues(s: ClientSettings): ConfigValues {
  const out = {} as Record<ConfigField, unknown>;
  for (const f of CONFIG_FIELDS) out[f] = s[f];
  return out as ConfigValues;
}

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());
const ms = (t: string | null): number | null => (t === null ? null : Date.parse(t));

function secretKey(configSecret: Buffer): Buffer {
  return Buffer.from(hkdfSync("sha256", configSecret, Buffer.alloc(0), "mandos-ts state secret", 32));
}

/**
 * Whether a client's secret in effect is clients.conf's: then the state
 * file stores none (restoring takes clients.conf's, which is what opening
 * a secret sealed under it would give), and a restored client shares
 * clients.conf's Buffer instead of holding a copy.
 */
function isConfigSecret(secret: Buffer, configSecret: Buffer): boolean {
  return secret === configSecret || secret.equals(configSecret);
}

// A client's JSON ends with one of these pieces: `}` when the secret in
// effect is clients.conf's, else `,"secret":"SEALED"}`. Sealing costs a key
// derivation and a cipher, and a server saves every second of a reboot
// wave, so a sealed piece is kept until the secret (a new Buffer when it
// changes) is replaced. Kept as bytes, outside V8's heap (see exactBytes).
const CLIENT_CLOSE = Buffer.from("}");
const SECRET_OPEN = ',"secret":"';
const sealed = new WeakMap<Buffer, { configSecret: Buffer; piece: Buffer }>();

function secretPiece(secret: Buffer, configSecret: Buffer): Buffer {
  if (isConfigSecret(secret, configSecret)) return CLIENT_CLOSE;
  const hit = sealed.get(secret);
  if (hit && hit.configSecret === configSecret) return hit.piece;
  const piece = exactBytes(`${SECRET_OPEN}${sealSecret(secret, configSecret)}"}`);
  sealed.set(secret, { configSecret, piece });
  return piece;
}

/**
 * `parts` (text as UTF-8, or bytes) one after the other in a buffer of its
 * own, exactly their size. Not Buffer.from: below 4 KiB that cuts buffers
 * from shared 8 KiB slabs, and a slab lives as long as any piece of it, so
 * pieces kept for different lengths of time waste most of it.
 */
function exactBytes(...parts: ReadonlyArray<string | Uint8Array>): Buffer {
  const bytes = Buffer.allocUnsafeSlow(parts.reduce((n, part) => n + byteSize(part), 0));
  let at = 0;
  for (const part of parts) {
    if (typeof part === "string") {
      at += bytes.write(part, at, "utf8");
    } else {
      bytes.set(part, at);
      at += part.length;
    }
  }
  return bytes;
}

function byteSize(part: string | Uint8Array): number {
  return typeof part === "string" ? Buffer.byteLength(part, "utf8") : part.length;
}

// GCM's nonces, random, each used once, drawn from a pool: randomBytes(12)
// a client cost ~10 µs a call, 0.1 s of the first save of 10,000 clients.
const IV_BYTES = 12;
let ivPool = Buffer.alloc(0);
let ivNext = 0;

function freshIv(): Buffer {
  if (ivNext + IV_BYTES > ivPool.length) {
    ivPool = randomBytes(IV_BYTES * 256);
    ivNext = 0;
  }
  const iv = ivPool.subarray(ivNext, ivNext + IV_BYTES);
  ivNext += IV_BYTES;
  return iv;
}

/** Also used by pickle-import.ts, to carry a secret migrated from the reference. */
export function sealSecret(secret: Buffer, configSecret: Buffer): string {
  const iv = freshIv();
  const c = createCipheriv("aes-256-gcm", secretKey(configSecret), iv);
  const body = Buffer.concat([c.update(secret), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]).toString("base64");
}

function openSecret(sealed: string, configSecret: Buffer): Buffer | null {
  try {
    const raw = Buffer.from(sealed, "base64");
    const d = createDecipheriv("aes-256-gcm", secretKey(configSecret), raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]);
  } catch {
    return null;
  }
}

/** The file's contents for the current state. */
export function buildState(
  config: readonly ClientSettings[],
  current: ReadonlyArray<{ settings: ClientSettings; runtime: ClientRuntime }>,
  now: number,
): StateFile {
  const byName = new Map(config.map((c) => [c.name, c]));
  const clients: Record<string, StoredClient> = {};
  for (const { settings, runtime } of current) {
    const conf = byName.get(settings.name);
    if (!conf) continue;
    const piece = secretPiece(settings.secret, conf.secret);
    const stored: StoredClient = storedWithoutSecret(conf, settings, runtime);
    // The same sealing as the pieces' (the IV is random): the base64 between the quotes.
    if (piece !== CLIENT_CLOSE) stored.secret = piece.toString("latin1", SECRET_OPEN.length, piece.length - 2);
    clients[settings.name] = stored;
  }
  return { format: "mandos-ts-state", version: 1, saved: new Date(now).toISOString(), clients };
}

function storedWithoutSecret(conf: ClientSettings, settings: ClientSettings, runtime: ClientRuntime): Omit<StoredClient, "secret"> {
  return { ...storedHead(conf, settings, runtime.enabled), runtime: storedRuntime(runtime) };
}

/** What clients.conf and the settings give: the stored client's first two keys. */
function storedHead(conf: ClientSettings, settings: ClientSettings, enabled: boolean): Pick<StoredClient, "config" | "current"> {
  return { config: configValues(conf), current: configValues({ ...settings, enabled }) };
}

function storedRuntime(runtime: ClientRuntime): StoredRuntime {
  return {
    enabled: runtime.enabled,
    created: iso(runtime.created)!,
    last_enabled: iso(runtime.lastEnabled),
    expires: iso(runtime.expires),
    last_checked_ok: iso(runtime.lastCheckedOk),
    last_approval_request: iso(runtime.lastApprovalRequest),
    last_checker_status: runtime.lastCheckerStatus,
    last_checker_signal: runtime.lastCheckerSignal,
  };
}

/**
 * One client's JSON in the state file, as two pieces of bytes: what changes
 * with clients.conf or a setting, and what changes with each secret sent
 * (the expiry) or checker run. A wave of 10,000 clients changes only the
 * second, a fifth of the bytes.
 */
interface Fragment {
  readonly conf: ClientSettings;
  readonly settings: ConfigValues;
  readonly enabled: boolean;
  readonly runtime: ClientRuntime;
  /**
   * `"NAME":{"config":...,"current":...,"runtime":` (the head), then
   * `{...the runtime...}`, UTF-8, in one buffer (secretPiece's closes the
   * client): a Buffer and its ArrayBuffer cost ~180 bytes of heap each, 3.6
   * MB for 10,000 clients kept as two pieces.
   */
  readonly bytes: Buffer;
  /** Where the runtime begins in `bytes`. */
  readonly headLength: number;
  /** The last save (StateSerialiser's count) that wrote it. */
  save: number;
}

interface LastList {
  /** The clients.conf it was made for. */
  readonly config: readonly ClientSettings[];
  /** A placeholder first and last (the header and the end, made at each save). */
  readonly pieces: Buffer[];
  /** Each client's bytes' index in `pieces` (its secretPiece follows). */
  readonly slots: Map<string, number>;
  /** When it was made (the save's `now`). */
  readonly at: number;
}

/**
 * How long a save may look only at the clients marked changed: after that
 * the next save looks at every client, comparing values, which saves
 * whatever changed without an event. A look at 10,000 clients takes the
 * main thread 8-13 ms, so once in 30 s is ~0.04% of it.
 */
export const AUDIT_MS = 30_000;

/**
 * The state file's bytes, for a server with many clients: each client's JSON
 * is kept between saves, as bytes outside V8's heap, and made again only
 * when that client's settings, runtime or secret changed. A save is the
 * list of those pieces, written with writev(2) as they are: it neither
 * serialises 10,000 clients nor makes a 25 MB string or buffer, nor any
 * garbage of that size (strings built up for each write were flattened
 * into fresh ones, which V8 frees only in a full collection, and one save
 * a second in a wave left tens of MiB of them). Every piece is immutable
 * (a changed client gets new ones), so a list may be written while the
 * registry moves on. The output is exactly JSON.stringify(buildState(...))
 * + "\n".
 *
 * A save looks again only at the clients marked changed since the last
 * one (`changed`, from the registry's events), patching its list where
 * their pieces lie, when a lookup by name is given. Every AUDIT_MS, and
 * whenever clients.conf, the set of clients or their order may have
 * changed, a save looks at every client instead. Either way a client
 * looked at is compared value by value, so a change nobody announced is
 * still saved, at the latest by the next full look.
 */
export class StateSerialiser {
  readonly #fragments = new Map<string, Fragment>();
  #saves = 0;
  /** The last full look's list (patched since) and where each client's head lies in it. */
  #last: LastList | null = null;
  readonly #dirty = new Set<string>();

  /**
   * What changed since the last save: one client, by name; or, with null,
   * possibly which clients there are (added, removed, replaced).
   */
  changed(name: string | null): void {
    if (name === null) this.#last = null;
    else if (this.#last !== null) this.#dirty.add(name);
  }

  /** The file's bytes, in order, as pieces that are never changed afterwards. */
  pieces(
    config: readonly ClientSettings[],
    current: Iterable<{ readonly settings: ClientSettings; readonly runtime: ClientRuntime }>,
    now: number,
    fleetUnsent: readonly FleetUnsentChange[] = [],
    lookup?: (name: string) => { readonly settings: ClientSettings; readonly runtime: ClientRuntime } | undefined,
  ): Buffer[] {
    const byName = this.#configByName(config);
    const last = this.#last;
    const patched = lookup !== undefined && last !== null && last.config === config && now - last.at < AUDIT_MS ? this.#patch(last, byName, lookup) : null;
    const pieces = patched ?? this.#walk(config, byName, current, now);
    pieces[0] = Buffer.from(`{"format":"mandos-ts-state","version":1,"saved":${JSON.stringify(new Date(now).toISOString())},"clients":{`);
    pieces[pieces.length - 1] = Buffer.from("}" + (fleetUnsent.length > 0 ? `,"fleetUnsent":${JSON.stringify(fleetUnsent)}` : "") + "}\n");
    // A copy: the list is patched at the next save while this one may still be written.
    return pieces.slice();
  }

  /** Every client, in order: the list made anew. */
  #walk(
    config: readonly ClientSettings[],
    byName: Map<string, ClientSettings>,
    current: Iterable<{ readonly settings: ClientSettings; readonly runtime: ClientRuntime }>,
    now: number,
  ): Buffer[] {
    // The first and last pieces are filled in by pieces().
    const pieces: Buffer[] = [COMMA];
    const slots = new Map<string, number>();
    // Marks the fragments of this save; the others belong to clients gone since.
    const save = ++this.#saves;
    let first = true;
    for (const { settings, runtime } of current) {
      const conf = byName.get(settings.name);
      if (!conf) continue;
      const fragment = this.#fragment(conf, settings, runtime);
      fragment.save = save;
      // One push a piece: V8 inlines a push of one, not of several.
      if (!first) pieces.push(COMMA);
      slots.set(settings.name, pieces.length);
      pieces.push(fragment.bytes);
      pieces.push(secretPiece(settings.secret, conf.secret));
      first = false;
    }
    for (const [name, fragment] of this.#fragments) if (fragment.save !== save) this.#fragments.delete(name);
    pieces.push(COMMA);
    this.#last = { config, pieces, slots, at: now };
    this.#dirty.clear();
    return pieces;
  }

  /** The clients marked changed, in the last list; null when one is not where it was (then a full look). */
  #patch(
    last: LastList,
    byName: Map<string, ClientSettings>,
    lookup: (name: string) => { readonly settings: ClientSettings; readonly runtime: ClientRuntime } | undefined,
  ): Buffer[] | null {
    const pieces = last.pieces;
    for (const name of this.#dirty) {
      const slot = last.slots.get(name);
      const client = lookup(name);
      const conf = byName.get(name);
      if (slot === undefined || client === undefined || conf === undefined || client.settings.name !== name) return null;
      const fragment = this.#fragment(conf, client.settings, client.runtime);
      fragment.save = this.#saves;
      pieces[slot] = fragment.bytes;
      pieces[slot + 1] = secretPiece(client.settings.secret, conf.secret);
    }
    this.#dirty.clear();
    return pieces;
  }

  /**
   * Makes the pieces of the clients that `clients` yields, ahead of the
   * first save, until `budgetMs` have passed; true once it yielded them
   * all. The first save of 10,000 clients, serialising every client and
   * sealing every secret set since (a key derivation and a cipher each;
   * when every secret was sealed, ~1 s of the main thread in one piece),
   * is here a slice at a time, leaving room for the connections between.
   */
  warm(
    config: readonly ClientSettings[],
    clients: Iterator<{ readonly settings: ClientSettings; readonly runtime: ClientRuntime }>,
    budgetMs: number,
  ): boolean {
    const byName = this.#configByName(config);
    const until = performance.now() + budgetMs;
    for (;;) {
      const next = clients.next();
      if (next.done) return true;
      const { settings, runtime } = next.value;
      const conf = byName.get(settings.name);
      if (conf) {
        this.#fragment(conf, settings, runtime);
        secretPiece(settings.secret, conf.secret);
      }
      if (performance.now() >= until) return false;
    }
  }

  #configCache: { config: readonly ClientSettings[]; byName: Map<string, ClientSettings> } | null = null;

  #configByName(config: readonly ClientSettings[]): Map<string, ClientSettings> {
    if (this.#configCache?.config !== config) this.#configCache = { config, byName: new Map(config.map((c) => [c.name, c])) };
    return this.#configCache.byName;
  }

  #fragment(conf: ClientSettings, settings: ClientSettings, runtime: ClientRuntime): Fragment {
    const old = this.#fragments.get(settings.name);
    const sameHead = old !== undefined && old.conf === conf && old.enabled === runtime.enabled && sameSettings(old.settings, settings);
    const sameTail = old !== undefined && sameRuntime(old.runtime, runtime);
    if (sameHead && sameTail) return old;
    // Together the stored object without its secret and closing brace.
    const head = sameHead ? old.bytes.subarray(0, old.headLength) : `${JSON.stringify(settings.name)}:${headJson(conf, settings, runtime.enabled)},"runtime":`;
    const tail = sameTail ? old.bytes.subarray(old.headLength) : JSON.stringify(storedRuntime(runtime));
    const bytes = exactBytes(head, tail);
    const fragment: Fragment = {
      conf,
      enabled: runtime.enabled,
      settings: sameHead ? old.settings : configValues(settings),
      runtime: sameTail ? old.runtime : { ...runtime },
      bytes,
      headLength: byteSize(head),
      save: 0,
    };
    this.#fragments.set(settings.name, fragment);
    return fragment;
  }
}

const COMMA = Buffer.from(",");

/** `{"config":...,"current":...`: storedHead's JSON without its closing brace. */
function headJson(conf: ClientSettings, settings: ClientSettings, enabled: boolean): string {
  return JSON.stringify(storedHead(conf, settings, enabled)).slice(0, -1);
}

/**
 * Field by field, written out: a loop over the field names costs ~1 µs a
 * client (keyed loads), 10 ms a save of 10,000. test/state-file.test.ts
 * changes each field of a real record, so a field added to ClientRuntime
 * and not here fails it.
 */
function sameRuntime(a: ClientRuntime, b: ClientRuntime): boolean {
  return (
    a.expires === b.expires &&
    a.lastCheckedOk === b.lastCheckedOk &&
    a.enabled === b.enabled &&
    a.lastEnabled === b.lastEnabled &&
    a.lastApprovalRequest === b.lastApprovalRequest &&
    a.lastCheckerStatus === b.lastCheckerStatus &&
    a.lastCheckerSignal === b.lastCheckerSignal &&
    a.created === b.created
  );
}

function sameSettings(a: ConfigValues, b: ClientSettings): boolean {
  for (const f of CONFIG_FIELDS) if (a[f] !== b[f]) return false;
  return true;
}

/** The temporary file a save writes first, beside `path`. */
function temporaryPath(path: string): string {
  return join(dirname(path), `.${STATE_FILE_NAME}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

/**
 * Buffers a writev(2) takes at most (Linux's IOV_MAX); a 10,000-client save
 * is ~30,000 pieces.
 */
const IOV_MAX = 1024;

/** Writes `data` (a string, or pieces in order) to `path` atomically: temporary file, fsync, rename, fsync of the directory. */
export function writeAtomically(path: string, data: string | readonly Uint8Array[]): void {
  const tmp = temporaryPath(path);
  const fd = openSync(tmp, "wx", 0o600);
  try {
    const pieces = typeof data === "string" ? [Buffer.from(data, "utf8")] : data;
    for (let i = 0; i < pieces.length; i += IOV_MAX) writeAllv(pieces.slice(i, i + IOV_MAX), (batch) => writevSync(fd, batch));
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(tmp);
    throw error;
  }
  closeSync(fd);
  renameInto(tmp, path);
  try {
    const dir = openSync(dirname(path), "r");
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch {
    // Some file systems refuse fsync on a directory; the rename is done.
  }
}

function renameInto(tmp: string, path: string): void {
  try {
    renameSync(tmp, path);
  } catch (error) {
    unlinkSync(tmp);
    throw error;
  }
}

/**
 * writeAtomically off the main thread: the writes and fsyncs run on libuv's
 * thread pool, so that the main thread does not wait for 25 MB to reach
 * the disk (40-90 ms with 10,000 clients, each save, in the middle of a
 * reboot wave). The rename alone is done on the main thread, and only if
 * `wanted()` still says so then: every rename of the state file happens
 * in the order the main thread asks for it, so a save that a later one
 * overtook (saveNow at shutdown) can never put older state back. Resolves
 * to whether the file was replaced.
 */
export async function writeAtomicallyInBackground(path: string, pieces: readonly Uint8Array[], wanted: () => boolean): Promise<boolean> {
  const tmp = temporaryPath(path);
  const file = await open(tmp, "wx", 0o600);
  try {
    for (let i = 0; i < pieces.length; i += IOV_MAX) await writeAllvAsync(pieces.slice(i, i + IOV_MAX), file);
    await file.sync();
  } catch (error) {
    await file.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
  await file.close();
  if (!wanted()) {
    await unlink(tmp).catch(() => undefined);
    return false;
  }
  renameInto(tmp, path);
  try {
    const dir = await open(dirname(path), "r");
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // As in writeAtomically.
  }
  return true;
}

/** The pieces that `written` bytes did not cover yet, cut where the write stopped. */
function rest(pieces: readonly Uint8Array[], written: number): Uint8Array[] {
  let i = 0;
  while (i < pieces.length && written >= pieces[i]!.length) written -= pieces[i++]!.length;
  const left = pieces.slice(i);
  if (left.length > 0 && written > 0) left[0] = left[0]!.subarray(written);
  return left;
}

/** writev(2) until all of `pieces` is written (a write may be short). */
function writeAllv(pieces: readonly Uint8Array[], writev: (batch: readonly Uint8Array[]) => number): void {
  for (let left = pieces; left.length > 0; ) left = rest(left, progress(writev(left)));
}

async function writeAllvAsync(pieces: readonly Uint8Array[], file: FileHandle): Promise<void> {
  for (let left = pieces; left.length > 0; ) left = rest(left, progress((await file.writev(left)).bytesWritten));
}

/** A regular file's write(2) writes something or fails; a zero would loop for ever. */
function progress(written: number): number {
  if (written > 0) return written;
  throw Object.assign(new Error("write(2) wrote nothing"), { code: "EIO" });
}

/** Why a state file is not trusted (never its content). */
class UntrustedStateFile extends Error {
  override readonly name = "UntrustedStateFile";
}

/**
 * The state file's text, read as root at start-up, so with care: a
 * symbolic link is not followed (it could point at any root-only file), and
 * the file must be a regular file owned by root, by us or by the user we
 * become (`owners`), and writable by nobody else.
 */
function readStateText(path: string, owners: readonly number[]): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UntrustedStateFile("not a regular file");
    const trusted = new Set([0, process.getuid?.() ?? 0, ...owners]);
    if (!trusted.has(st.uid)) throw new UntrustedStateFile(`owned by uid ${st.uid}, not by root or the server's user`);
    if ((st.mode & 0o022) !== 0) throw new UntrustedStateFile(`writable by others (mode ${(st.mode & 0o777).toString(8)})`);
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads the state file: null (and a warning) when it is missing or
 * unusable. `owners`: uids besides root and ours that may own it (the
 * user the server becomes).
 */
export function readState(path: string, logger: Logger, owners: readonly number[] = []): StateFile | null {
  let text: string;
  try {
    text = readStateText(path, owners);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ELOOP") {
      logger.warning(`Could not load persistent state from ${path}: it is a symbolic link, which is not followed; starting from clients.conf`);
      return null;
    }
    // The reference's own line for a first start; any other failure names the file.
    if ((error as NodeJS.ErrnoException).code === "ENOENT") logger.warning("Could not load persistent state: No such file or directory");
    else logger.warning(`Could not load persistent state from ${path}: ${error instanceof UntrustedStateFile ? error.message : reasonInWords(error)}; starting from clients.conf`);
    return null;
  }
  try {
    let parsed: Partial<StateFile>;
    try {
      parsed = JSON.parse(text) as Partial<StateFile>;
    } catch {
      // Never V8's message: it quotes the file's first bytes.
      throw new Error("not valid JSON");
    }
    if (parsed.format !== "mandos-ts-state" || parsed.version !== 1 || typeof parsed.clients !== "object" || parsed.clients === null) {
      throw new Error("not a mandos-ts state file of version 1");
    }
    return parsed as StateFile;
  } catch (error) {
    logger.warning(`Could not load persistent state from ${path}: ${(error as Error).message}; starting from clients.conf`);
    return null;
  }
}

export interface Restored {
  readonly settings: ClientSettings[];
  readonly runtimes: Map<string, ClientRuntime>;
  /**
   * Per client, the settings whose clients.conf value differs from the one
   * recorded at the last save: edited since, so the file's value won. A
   * fleet (../fleet/) makes these win on every server.
   */
  readonly edited: Map<string, ConfigField[]>;
}

/** Merges saved state into clients.conf's settings, by the reference's rules. */
export function restoreState(config: readonly ClientSettings[], state: StateFile | null, now: number, logger: Logger): Restored {
  const settings: ClientSettings[] = [];
  const runtimes = new Map<string, ClientRuntime>();
  const edited = new Map<string, ConfigField[]>();
  for (const conf of config) {
    const saved = state?.clients[conf.name];
    if (!saved || typeof saved !== "object" || !saved.config || !saved.current || !saved.runtime) {
      settings.push(conf);
      continue;
    }
    const merged: Record<string, unknown> = { ...conf };
    const newConfig = configValues(conf);
    const fromFile: ConfigField[] = [];
    for (const f of CONFIG_FIELDS) {
      if (newConfig[f] !== saved.config[f]) fromFile.push(f);
      merged[f] = newConfig[f] !== saved.config[f] ? newConfig[f] : saved.current[f];
    }
    if (fromFile.length > 0) edited.set(conf.name, fromFile);
    // No secret stored: clients.conf's was in effect. One that opens to
    // clients.conf's (a file of an earlier version) shares its Buffer.
    const secret = saved.secret === undefined ? conf.secret : openSecret(saved.secret, conf.secret);
    if (secret === null) logger.debug(`Failed to decrypt ${conf.name} old secret`);
    merged.secret = secret === null || isConfigSecret(secret, conf.secret) ? conf.secret : secret;
    const s = merged as unknown as ClientSettings;
    const r = saved.runtime;
    const runtime: ClientRuntime = {
      enabled: s.enabled,
      created: ms(r.created) ?? now,
      lastEnabled: ms(r.last_enabled),
      expires: ms(r.expires),
      lastCheckedOk: ms(r.last_checked_ok),
      lastApprovalRequest: ms(r.last_approval_request),
      lastCheckerStatus: typeof r.last_checker_status === "number" ? r.last_checker_status : -2,
      lastCheckerSignal: r.last_checker_signal ?? null,
    };
    if (runtime.enabled && runtime.expires === null) runtime.expires = now + s.timeout;
    if (runtime.enabled && runtime.expires !== null && now >= runtime.expires) {
      if (runtime.lastCheckedOk === null) {
        logger.warning(`disabling client ${s.name} - Client never performed a successful checker`);
        runtime.enabled = false;
      } else if (runtime.lastCheckerStatus !== 0) {
        logger.warning(`disabling client ${s.name} - Client last checker failed with error code ${runtime.lastCheckerStatus}`);
        runtime.enabled = false;
      } else {
        runtime.expires = now + s.timeout;
        logger.debug(`Last checker succeeded, keeping ${s.name} enabled`);
      }
    }
    if (!runtime.enabled) runtime.expires = null;
    settings.push({ ...s, enabled: runtime.enabled });
    runtimes.set(s.name, runtime);
  }
  return { settings, runtimes, edited };
}

/**
 * Saves the registry's state on every change that matters, coalesced: a
 * burst of a thousand secrets is one write, SAVE_DELAY_MS after the first.
 */
export const SAVE_DELAY_MS = 1_000;
/**
 * The most of the server's time that saving may take: after a save that
 * took `d` ms the next comes no sooner than d / SAVE_MAX_SHARE ms. A
 * save of 10,000 clients (a 25 MB file) takes 40-90 ms, and a reboot wave
 * changes every client: saved each second, it was 12-13% of the main
 * thread's time in a wave.
 */
export const SAVE_MAX_SHARE = 0.02;
/**
 * How long each slice of StateSerialiser.warm may take: a connection
 * arriving meanwhile waits at most this (about 40 clients' work).
 */
export const STATE_WARM_SLICE_MS = 5;
/** The longest wait before a change is saved, however long saves take. */
export const SAVE_MAX_DELAY_MS = 10_000;

/** How long after a change the next save comes, when the last one took `lastSaveMs`. */
export function saveDelay(lastSaveMs: number): number {
  return Math.min(SAVE_MAX_DELAY_MS, Math.max(SAVE_DELAY_MS, Math.ceil(lastSaveMs / SAVE_MAX_SHARE)));
}

export class StateSaver {
  readonly #path: string;
  readonly #collect: () => readonly Uint8Array[];
  readonly #clock: Clock;
  #timer: TimerHandle | null = null;
  /** How long the last save took, on `clock`, from collecting to the rename. */
  #lastSaveMs = 0;
  /** The save being written in the background, if any. */
  #writing: Promise<void> | null = null;
  /** A change came while one was being written: schedule the next save when it is done. */
  #changedWhileWriting = false;
  /** Counts saves; a background save renames its file only if no later one began. */
  #generation = 0;

  /**
   * `collect` gives the state file's bytes as pieces that nobody changes
   * afterwards (StateSerialiser.pieces). Each save is published
   * (events.stateSaved / stateSaveFailed), not logged.
   */
  constructor(path: string, collect: () => readonly Uint8Array[], clock: Clock = systemClock) {
    this.#path = path;
    this.#collect = collect;
    this.#clock = clock;
  }

  /**
   * Something changed: save soon (saveDelay), in the background. One save
   * is written at a time; a change meanwhile is saved after it.
   */
  changed(): void {
    if (this.#timer) return;
    if (this.#writing) {
      this.#changedWhileWriting = true;
      return;
    }
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      this.#saveInBackground();
    }, saveDelay(this.#lastSaveMs));
  }

  /**
   * Saves at once, on this thread (at shutdown), cancelling the pending save;
   * a save still being written in the background is dropped, not renamed.
   */
  saveNow(): void {
    this.#timer?.cancel();
    this.#timer = null;
    this.#changedWhileWriting = false;
    const generation = ++this.#generation;
    const began = this.#clock.now();
    const started = performance.now();
    try {
      const pieces = this.#collect();
      writeAtomically(this.#path, pieces);
      this.#saved(byteCount(pieces), started);
    } catch (error) {
      this.#failed(error);
    } finally {
      if (generation === this.#generation) this.#lastSaveMs = this.#clock.now() - began;
    }
  }

  /** Resolves when no save is being written in the background. */
  async idle(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  #saveInBackground(): void {
    const generation = ++this.#generation;
    const began = this.#clock.now();
    const started = performance.now();
    let pieces: readonly Uint8Array[];
    try {
      pieces = this.#collect();
    } catch (error) {
      this.#failed(error);
      return;
    }
    this.#writing = writeAtomicallyInBackground(this.#path, pieces, () => generation === this.#generation).then(
      (renamed) => {
        if (renamed) this.#saved(byteCount(pieces), started);
      },
      (error: unknown) => this.#failed(error),
    ).finally(() => {
      this.#writing = null;
      if (generation === this.#generation) this.#lastSaveMs = this.#clock.now() - began;
      if (this.#changedWhileWriting) {
        this.#changedWhileWriting = false;
        this.changed();
      }
    });
  }

  #saved(bytes: number, started: number): void {
    if (events.stateSaved.hasSubscribers) events.stateSaved.publish({ path: this.#path, bytes, durationMs: performance.now() - started });
  }

  #failed(error: unknown): void {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    if (events.stateSaveFailed.hasSubscribers) events.stateSaveFailed.publish({ path: this.#path, reason });
  }
}

function byteCount(pieces: readonly Uint8Array[]): number {
  let n = 0;
  for (const p of pieces) n += p.length;
  return n;
}
