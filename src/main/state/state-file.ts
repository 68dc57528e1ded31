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
//                   the stored one can no longer be read, and is dropped),
//        "referenceSecret": in its place while the secret is still the
//                   one the Python server sealed in clients.pickle, not
//                   yet opened (base64 of its `gpg --symmetric` message,
//                   sealed under the clients.conf secret as the pickle
//                   holds it); the next start opens it } } }
// Durations are milliseconds, timestamps ISO 8601 UTC, or null.
//
// Restoring follows the reference's main(): for each setting, a clients.conf
// value that differs from the one recorded at the last save wins; otherwise
// the saved value in effect wins. Clients gone from clients.conf are dropped,
// new ones start fresh. An enabled client past its expiry stays enabled only
// if its last checker succeeded (then it expires one timeout from now).

import { createCipheriv, createDecipheriv, hkdfSync } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readFileSync, statSync } from "node:fs";
import type { ClientSettings } from "../clients/settings.js";
import type { ClientRuntime, RegistryEvent } from "../clients/contract.js";
import { placeholderFor, secretToOpen } from "../clients/secret-to-open.js";
import { PLAIN_SETTINGS, type PlainSetting } from "../clients/runtime-settings.js";
import type { Logger } from "../daemon/log.js";
import { reasonInWords } from "../config/os-error.js";
import { events } from "../events.js";
import { systemClock, type Clock, type TimerHandle } from "../clock.js";
import { drawRandom } from "../../tls/random.js";
import { byteSize, ownedConcat, ownedCopy } from "../../tls/record.js";
import { clientName, dropUnusableSettings, stateFileProblem, type UnusableSettings } from "./state-check.js";
import { BaseFile, isSpan, piecesOf, StateFileChanged, writeAtomically, writeAtomicallyInBackground, type StateList, type StatePiece } from "./state-writer.js";

export { writeAtomically, writeAtomicallyInBackground } from "./state-writer.js";

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
  /** In place of `secret`, the Python server's sealed secret not yet opened (clients/secret-to-open.ts). */
  referenceSecret?: string;
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
  /**
   * Clients removed at run time (D-Bus RemoveClient, `mandos-ctl
   * --remove`) whose section clients.conf still had at the save: restored
   * as removed, as the reference restores them (a name in its saved
   * clients.conf settings and not in its saved clients). Absent when none.
   */
  removed?: string[];
  /** Present only with etcd, and only while it has not acknowledged them. */
  fleetUnsent?: FleetUnsentChange[];
  /**
   * The SHA-256 (hex) of the Python server's clients.pickle beside this
   * file when it was last looked at: a pickle with other bytes, and newer,
   * was written by the reference since (pickle-import.ts, decideMigration).
   * Absent when there was none.
   */
  importedPickle?: string;
}

function configValues(s: ConfigValues): ConfigValues {
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
// effect is clients.conf's, `,"referenceSecret":"BASE64"}` while it is
// still the Python server's sealed one, else `,"secret":"SEALED"}`. Sealing costs a key
// derivation and a cipher, and a server saves every second of a reboot
// wave, so a sealed piece is kept until the secret (a new Buffer when it
// changes) is replaced. Kept as bytes, outside V8's heap, in memory of
// their own (ownedConcat): a slice of Node's shared 8 KiB chunks kept this
// long would keep its whole chunk.
const CLIENT_CLOSE = Buffer.from("}");
const SECRET_OPEN = ',"secret":"';
const REFERENCE_OPEN = ',"referenceSecret":"';
const sealed = new WeakMap<Buffer, { configSecret: Buffer; piece: Buffer }>();

function secretPiece(secret: Buffer, configSecret: Buffer): Buffer {
  const hit = sealed.get(secret);
  if (hit && hit.configSecret === configSecret) return hit.piece;
  const toOpen = secretToOpen(secret);
  // Still sealed by the reference: carried as it is, whatever clients.conf says.
  if (toOpen) {
    const piece = ownedConcat([`${REFERENCE_OPEN}${toOpen.sealed.toString("base64")}"}`]);
    sealed.set(secret, { configSecret, piece });
    return piece;
  }
  if (isConfigSecret(secret, configSecret)) return CLIENT_CLOSE;
  const piece = ownedConcat([`${SECRET_OPEN}${sealSecret(secret, configSecret)}"}`]);
  sealed.set(secret, { configSecret, piece });
  return piece;
}

// GCM's nonces, random, each used once, drawn from the handshakes' pool
// (tls/random.ts): randomBytes(12) a client cost ~10 µs a call, 0.1 s of
// the first save of 10,000 clients.
const IV_BYTES = 12;

/** Also used by pickle-import.ts, to carry a secret migrated from the reference. */
export function sealSecret(secret: Buffer, configSecret: Buffer): string {
  const iv = drawRandom(IV_BYTES);
  const c = createCipheriv("aes-256-gcm", secretKey(configSecret), iv);
  const body = Buffer.concat([c.update(secret), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]).toString("base64");
}

function openSecret(sealed: string, configSecret: Buffer): Buffer | null {
  try {
    const raw = Buffer.from(sealed, "base64");
    const d = createDecipheriv("aes-256-gcm", secretKey(configSecret), raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    // Kept as long as the client: memory of its own, not a slice of
    // Node's shared 8 KiB chunks; the slice is zeroed.
    const plain = Buffer.concat([d.update(raw.subarray(28)), d.final()]);
    const secret = ownedCopy(plain);
    plain.fill(0);
    return secret;
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
    const toOpen = secretToOpen(settings.secret);
    if (toOpen) stored.referenceSecret = toOpen.sealed.toString("base64");
    else if (piece !== CLIENT_CLOSE) stored.secret = piece.toString("latin1", SECRET_OPEN.length, piece.length - 2);
    clients[settings.name] = stored;
  }
  const state: StateFile = { format: "mandos-ts-state", version: 1, saved: new Date(now).toISOString(), clients };
  const removed = config.filter((c) => !Object.hasOwn(clients, c.name)).map((c) => c.name);
  if (removed.length > 0) state.removed = removed;
  return state;
}

function storedWithoutSecret(conf: ClientSettings, settings: ClientSettings, runtime: ClientRuntime): Omit<StoredClient, "secret"> {
  return { ...storedHead(conf, settings, runtime.enabled), runtime: storedRuntime(runtime) };
}

/** What clients.conf and the settings give: the stored client's first two keys. */
function storedHead(conf: ClientSettings, settings: ConfigValues, enabled: boolean): Pick<StoredClient, "config" | "current"> {
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
 * One client's JSON in the state file: what changes with clients.conf or a
 * setting (the head), then what changes with each secret sent (the expiry)
 * or checker run (the runtime). A wave of 10,000 clients changes only the
 * second, a fifth of the bytes. Its values are kept to compare with the
 * client's: the client's own objects when they are frozen (the registry
 * replaces them on each change, never changing one in place, so the same
 * object means the same values), else a frozen copy. Its bytes are kept in
 * memory only until a save that wrote them is in place, and then read from
 * that file when needed (`base`).
 *
 * Where its bytes are, by `bytes` and `base`:
 * - all in memory: `bytes`, `base` null;
 * - the head in the file written last, at `offset`, the tail in memory:
 *   `bytes` the tail, `base` that file, `close` null;
 * - all in the file written last, at `offset`, followed there by `close`
 *   (the secret piece then in effect): `bytes` null, `base` that file.
 * One object a client, with no object for where it lies: 10,000 clients'
 * places were 10,000 objects (~0.5 MiB), made again at every save.
 */
interface Fragment {
  readonly conf: ClientSettings;
  readonly settings: ConfigValues;
  readonly enabled: boolean;
  readonly runtime: ClientRuntime;
  /**
   * `"NAME":{"config":...,"current":...,"runtime":` (the head), then
   * `{...the runtime...}`, UTF-8, in one buffer (secretPiece's closes the
   * client), or null once the file written last holds them: 10,000
   * clients' bytes are 9 MB outside V8's heap, and a Buffer costs ~180
   * bytes of heap besides. The tail's bytes alone while the head lies in
   * that file (a reboot wave changes every client's runtime only, and
   * reading 10,000 heads back on the main thread took ~140 ms a save).
   */
  bytes: Buffer | null;
  /** The state file written last, when some of the bytes lie there (see above); else null. */
  base: BaseFile | null;
  /** Where they lie there. */
  offset: number;
  /** With `base` and no `bytes`: the secret piece that follows them there. */
  close: Buffer | null;
  /** Of the bytes, and where the runtime begins in them. */
  readonly length: number;
  readonly headLength: number;
  /** The last full look (StateSerialiser's count) that found it. */
  save: number;
  /**
   * Its index in the last full look's list (`pieces`), where a patch puts
   * the client's next fragment; -1 when it is in none. Kept here rather
   * than in a Map by name beside the fragments' own (0.44 MiB for 10,000).
   */
  slot: number;
}

/** A client as a save sees it: the registry's entry. */
export interface ClientView {
  readonly settings: ClientSettings;
  readonly runtime: ClientRuntime;
}

interface LastList {
  /** The clients.conf it was made for. */
  readonly config: readonly ClientSettings[];
  /** Its clients that the registry no longer has (StateFile.removed), in its order. */
  readonly removed: readonly string[];
  /**
   * A placeholder first and last (the header and the end, made at each
   * save); each client's Fragment followed by its secretPiece, a COMMA
   * between clients.
   */
  readonly pieces: Array<Buffer | Fragment>;
  /** When it was made (StateSerialiser's monotonic time). */
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
 * is made again only when that client's settings, runtime or secret
 * changed. A save is a list of pieces written with writev(2) as they are:
 * it neither serialises 10,000 clients nor makes a 9 MB string or buffer,
 * nor any garbage of that size. Every piece is immutable (a changed client
 * gets new ones), so a list may be written while the registry moves on.
 * The output is exactly JSON.stringify(buildState(...)) + "\n".
 *
 * The clients unchanged since the last save that was put in place are not
 * kept in memory but copied from that file (state-writer.ts's BaseFile,
 * kept open; runs of consecutive clients are one FileSpan), as long as it
 * is as we wrote it; if it is not, their JSON is made again from their
 * values.
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
  /** Marked changed and not yet made ahead of the save (`prepare`). */
  readonly #unprepared = new Set<string>();
  /** The state file written last, as long as it is the one in place. */
  #base: BaseFile | null = null;
  /** Written as the file's `importedPickle` (set at start-up), or left out when null. */
  importedPickle: string | null = null;
  /** Monotonic time (ms) for AUDIT_MS: a step of the wall clock must not put the full look off. */
  readonly #elapsed: () => number;

  constructor(elapsed: () => number = () => performance.now()) {
    this.#elapsed = elapsed;
  }

  /**
   * What changed since the last save: one client, by name; or, with null,
   * possibly which clients there are (added, removed, replaced).
   */
  changed(name: string | null): void {
    if (name === null) {
      this.#last = null;
      this.#unprepared.clear();
    } else if (this.#last !== null) {
      this.#dirty.add(name);
      this.#unprepared.add(name);
    }
  }

  /**
   * Makes the pieces of the clients marked changed, ahead of the next save,
   * until `budgetMs` have passed; true once none is left. A reboot wave
   * changes every client between two saves: made by the save, 10,000 of
   * them held the main thread ~55 ms in one piece (more on a busy core),
   * and every connection open then waited for it. Made here, a slice at a
   * time between connections, the save finds them made.
   */
  prepare(config: readonly ClientSettings[], lookup: (name: string) => ClientView | undefined, budgetMs: number): boolean {
    // Another clients.conf since the last full look: the next save looks
    // at every client anyway, with the new file's settings.
    if (this.#last?.config !== config) {
      this.#unprepared.clear();
      return true;
    }
    const until = performance.now() + budgetMs;
    let n = 0;
    for (const name of this.#unprepared) {
      this.#unprepared.delete(name);
      const client = lookup(name);
      // Each fragment of the last full look was made with this clients.conf's section.
      const conf = this.#fragments.get(name)?.conf;
      if (client !== undefined && conf !== undefined && client.settings.name === name) {
        this.#fragment(conf, client.settings, client.runtime);
        secretPiece(client.settings.secret, conf.secret);
      }
      if (++n % 16 === 0 && performance.now() >= until) return this.#unprepared.size === 0;
    }
    return true;
  }

  /**
   * The file's bytes, in order, as pieces that are never changed
   * afterwards, some copied from the file written last; its `settle` tells
   * the serialiser whether the save is in place (state-writer.ts does).
   */
  list(
    config: readonly ClientSettings[],
    current: Iterable<ClientView>,
    now: number,
    fleetUnsent: readonly FleetUnsentChange[] = [],
    lookup?: (name: string) => ClientView | undefined,
  ): StateList {
    // Copied from only while it is as we wrote it (one fstat a save).
    if (this.#base !== null && !this.#base.intact()) this.#base = null;
    const last = this.#last;
    const patched = lookup !== undefined && last !== null && last.config === config && this.#elapsed() - last.at < AUDIT_MS ? this.#patch(last, lookup) : null;
    const pieces = patched ?? this.#walk(config, current);
    pieces[0] = Buffer.from(`{"format":"mandos-ts-state","version":1,"saved":${JSON.stringify(new Date(now).toISOString())},"clients":{`);
    const removed = this.#last?.removed ?? [];
    pieces[pieces.length - 1] = Buffer.from(
      "}" +
        (removed.length > 0 ? `,"removed":${JSON.stringify(removed)}` : "") +
        (fleetUnsent.length > 0 ? `,"fleetUnsent":${JSON.stringify(fleetUnsent)}` : "") +
        (this.importedPickle !== null ? `,"importedPickle":${JSON.stringify(this.importedPickle)}` : "") +
        "}\n",
    );
    return this.#resolve(pieces, this.#base);
  }

  /** As `list`, every piece in memory (read from the file written last where `list` would copy): for tests and small tools. */
  pieces(...args: Parameters<StateSerialiser["list"]>): Buffer[] {
    const list = this.list(...args);
    try {
      return list.pieces.map((piece) => {
        if (!isSpan(piece)) return piece as Buffer;
        const bytes = piece.base.readSync(piece.offset, piece.length);
        if (bytes === null) throw new Error("the state file written last could not be read back");
        return bytes;
      });
    } finally {
      list.settle(null);
    }
  }

  /**
   * The list's pieces as a save writes them: each Fragment as its bytes, or
   * as a span of `base` (consecutive ones, with the commas between them
   * there, as one span). Records where each client's bytes will lie in the
   * new file, which becomes the base once the save is in place.
   */
  #resolve(pieces: ReadonlyArray<Buffer | Fragment>, base: BaseFile | null): StateList {
    const out: StatePiece[] = [];
    const written: Fragment[] = [];
    const offsets: number[] = [];
    const closes: Buffer[] = [];
    let run: { base: BaseFile; offset: number; length: number } | null = null;
    let comma = false;
    let position = 0;
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (piece instanceof Uint8Array) {
        if (piece === COMMA) {
          comma = true;
          continue;
        }
        if (run !== null) out.push(run);
        run = null;
        if (comma) out.push(COMMA);
        out.push(piece);
        position += (comma ? 1 : 0) + piece.length;
        comma = false;
        continue;
      }
      const close = pieces[++i] as Buffer;
      const offset = position + (comma ? 1 : 0);
      const copied = base === null ? null : copiedPart(piece, close, base);
      if (base !== null && copied !== null) {
        if (run !== null && comma && run.offset + run.length + 1 === copied.offset) {
          run.length += 1 + copied.length;
        } else {
          if (run !== null) out.push(run);
          if (comma) out.push(COMMA);
          run = { base, offset: copied.offset, length: copied.length };
        }
        if (copied.after.length > 0) {
          out.push(run, ...copied.after);
          run = null;
        }
      } else {
        if (run !== null) out.push(run);
        run = null;
        if (comma) out.push(COMMA);
        out.push(piece.bytes !== null && piece.base === null ? piece.bytes : this.#keepBytes(piece), close);
      }
      written.push(piece);
      offsets.push(offset);
      closes.push(close);
      position = offset + piece.length + close.length;
      comma = false;
    }
    if (run !== null) out.push(run);
    base?.use();
    let settled = false;
    return {
      pieces: out,
      settle: (fd) => {
        if (settled) return;
        settled = true;
        base?.release();
        if (fd !== null) this.#inPlace(fd, written, offsets, closes);
      },
    };
  }

  /** A save is in place: its file is the base, and its clients' bytes are read from there from now on. */
  #inPlace(fd: number, written: readonly Fragment[], offsets: readonly number[], closes: readonly Buffer[]): void {
    let next: BaseFile;
    try {
      next = new BaseFile(fd);
    } catch {
      closeSync(fd);
      return;
    }
    this.#base?.retire();
    this.#base = next;
    for (let k = 0; k < written.length; k++) {
      const fragment = written[k]!;
      // Not one replaced since the list was made: that one's bytes are newer.
      if (this.#fragments.get(fragment.conf.name) !== fragment) continue;
      fragment.base = next;
      fragment.offset = offsets[k]!;
      fragment.close = closes[k]!;
      fragment.bytes = null;
    }
  }

  /** A fragment's bytes, from the file written last or made again from its values, kept until the next save is in place. */
  #keepBytes(fragment: Fragment): Buffer {
    const bytes = this.#bytesOf(fragment);
    fragment.bytes = bytes;
    fragment.base = null;
    fragment.close = null;
    return bytes;
  }

  /** All of a fragment's bytes, read from the file written last where they (or its head) lie there, or made again from its values. */
  #bytesOf(fragment: Fragment): Buffer {
    const { bytes, base, offset } = fragment;
    const there = base !== null && base === this.#base;
    if (bytes !== null && base !== null) {
      const head = there ? base.readSync(offset, fragment.headLength) : null;
      return ownedConcat([head ?? headText(fragment.conf, fragment.settings, fragment.enabled), bytes]);
    }
    if (bytes !== null) return bytes;
    const read = there ? base.readSync(offset, fragment.length) : null;
    return read ?? ownedConcat([headText(fragment.conf, fragment.settings, fragment.enabled), tailText(fragment.runtime)]);
  }

  /** Every client, in order: the list made anew. */
  #walk(config: readonly ClientSettings[], current: Iterable<ClientView>): Array<Buffer | Fragment> {
    // Made for this look and dropped after it (~2 ms for 10,000 clients,
    // once in AUDIT_MS): kept, it would be 0.44 MiB beside the fragments,
    // which hold each client's section themselves.
    const byName = this.#configByName(config);
    this.#configCache = null;
    // The first and last pieces are filled in by list().
    const pieces: Array<Buffer | Fragment> = [COMMA];
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
      fragment.slot = pieces.length;
      pieces.push(fragment);
      pieces.push(secretPiece(settings.secret, conf.secret));
      first = false;
    }
    for (const [name, fragment] of this.#fragments) if (fragment.save !== save) this.#fragments.delete(name);
    pieces.push(COMMA);
    // clients.conf's clients without a fragment of this look: removed at run time.
    const removed: string[] = [];
    for (const conf of config) if (this.#fragments.get(conf.name)?.save !== save) removed.push(conf.name);
    this.#last = { config, removed, pieces, at: this.#elapsed() };
    this.#dirty.clear();
    this.#unprepared.clear();
    return pieces;
  }

  /** The clients marked changed, in the last list; null when one is not where it was (then a full look). */
  #patch(last: LastList, lookup: (name: string) => ClientView | undefined): Array<Buffer | Fragment> | null {
    const pieces = last.pieces;
    for (const name of this.#dirty) {
      const old = this.#fragments.get(name);
      const slot = old?.slot ?? -1;
      const there = pieces[slot];
      const client = lookup(name);
      if (old === undefined || slot < 0 || there === undefined || there instanceof Uint8Array || there.conf.name !== name) return null;
      if (client === undefined || client.settings.name !== name) return null;
      // The client's section in this clients.conf (the last full look's, as `last.config === config`).
      const conf = old.conf;
      const fragment = this.#fragment(conf, client.settings, client.runtime);
      fragment.save = this.#saves;
      pieces[slot] = fragment;
      pieces[slot + 1] = secretPiece(client.settings.secret, conf.secret);
    }
    this.#dirty.clear();
    this.#unprepared.clear();
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
    clients: Iterator<ClientView>,
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

  /** Where `old`'s head lies in the state file written last (its whole bytes or its head alone lie there), or -1. */
  #headInFile(old: Fragment): number {
    return this.#base !== null && old.base === this.#base ? old.offset : -1;
  }

  #fragment(conf: ClientSettings, settings: ClientSettings, runtime: ClientRuntime): Fragment {
    const old = this.#fragments.get(settings.name);
    const sameHead = old !== undefined && old.conf === conf && old.enabled === runtime.enabled && (old.settings === settings || sameSettings(old.settings, settings));
    const sameTail = old !== undefined && (old.runtime === runtime || sameRuntime(old.runtime, runtime));
    if (sameHead && sameTail) return old;
    // Together the stored object without its secret and closing brace. The
    // tail is made again (~1 µs); an unchanged head is taken from memory,
    // or left where it lies in the file written last, never read back here.
    const tail = tailText(runtime);
    const headOffset = sameHead ? this.#headInFile(old) : -1;
    const head = headOffset >= 0 ? null : sameHead && old.bytes !== null && old.base === null ? old.bytes.subarray(0, old.headLength) : headText(conf, settings, runtime.enabled);
    const bytes = ownedConcat(head === null ? [tail] : [head, tail]);
    const headLength = head === null ? old!.headLength : byteSize(head);
    const fragment: Fragment = {
      conf,
      enabled: runtime.enabled,
      settings: sameHead ? old.settings : Object.isFrozen(settings) ? settings : Object.freeze(configValues(settings)),
      runtime: sameTail ? old.runtime : Object.isFrozen(runtime) ? runtime : Object.freeze({ ...runtime }),
      bytes,
      base: headOffset >= 0 ? this.#base : null,
      offset: Math.max(headOffset, 0),
      close: null,
      length: head === null ? headLength + bytes.length : bytes.length,
      headLength,
      save: 0,
      slot: old?.slot ?? -1,
    };
    this.#fragments.set(settings.name, fragment);
    return fragment;
  }
}

const COMMA = Buffer.from(",");

/**
 * What of a fragment (followed by `close`) a save copies from `base`: all
 * of it, with its close if that is still the one in effect, or its head;
 * then what follows it from memory. Null if none of it lies there.
 */
function copiedPart(fragment: Fragment, close: Buffer, base: BaseFile): { offset: number; length: number; after: Buffer[] } | null {
  if (fragment.base !== base) return null;
  const { offset, bytes } = fragment;
  if (bytes !== null) return { offset, length: fragment.headLength, after: [bytes, close] };
  const sameClose = fragment.close === close;
  return { offset, length: fragment.length + (sameClose ? close.length : 0), after: sameClose ? [] : [close] };
}

/** A fragment's head: `"NAME":{"config":...,"current":...,"runtime":` (storedHead's JSON, open for the runtime). */
function headText(conf: ClientSettings, settings: ConfigValues, enabled: boolean): string {
  return `${JSON.stringify(conf.name)}:${JSON.stringify(storedHead(conf, settings, enabled)).slice(0, -1)},"runtime":`;
}

/** A fragment's tail: the runtime's JSON. */
function tailText(runtime: ClientRuntime): string {
  return JSON.stringify(storedRuntime(runtime));
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

/** Why a state file is not trusted (never its content). */
class UntrustedStateFile extends Error {
  override readonly name = "UntrustedStateFile";
}

/**
 * A state file's bytes (ours, or the reference's clients.pickle), read as
 * root at start-up, so with care: a symbolic link is not followed (it could
 * point at any root-only file), and the file must be a regular file owned
 * by root, by us or by the user we become (`owners`), and writable by
 * nobody else. Throws; `unreadableReason` puts the error in words.
 */
export function readTrustedStateFile(path: string, owners: readonly number[]): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UntrustedStateFile("not a regular file");
    const trusted = new Set([0, process.getuid?.() ?? 0, ...owners]);
    if (!trusted.has(st.uid)) throw new UntrustedStateFile(`owned by uid ${st.uid}, not by root or the server's user`);
    if ((st.mode & 0o022) !== 0) throw new UntrustedStateFile(`writable by others (mode ${(st.mode & 0o777).toString(8)})`);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Why readTrustedStateFile failed, in words that quote nothing of the file. */
export function unreadableReason(error: unknown): string {
  if ((error as NodeJS.ErrnoException).code === "ELOOP") return "it is a symbolic link, which is not followed";
  return error instanceof UntrustedStateFile ? error.message : reasonInWords(error);
}

/**
 * What the admin may do about a state file (or the reference's pickle)
 * that cannot be restored. Read as none, the clients disabled or removed
 * at run time would come back (a machine disabled because it was stolen
 * among them), and the next save would replace the file: the server does
 * not start instead, as the reference does not on a pickle it cannot read.
 */
export const NOT_STARTED = "not started, since starting without it would bring back the clients disabled or removed at run time: " +
  "repair or move the file, or start with --no-restore to begin from clients.conf";

/**
 * Reads the state file: null when it is missing, or empty (a warning each,
 * as the reference's for a missing pickle and an empty one). Throws, with
 * the path, the reason and what to do, for any other file it cannot
 * restore: unreadable, not trusted, not whole, not ours, a value out of
 * range (state-check.ts), or of a later version. `owners`: uids besides
 * root and ours that may own it (the user the server becomes).
 */
export function readState(path: string, logger: Logger, owners: readonly number[] = []): StateFile | null {
  let text: string;
  try {
    text = readTrustedStateFile(path, owners).toString("utf8");
  } catch (error) {
    // The reference's own line for a first start.
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      logger.warning("Could not load persistent state: No such file or directory");
      return null;
    }
    throw new Error(`Could not load persistent state from ${path}: ${unreadableReason(error)}; ${NOT_STARTED} (the file is then replaced)`, { cause: error });
  }
  if (text.length === 0) {
    logger.warning(`Could not load persistent state from ${path}: the file is empty; starting from clients.conf`);
    return null;
  }
  let parsed: Record<string, unknown>;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error();
    parsed = value as Record<string, unknown>;
  } catch {
    // Never V8's message: it quotes the file's first bytes.
    throw new Error(`Could not load persistent state from ${path}: not valid JSON; ${NOT_STARTED} (the file is then replaced)`);
  }
  if (parsed.format === "mandos-ts-state" && typeof parsed.version === "number" && parsed.version > 1) {
    // Written by a later mandos-ts (an install gone back to this one).
    throw new Error(`${path} is of a later mandos-ts (state version ${String(parsed.version)}; this one reads version 1): run that version, or start with --no-restore to begin from clients.conf (the file is then replaced)`);
  }
  if (parsed.format !== "mandos-ts-state" || parsed.version !== 1) {
    throw new Error(`Could not load persistent state from ${path}: not a mandos-ts state file of version 1; ${NOT_STARTED} (the file is then replaced)`);
  }
  const unusable: UnusableSettings = [];
  const problem = stateFileProblem(parsed, unusable);
  if (problem !== null) throw new Error(`Could not load persistent state from ${path}: ${problem}; ${NOT_STARTED} (the file is then replaced)`);
  for (const [name, fields] of dropUnusableSettings(parsed as { clients: Record<string, unknown> }, unusable)) {
    logger.warning(`Client ${clientName(name)} in ${path}: ${fields.join(", ")} out of range or of the wrong type; taken from clients.conf`);
  }
  return parsed as unknown as StateFile;
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
  const removed = new Set(Array.isArray(state?.removed) ? state.removed.filter((n) => typeof n === "string") : []);
  for (const conf of config) {
    if (removed.has(conf.name)) {
      // The reference's rule: removed at run time, it stays removed while
      // clients.conf keeps its section (taking the section out and putting
      // it back, a start or a reload in between, adds it anew).
      logger.debug(`Not restoring ${conf.name}: removed at run time`);
      continue;
    }
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
    // The Python server's sealed one not yet opened: a placeholder, opened
    // once serving (clients/secret-to-open.ts), under today's clients.conf
    // secret as the reference opens it.
    const reference = saved.secret === undefined && typeof saved.referenceSecret === "string" ? Buffer.from(saved.referenceSecret, "base64") : null;
    if (reference !== null && reference.length > 0) {
      merged.secret = placeholderFor({ sealed: reference, configSecret: conf.secret });
    } else {
      const secret = saved.secret === undefined ? conf.secret : openSecret(saved.secret, conf.secret);
      if (secret === null) logger.debug(`Failed to decrypt ${conf.name} old secret`);
      merged.secret = secret === null || isConfigSecret(secret, conf.secret) ? conf.secret : secret;
    }
    const s = merged as unknown as ClientSettings;
    const r = saved.runtime;
    const runtime: { -readonly [K in keyof ClientRuntime]: ClientRuntime[K] } = {
      enabled: s.enabled,
      created: ms(r.created) ?? now,
      lastEnabled: ms(r.last_enabled),
      expires: ms(r.expires),
      lastCheckedOk: ms(r.last_checked_ok),
      lastApprovalRequest: ms(r.last_approval_request),
      lastCheckerStatus: typeof r.last_checker_status === "number" ? r.last_checker_status : -2,
      lastCheckerSignal: r.last_checker_signal ?? null,
    };
    // Enabled by an edit of clients.conf (`enabled = True` where the saved
    // state has it disabled): enabled now, as a client new to the file is.
    // (The reference fails on such a restore and loses its whole state.)
    if (runtime.enabled && (r.enabled === false || runtime.lastEnabled === null)) runtime.lastEnabled = now;
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
    // As the reference's Client(): a disabled client has no expiry and no
    // time it was last enabled.
    if (!runtime.enabled) {
      runtime.expires = null;
      runtime.lastEnabled = null;
    }
    const restored: ClientSettings = { ...s, enabled: runtime.enabled };
    // Most clients' settings in effect are clients.conf's: those keep its
    // object (the registry's record shares it until a setting changes).
    settings.push(restored.secret === conf.secret && sameSettings(restored, conf) ? conf : restored);
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

/** How long each slice of StateSerialiser.prepare may take (a few hundred clients' work). */
export const STATE_PREPARE_SLICE_MS = 2;

/**
 * How long changed clients wait to be prepared: made one or two at a
 * time, as they change, a client's pieces cost the main thread ~23 µs
 * (measured in a reboot wave); made a hundred or more at once, ~6 µs.
 */
export const STATE_PREPARE_DELAY_MS = 100;
/** The longest wait before a change is saved, however long saves take. */
export const SAVE_MAX_DELAY_MS = 10_000;
/**
 * After a background save that failed (a full disk, a state directory
 * gone or no longer writable), the next try comes this long after, with
 * or without another change: the state on disk catches up, and /health
 * recovers, once the fault is gone, not only at the next change.
 */
export const SAVE_RETRY_MS = SAVE_MAX_DELAY_MS;

/** How long after a change the next save comes, when the last one took `lastSaveMs`. */
export function saveDelay(lastSaveMs: number): number {
  return Math.min(SAVE_MAX_DELAY_MS, Math.max(SAVE_DELAY_MS, Math.ceil(lastSaveMs / SAVE_MAX_SHARE)));
}

/**
 * How long a routine change waits to be saved: a checker that succeeded
 * again, an expiry moved on by it or by a secret sent (StateSaver.routine).
 * Saved each second, a fleet's checkers rewrote the whole file without
 * pause (5,000 clients at the default 2-minute interval: 42 successes a
 * second, a 4.5 MB file each second, ~390 GB a day); the reference writes
 * its file only as it exits. A crash loses at most this much of them,
 * which a restart forgives: a client whose last checker succeeded stays
 * enabled past its expiry (docs/STATE.md, "Restoring").
 */
export const ROUTINE_SAVE_DELAY_MS = 60_000;

/**
 * Whether a registry event changes only what a routine save may wait for
 * (ROUTINE_SAVE_DELAY_MS): the times a checker success or a secret sent
 * moves on. Everything an operator or a failure changes (enabled, the
 * settings, a secret, a removal, a checker status that changed) is saved
 * within seconds.
 */
export function routineChange(event: RegistryEvent): boolean {
  switch (event.type) {
    case "property-changed":
      return event.property === "LastCheckedOK" || event.property === "Expires" || event.property === "CheckerRunning";
    case "checker-completed":
      return true;
    case "got-secret":
      // Not for a client whose checker fails (a machine down as it
      // rebooted): the restore forgives a lost expiry only after a
      // success, and would disable it at a restart after a crash.
      return event.client.lastCheckedOk !== null && event.client.lastCheckerStatus === 0;
    default:
      return false;
  }
}

export class StateSaver {
  readonly #path: string;
  readonly #collect: () => readonly StatePiece[] | StateList;
  readonly #clock: Clock;
  #timer: TimerHandle | null = null;
  /** How long the last save took, on `clock`, from collecting to the rename. */
  #lastSaveMs = 0;
  /** The save being written in the background, if any. */
  #writing: Promise<void> | null = null;
  /** When the pending save (#timer) is due, on `clock`. */
  #due = 0;
  /** The pending save tries again after a failure: changes meanwhile wait for it (SAVE_RETRY_MS). */
  #retrying = false;
  /** Changes came while one was being written: the save they want when it is done. */
  #changedWhileWriting: "soon" | "routine" | null = null;
  /** Counts saves; a background save renames its file only if no later one began. */
  #generation = 0;
  /** Run before each save, throwing why it cannot be written (the state directory cannot be made: ensureStateDir). */
  readonly #prepare: () => void;
  /** Which file the state file was as this server last saw it its own (at the start, then after each save); null when none. */
  #ownFile: string | null;

  /**
   * `collect` gives the state file's bytes as pieces that nobody changes
   * afterwards (StateSerialiser.list, settled by the writer). Each save is
   * published (events.stateSaved / stateSaveFailed), not logged.
   * `prepare` runs first, and a throw fails the save (ensureStateDir).
   */
  constructor(path: string, collect: () => readonly StatePiece[] | StateList, clock: Clock = systemClock, prepare: () => void = () => {}) {
    this.#path = path;
    this.#collect = collect;
    this.#clock = clock;
    this.#prepare = prepare;
    this.#ownFile = fileIdentity(path);
  }

  /** Whether the state file is now one this server did not write (nor start with): looked at as a save begins. */
  #replacedByOther(): boolean {
    const now = fileIdentity(this.#path);
    return this.#ownFile !== null && now !== null && now !== this.#ownFile;
  }

  /**
   * Something changed: save soon (saveDelay), in the background. One save
   * is written at a time; a change meanwhile is saved after it.
   */
  changed(): void {
    this.#want("soon");
  }

  /**
   * A routine change (routineChange): saved with the next change that is
   * not, or ROUTINE_SAVE_DELAY_MS after it at the latest.
   */
  routine(): void {
    this.#want("routine");
  }

  #want(kind: "soon" | "routine"): void {
    if (this.#writing) {
      if (this.#changedWhileWriting !== "soon") this.#changedWhileWriting = kind;
      return;
    }
    const delay = kind === "soon" ? saveDelay(this.#lastSaveMs) : Math.max(ROUTINE_SAVE_DELAY_MS, saveDelay(this.#lastSaveMs));
    if (this.#timer) {
      // A routine save is brought forward by a change that cannot wait; never put off.
      if (this.#retrying || this.#due <= this.#clock.elapsed() + delay) return;
      this.#timer.cancel();
    }
    this.#saveAfter(delay);
  }

  #saveAfter(ms: number, retrying = false): void {
    this.#due = this.#clock.elapsed() + ms;
    this.#retrying = retrying;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      this.#saveInBackground();
    }, ms);
  }

  /**
   * Saves at once, on this thread (at shutdown), cancelling the pending save;
   * a save still being written in the background is dropped, not renamed.
   * Null when saved; else why not (an errno code, or the error's message).
   */
  saveNow(): string | null {
    this.#timer?.cancel();
    this.#timer = null;
    this.#changedWhileWriting = null;
    const generation = ++this.#generation;
    const began = this.#clock.elapsed();
    const started = performance.now();
    const replacedOther = this.#replacedByOther();
    try {
      this.#prepare();
      let data = this.#collect();
      try {
        writeAtomically(this.#path, data);
      } catch (error) {
        // The file copied from was changed under us: the next list copies nothing from it.
        if (!(error instanceof StateFileChanged)) throw error;
        this.#failed(error);
        data = this.#collect();
        writeAtomically(this.#path, data);
      }
      this.#ownFile = fileIdentity(this.#path);
      this.#saved(byteCount(data), started, replacedOther);
      return null;
    } catch (error) {
      return this.#failed(error);
    } finally {
      if (generation === this.#generation) this.#lastSaveMs = this.#clock.elapsed() - began;
    }
  }

  /** Resolves when no save is being written in the background. */
  async idle(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  #saveInBackground(): void {
    const generation = ++this.#generation;
    const began = this.#clock.elapsed();
    const started = performance.now();
    let data: readonly StatePiece[] | StateList;
    /** This save failed: try again SAVE_RETRY_MS after it. */
    let retry = false;
    const replacedOther = this.#replacedByOther();
    try {
      this.#prepare();
    } catch (error) {
      // As a write that fails: tried again SAVE_RETRY_MS later.
      this.#failed(error);
      if (!this.#timer) this.#saveAfter(SAVE_RETRY_MS, true);
      return;
    }
    try {
      data = this.#collect();
    } catch (error) {
      this.#failed(error);
      return;
    }
    const bytes = byteCount(data);
    // The file is this server's own from its rename on, not from the end
    // of the directory's fsync: a saveNow between must not take it for
    // another process's, nor another process's written then pass as ours.
    const renamed = (): void => void (this.#ownFile = fileIdentity(this.#path));
    this.#writing = writeAtomicallyInBackground(this.#path, data, () => generation === this.#generation, renamed).then(
      (replaced) => {
        if (replaced) this.#saved(bytes, started, replacedOther);
      },
      (error: unknown) => {
        this.#failed(error);
        // Copied from a file changed under us: saved again soon, copying
        // nothing from it. Any other failure: tried again later (a save
        // that a later one overtook has nothing left to save).
        if (error instanceof StateFileChanged) this.#changedWhileWriting = "soon";
        else if (generation === this.#generation) retry = true;
      },
    ).finally(() => {
      this.#writing = null;
      if (generation === this.#generation) this.#lastSaveMs = this.#clock.elapsed() - began;
      const wanted = this.#changedWhileWriting;
      this.#changedWhileWriting = null;
      // A failure is tried again SAVE_RETRY_MS after it, whatever came
      // meanwhile (the retry saves it too): a routine change must not put
      // it off a minute, nor a change that cannot wait make a failing disk
      // be tried each second.
      if (retry && !this.#timer) this.#saveAfter(SAVE_RETRY_MS, true);
      else if (wanted !== null) this.#want(wanted);
    });
  }

  #saved(bytes: number, started: number, replacedOther: boolean): void {
    if (events.stateSaved.hasSubscribers) events.stateSaved.publish({ path: this.#path, bytes, durationMs: performance.now() - started, replacedOther });
  }

  #failed(error: unknown): string {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    if (events.stateSaveFailed.hasSubscribers) events.stateSaveFailed.publish({ path: this.#path, reason });
    return reason;
  }
}

/**
 * Which file `path` is: its inode, and its modification time, as a freed
 * inode's number is soon given to a new file; null when there is none (or
 * it cannot be looked at).
 */
function fileIdentity(path: string): string | null {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.ino}:${st.mtimeNs}`;
  } catch {
    return null;
  }
}

function byteCount(data: readonly StatePiece[] | StateList): number {
  let n = 0;
  for (const p of piecesOf(data).pieces) n += p.length;
  return n;
}
