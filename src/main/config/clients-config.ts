// clients.conf: one section per client, each inheriting [DEFAULT] and the
// reference's Client.client_defaults (mandos-clients.conf(5)), turned into
// ClientSettings as the reference's Client.config_parser does, step by step:
//  1. every option of the section, its own and inherited, is interpolated
//     (an error in any of them, used or not, fails the file, as in Python);
//  2. approved_by_default and enabled through getboolean;
//  3. key_id and fingerprint normalised; we require one of them (the
//     reference insists on fingerprint, a known bug its man page contradicts);
//  4. the secret: `secret` base64-decoded as Python does, else the bytes of
//     `secfile` (expanduser(expandvars(...)); a relative path is taken from
//     the working directory, as the reference's open() takes it: "/" once
//     a server has detached), kept packed with the others
//     (secret-arena.ts);
//  5. the five durations through string_to_delta; a negative one is an
//     error (the reference fails on it at start-up too, as its D-Bus
//     properties and GLib timers are unsigned), and so is one longer than
//     MAX_CLIENT_DURATION_MS (which would take timestamps out of range).
// The checker is kept after step 1, so its runtime `%(attr)s` remain.
// The strings kept are copies (see ownCopy): never views on the file's text.

import { createHash } from "node:crypto";
import { userInfo } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { CLIENT_DEFAULTS, checkerHoldsSecret, type ClientSettings, normaliseKeyId } from "../clients/settings.js";
import { MAX_CLIENT_DURATION_MS, parseDuration } from "./duration.js";
import { secretForm, secretWarning } from "./openpgp-message.js";
import { ConfigError, type ConfigErrorPlace } from "./errors.js";
import { type IniDocument, parseIni, rawOption, sectionItems } from "./ini.js";
import { type HomeDirectoryLookup, passwdHomeDirectory, pyBase64Decode, pyBoolean, pyExpandUser, pyExpandVars } from "./python-values.js";
import { reasonInWords } from "./os-error.js";
import { readConfigText, readRegularFile } from "./read-file.js";
import { SecretArena } from "./secret-arena.js";

export interface ClientsConfigOptions {
  /** Environment for `$VAR` in secfile. Default: process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Home directory of a user, for `~user/`. Default: /etc/passwd. */
  readonly homeOf?: HomeDirectoryLookup;
  /** The user `~` means when HOME is unset. Default: the process's user. */
  readonly currentUser?: string;
  /** Reads a secfile. Default: readRegularFile (a FIFO is refused). */
  readonly readSecfile?: (path: string) => Buffer;
  /** What a relative secfile is relative to. Default: the working directory. */
  readonly secfileBase?: string;
  /** Told of each relative secfile (`--check` says where a start reads it). */
  readonly onRelativeSecfile?: (place: ConfigErrorPlace, value: string, path: string) => void;
}

/**
 * Reads clients.conf at `path` at start-up; a missing or unreadable file
 * has no clients, as in the reference. Reloads must not use this: see
 * reloadClientsConfig, which keeps the running clients instead.
 */
export function loadClientsConfig(path: string, opts: ClientsConfigOptions = {}): ClientSettings[] {
  return readClientsConfig(path, opts).clients;
}

/** clients.conf as a start reads it: its clients, and why it could not be read (null when it was). */
export interface ClientsConfigRead {
  readonly clients: ClientSettings[];
  readonly unreadable: NodeJS.ErrnoException | null;
}

/** As loadClientsConfig, saying whether the file was read: a start decides on it (clientsConfRefusal). */
export function readClientsConfig(path: string, opts: ClientsConfigOptions = {}): ClientsConfigRead {
  const text = readConfigText(path);
  return typeof text === "string" ? { clients: parseClientsConfig(text, path, opts), unreadable: null } : { clients: [], unreadable: text.unreadable };
}

/**
 * Why a start must not go on with clients.conf unread (null: it may, with
 * no clients). The reference's ConfigParser skips a file it cannot open,
 * and its restore then drops every saved client, so that the first save
 * forgets the clients disabled or removed at run time: they come back
 * enabled once the file is back. Ours stops instead (as it stops on a state
 * file it cannot read), where that would lose anything: a file that is
 * there and cannot be read (a directory in its place, EACCES, EIO) always;
 * a missing one only when `savedClients` (the clients, and the clients
 * removed at run time, that the state to restore holds) is not 0: a fresh
 * install, with nothing saved, starts with no clients as the reference's.
 */
export function clientsConfRefusal(path: string, unreadable: NodeJS.ErrnoException | null, savedClients: number, statePath: string): string | null {
  if (unreadable === null) return null;
  const why = `Could not read ${path}: ${reasonInWords(unreadable)}${unreadable.code === undefined ? "" : ` (${unreadable.code})`}`;
  if (unreadable.code !== "ENOENT") {
    return `${why}; not started, since starting without it would start with no clients and save that state, losing the clients disabled or removed at run time: make it readable, or move it away to start with no clients`;
  }
  if (savedClients === 0) return null;
  return `${why}; not started, since ${statePath} holds ${savedClients} client${savedClients === 1 ? "" : "s"}, which starting without it would drop from the state: put clients.conf back, or start with --no-restore to begin with no clients (the state file is then replaced)`;
}

/**
 * Of each list parseClientsConfig returned: the SHA-256 of the text it was
 * parsed from, when no client's secret came from a secfile (whose contents
 * the text does not show). A reload of the same text can then skip the
 * parse: 1 s of the main thread for 5,000 clients, 4 s for 20,000.
 */
const parsedFrom = new WeakMap<readonly ClientSettings[], string>();

/** The digest of clients.conf's text as parsed into `clients`; undefined if unknown or it names secfiles. */
export function parsedTextDigest(clients: readonly ClientSettings[]): string | undefined {
  return parsedFrom.get(clients);
}

/** Records `digest` as the text's that `clients` were parsed from (a parse in another thread). */
export function rememberParsedText(clients: readonly ClientSettings[], digest: string): void {
  parsedFrom.set(clients, digest);
}

/** The digest parsedTextDigest compares. */
export function textDigest(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * Parses the text of a clients.conf (for SIGHUP reloads and tests); `file`
 * names it in errors. `digest`: textDigest(text), if the caller has it.
 */
export function parseClientsConfig(text: string, file: string, opts: ClientsConfigOptions = {}, digest?: string): ClientSettings[] {
  const doc = parseIni(text, file, CLIENT_DEFAULTS);
  const clients: ClientSettings[] = [];
  const copies = new Map<string, string>();
  const own = (text: string): string => {
    let copy = copies.get(text);
    if (copy === undefined) copies.set(text, (copy = ownCopy(text)));
    return copy;
  };
  // Most clients share their durations with DEFAULT: parse each text once.
  const durations = new Map<string, number | undefined>();
  const cachedDuration = (text: string): number | undefined => {
    if (!durations.has(text)) durations.set(text, parseDuration(text));
    return durations.get(text);
  };
  const secrets = new SecretArena();
  const read = { secfiles: 0 };
  for (const name of doc.sections.keys()) clients.push(clientSettings(doc, name, opts, cachedDuration, own, secrets, read));
  if (read.secfiles === 0) parsedFrom.set(clients, digest ?? textDigest(text));
  return clients;
}

/**
 * A string equal to `text` that shares no memory with it. V8 makes a
 * substring a view on the string it was cut from, so a key ID kept from
 * clients.conf would keep the whole file's text alive: 18 MB for 10,000
 * clients, more than all of the settings parsed from it.
 */
function ownCopy(text: string): string {
  return Buffer.from(text, "utf8").toString("utf8");
}

function clientSettings(
  doc: IniDocument,
  name: string,
  opts: ClientsConfigOptions,
  parseDuration: (text: string) => number | undefined,
  own: (text: string) => string,
  secrets: SecretArena,
  read: { secfiles: number },
): ClientSettings {
  const at = (key: string): ConfigErrorPlace => ({ file: doc.file, line: rawOption(doc, name, key)?.line ?? doc.sections.get(name)?.line ?? 0, section: name, key });
  // Step 1.
  const items = sectionItems(doc, name);
  const get = (key: string): string => items.get(key) ?? "";
  // What D-Bus carries as a string ("s") must hold no NUL: such a name, key or
  // command once stopped the server at its first D-Bus announcement.
  if (name.includes("\0")) throw new ConfigError("CONFIG_BAD_TEXT", { file: doc.file, line: doc.sections.get(name)?.line ?? 0, section: name }, "a client name with a NUL character, which D-Bus cannot carry");
  for (const key of ["key_id", "fingerprint", "host", "checker"]) {
    if (get(key).includes("\0")) throw new ConfigError("CONFIG_BAD_TEXT", at(key), "a NUL character, which D-Bus cannot carry");
  }
  // Step 2.
  const boolean = (key: string): boolean => {
    const parsed = pyBoolean(get(key));
    if (parsed === undefined) throw new ConfigError("CONFIG_BAD_BOOLEAN", at(key), `not a boolean: ${JSON.stringify(get(key))}`);
    return parsed;
  };
  const approvedByDefault = boolean("approved_by_default");
  const enabled = boolean("enabled");
  // Step 3.
  const keyId = normaliseKeyId(get("key_id"));
  const fingerprint = normaliseKeyId(get("fingerprint"));
  // Neither: a client no peer can match (clientKeyWarnings says so), as
  // the reference keeps one with empty values; one section mid-edit must
  // not stop the start of every other client.
  // Step 4.
  let secret: Buffer;
  if (items.has("secret")) {
    const decoded = pyBase64Decode(get("secret"));
    if (decoded === undefined) throw new ConfigError("CONFIG_BAD_SECRET", at("secret"), "secret is not valid base64 (incomplete last group)");
    secret = secrets.keep(decoded);
    // The decoding's own buffer: garbage now, and none of it left to read.
    decoded.fill(0);
  } else if (items.has("secfile")) {
    read.secfiles++;
    const bytes = readSecfile(get("secfile"), at("secfile"), opts);
    secret = secrets.keep(bytes);
    if (opts.readSecfile === undefined) bytes.fill(0);
  } else {
    throw new ConfigError("CONFIG_NO_SECRET", { file: doc.file, line: doc.sections.get(name)?.line ?? 0, section: name }, "client has neither secret nor secfile");
  }
  // Step 5.
  const duration = (key: string): number => {
    const ms = parseDuration(get(key));
    if (ms === undefined) throw new ConfigError("CONFIG_BAD_DURATION", at(key), `not a duration: ${JSON.stringify(get(key))}`);
    if (ms < 0) throw new ConfigError("CONFIG_BAD_DURATION", at(key), `a duration cannot be negative: ${JSON.stringify(get(key))}`);
    if (ms > MAX_CLIENT_DURATION_MS) throw new ConfigError("CONFIG_BAD_DURATION", at(key), `duration longer than 100,000 years: ${JSON.stringify(get(key))}`);
    return ms;
  };
  return {
    name: own(name),
    keyId: own(keyId),
    fingerprint: own(fingerprint),
    secret,
    host: own(get("host")),
    timeout: duration("timeout"),
    extendedTimeout: duration("extended_timeout"),
    interval: duration("interval"),
    checker: own(get("checker")),
    approvedByDefault,
    approvalDelay: duration("approval_delay"),
    approvalDuration: duration("approval_duration"),
    enabled,
  };
}

/** How many lines of each kind of clientKeyWarnings the log is given. */
export const LOGGED_WARNINGS_PER_KIND = 10;

/**
 * One warning for each client no peer can match (neither key ID nor
 * fingerprint: a section mid-edit, a misspelt `key_id`), for each other
 * whose secret is empty or not an OpenPGP message mandos-client can
 * decrypt, for each whose checker holds its secret, and for each key
 * ID and each fingerprint that several clients share. A connecting client
 * is matched to the first of those only (as the reference's search in its
 * clients' order), so the others never get their secrets: usually a
 * section copied for a new machine whose key_id was not changed. A modern
 * client is found by its key ID, a legacy one by its fingerprint, so
 * machines cloned from one image whose TLS keys were made anew share a
 * fingerprint and are still served.
 *
 * `perKind` caps the lines of each kind (the log's, at a start and at each
 * reload: a fleet's clients.conf whose 20,000 secrets are all of a wrong
 * form would write 20,000 lines, and journald's rate limit would drop
 * other lines with them); the rest of a kind are counted in one line
 * after its last. `--check` lists every one.
 */
export function clientKeyWarnings(clients: readonly ClientSettings[], perKind = Infinity): string[] {
  const warnings = new CappedWarnings(perKind);
  for (const c of clients) {
    if (c.keyId === "" && c.fingerprint === "") warnings.push("no-key", `Client ${c.name} has neither key_id nor fingerprint: no peer can match it, it is never served`);
    else {
      // `secret =` with nothing after it, a secfile of 0 bytes, a passphrase
      // not encrypted (openpgp-message.ts): served, as the reference serves
      // it, and taken by mandos-client as a failed attempt, again every 10 s
      // for ever.
      const warning = secretWarning(secretForm(c.secret));
      if (warning !== null) warnings.push("secret", `Client ${c.name}'s secret in clients.conf ${warning}; the machine never unlocks unless a secret set over D-Bus (mandos-ctl --secret) is in effect`);
    }
    if (checkerHoldsSecret(c.checker, c.secret)) {
      warnings.push("checker-secret", `Client ${c.name}'s checker holds its secret (%(secret)s): its command line shows it to every user, and the log's "Starting checker" lines and the state file hold it; etcd is never given it`);
    }
  }
  for (const [field, words] of [["keyId", "key ID"], ["fingerprint", "fingerprint"]] as const) {
    const owners = new Map<string, ClientSettings[]>();
    for (const c of clients) {
      const key = c[field];
      if (key === "") continue;
      const sharing = owners.get(key);
      if (sharing === undefined) owners.set(key, [c]);
      else sharing.push(c);
    }
    for (const [key, sharing] of owners) {
      if (sharing.length < 2) continue;
      const names = sharing.map((c) => c.name).join(", ");
      const first = sharing[0]!.name;
      const byKeyId = sharing.filter((c) => c.keyId !== "").map((c) => c.name);
      const never = sharing.slice(1).filter((c) => c.keyId === "").map((c) => c.name);
      if (field === "keyId" || byKeyId.length === 0) {
        warnings.push(field, `Clients ${names} have the same ${words} ${key}: only one of them can be served`);
      } else if (never.length === 0 && new Set(byKeyId).size === sharing.length) {
        warnings.push(field, `Clients ${names} have the same ${words} ${key}: each is served by its own key ID, but a legacy (OpenPGP) client with that key only as ${first}`);
      } else {
        const own = byKeyId.length === 1 ? `${byKeyId[0]} is served by its own key ID` : `${byKeyId.join(", ")} are served by their own key IDs`;
        const none = never.length === 0 ? "" : `, ${never.join(", ")} never`;
        warnings.push(field, `Clients ${names} have the same ${words} ${key}: ${own}${none}; a legacy (OpenPGP) client with that key only as ${first}`);
      }
    }
  }
  return warnings.lines();
}

type WarningKind = "no-key" | "secret" | "checker-secret" | "keyId" | "fingerprint";

/** What the line after a kind's last says of the rest of that kind: one, several. */
const MORE_OF_KIND: Readonly<Record<WarningKind, readonly [string, string]>> = {
  "no-key": ["client has neither key_id nor fingerprint", "clients have neither key_id nor fingerprint"],
  secret: ["client's secret in clients.conf is of a form mandos-client cannot decrypt", "clients' secrets in clients.conf are of a form mandos-client cannot decrypt"],
  "checker-secret": ["client's checker holds its secret", "clients' checkers hold their secrets"],
  keyId: ["key ID is shared by several clients", "key IDs are each shared by several clients"],
  fingerprint: ["fingerprint is shared by several clients", "fingerprints are each shared by several clients"],
};

/** Warnings in order, at most `perKind` of a kind; the rest counted. */
class CappedWarnings {
  readonly #perKind: number;
  readonly #lines: string[] = [];
  readonly #seen = new Map<WarningKind, number>();

  constructor(perKind: number) {
    this.#perKind = perKind;
  }

  push(kind: WarningKind, line: string): void {
    const seen = (this.#seen.get(kind) ?? 0) + 1;
    this.#seen.set(kind, seen);
    if (seen <= this.#perKind) this.#lines.push(line);
  }

  lines(): string[] {
    const more: string[] = [];
    for (const [kind, seen] of this.#seen) {
      const rest = seen - this.#perKind;
      if (rest > 0) more.push(`${rest} more ${MORE_OF_KIND[kind][rest === 1 ? 0 : 1]} (not each said here: mandos --check lists them all)`);
    }
    return more.length === 0 ? this.#lines : [...this.#lines, ...more];
  }
}

/**
 * The path a secfile value names: expanduser(expandvars(value)), a
 * relative one from the working directory. The reference reads
 * clients.conf after daemon() has done chdir("/"), and so do we
 * (main.ts): a detached server takes it from "/", a foreground one from
 * where it was started.
 */
export function secfilePath(value: string, opts: ClientsConfigOptions = {}): string {
  return resolve(opts.secfileBase ?? process.cwd(), expandSecfile(value, opts));
}

/** expanduser(expandvars(value)): relative or not. */
function expandSecfile(value: string, opts: ClientsConfigOptions): string {
  const env = opts.env ?? process.env;
  // Only `~` without $HOME needs the user (and userInfo() throws without a passwd entry).
  const currentUser = (): string => opts.currentUser ?? userInfo().username;
  return pyExpandUser(pyExpandVars(value, env), env, opts.homeOf ?? passwdHomeDirectory, currentUser);
}

function readSecfile(value: string, place: ConfigErrorPlace, opts: ClientsConfigOptions): Buffer {
  const expanded = expandSecfile(value, opts);
  const path = resolve(opts.secfileBase ?? process.cwd(), expanded);
  if (!isAbsolute(expanded)) opts.onRelativeSecfile?.(place, value, path);
  try {
    // A FIFO in its place is refused, not waited on for ever (read-file.ts).
    return (opts.readSecfile ?? readRegularFile)(path);
  } catch (error) {
    throw new ConfigError("CONFIG_SECFILE_UNREADABLE", place, `cannot read secfile ${JSON.stringify(path)}: ${reasonInWords(error)}`);
  }
}
