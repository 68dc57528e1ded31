// Enrolling many machines at once: each machine's public keys and password
// become a clients.conf section (as `mandos-keygen --password` prints it),
// and all of them are added to clients.conf in one atomic replacement of
// the file (temporary file in the same directory with the old file's mode
// and owner, fsync, rename), after checking that no name, key ID or
// fingerprint is already taken. A running server takes them on SIGHUP.
// A clients.conf that is a symbolic link stays one: the file it names is
// the one replaced, the temporary file and the lock beside it.
//
// Input, either or both:
//   DIR...            key directories (pubkey.txt, tls-pubkey.pem); the
//                     section is named after the directory, the password is
//                     the contents of DIR/password;
//   --manifest FILE   lines "NAME<TAB>KEYDIR<TAB>PASSWORD" ("-" for standard
//                     input; the password is the rest of the line; blank
//                     lines and lines starting with # are skipped).
// Passwords are never printed, nor are the encrypted secrets.

import { closeSync, fchmodSync, fchownSync, fsyncSync, lstatSync, openSync, readFileSync, readlinkSync, realpathSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { parseClientsConfig } from "../main/config/index.js";
import { decodeConfigText } from "../main/config/read-file.js";
import { writerGone } from "../main/daemon/process-runs.js";
import type { ClientSettings } from "../main/clients/settings.js";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { fileSystemError, KeygenError, KeygenFileError, type KeygenErrorCode } from "./errors.js";
import { withEnrollLock } from "./enroll-lock.js";
import { keyDirPaths } from "./key-dir.js";
import { encryptPassword, openPgpFingerprint, secretLines } from "./openpgp-key.js";
import { formatSection } from "./section.js";
import { tlsKeyId } from "./tls-key.js";

export const ENROLL_OPTIONS = {
  enroll: { type: "boolean" },
  "clients-conf": { type: "string", default: "/etc/mandos/clients.conf" },
  manifest: { type: "string" },
  "dry-run": { type: "boolean" },
} as const;

export const ENROLL_HELP = `
Enrollment options:
  --enroll              Add the machines given as key directories (DIR,
                        password in DIR/password) or in a manifest to
                        clients.conf, all at once or not at all.
  --clients-conf FILE   The file to add them to.  Default is
                        /etc/mandos/clients.conf.
  --manifest FILE       Lines of NAME<TAB>KEYDIR<TAB>PASSWORD; "-" reads
                        standard input.
  --dry-run             Show what would be added; change nothing.
`;

export interface Machine {
  readonly name: string;
  readonly keyDir: string;
  readonly password: Buffer;
}

export interface Enrollee {
  readonly name: string;
  readonly keyId: string;
  readonly fingerprint: string;
  readonly section: string;
}

/**
 * Why `name` cannot be a client's section in clients.conf, or null. The
 * name is both the header `[NAME]` and the value `host = NAME`, read by
 * configparser (config/ini.ts holds us to its rules) in our server and
 * Python's:
 *  - DEFAULT is the section every client inherits from: a machine so
 *    named would give its key_id to every client without one. Refused in
 *    any case, as a name that reads as DEFAULT to a person is a mistake.
 *  - `%` starts an interpolation (mandos-clients.conf(5) EXPANSION):
 *    `host = web%1` makes the whole file unreadable.
 *  - `[`, `]` end or confuse the header; control characters (a newline
 *    most of all) break the line; white space at either end is stripped
 *    from `host`, so the two would differ.
 */
export function badSectionName(name: string): string | null {
  if (name === "") return "the name is empty";
  if (name.toUpperCase() === "DEFAULT") return "DEFAULT is the section every client inherits from";
  if (name.includes("%")) return "% starts an interpolation in clients.conf";
  if (/[[\]]/.test(name)) return "[ and ] cannot be in a section name";
  for (const c of name) {
    const code = c.codePointAt(0)!;
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return "control characters cannot be in a section name";
  }
  if (name.trim() !== name) return "white space at either end of the name";
  return null;
}

/** The machines to enroll, from key directories and manifest text. */
export function machinesFrom(dirs: readonly string[], manifest: string | null, manifestName = "manifest"): Machine[] {
  const machines: Machine[] = [];
  for (const dir of dirs) {
    const path = join(dir, "password");
    let password: Buffer;
    try {
      password = readFileSync(path);
    } catch (error) {
      throw fileSystemError(error, path) ?? error;
    }
    const name = basename(dir.replace(/\/+$/, ""));
    const bad = badSectionName(name);
    if (bad !== null) throw new KeygenError("ENROLL_BAD_INPUT", `${dir}: cannot enroll machine ${JSON.stringify(name)}: ${bad}`);
    machines.push({ name, keyDir: dir, password });
  }
  if (manifest !== null) {
    manifest.split("\n").forEach((line, i) => {
      const text = line.replace(/\r$/, "");
      if (text.trim() === "" || text.startsWith("#")) return;
      const first = text.indexOf("\t");
      const second = first < 0 ? -1 : text.indexOf("\t", first + 1);
      if (second < 0) throw new KeygenError("ENROLL_BAD_INPUT", `${manifestName}:${i + 1}: expected NAME<TAB>KEYDIR<TAB>PASSWORD`);
      const name = text.slice(0, first);
      const bad = badSectionName(name);
      if (bad !== null) throw new KeygenError("ENROLL_BAD_INPUT", `${manifestName}:${i + 1}: cannot enroll machine ${JSON.stringify(name)}: ${bad}`);
      machines.push({ name, keyDir: text.slice(first + 1, second), password: Buffer.from(text.slice(second + 1), "utf8") });
    });
  }
  return machines;
}

/** One machine's section; the password is encrypted to its key, unsigned (no secret key here). */
export async function enrollee(m: Machine): Promise<Enrollee> {
  const paths = keyDirPaths(m.keyDir);
  // A file it cannot read is named with the reason in words, as
  // `mandos-keygen: FILE: REASON` (errors.ts).
  let publicKey: string;
  let tlsPublicKey: string;
  try {
    publicKey = readFileSync(paths.publicKey, "utf8");
    tlsPublicKey = readFileSync(paths.tlsPublicKey, "utf8");
  } catch (error) {
    throw fileSystemError(error) ?? error;
  }
  const keyId = tlsKeyId(tlsPublicKey, paths.tlsPublicKey);
  const fingerprint = await openPgpFingerprint(publicKey, paths.publicKey);
  const secret = secretLines(await encryptPassword(m.password, publicKey, null));
  return { name: m.name, keyId, fingerprint, section: formatSection({ name: m.name, keyId, fingerprint, secret, ssh: null }) };
}

// How many machines are encrypted at a time: enough to keep OpenPGP.js's
// asynchronous steps overlapping, few enough to bound memory.
const ENCRYPT_CONCURRENCY = 64;

// Below this many machines a worker thread costs more than it saves.
const MIN_MACHINES_PER_WORKER = 200;

/** All machines' sections, in order, spread over worker threads when there are many. */
async function enrollees(machines: readonly Machine[]): Promise<Enrollee[]> {
  const workers = Math.min(availableParallelism(), Math.floor(machines.length / MIN_MACHINES_PER_WORKER));
  if (workers < 2) return enrolleesHere(machines);
  const size = Math.ceil(machines.length / workers);
  const slices = Array.from({ length: workers }, (_, i) => machines.slice(i * size, (i + 1) * size));
  const results = await Promise.all(slices.map((slice) => inWorker(slice)));
  return results.flat();
}

type WorkerReply = { ok: true; added: Enrollee[] } | { ok: false; code?: KeygenErrorCode; message: string; file?: { path: string; reason: string } };

function inWorker(machines: readonly Machine[]): Promise<Enrollee[]> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./enroll-worker.js", import.meta.url), { workerData: { machines } });
    worker.once("message", (reply: WorkerReply) => {
      void worker.terminate();
      if (reply.ok) resolve(reply.added);
      else if (reply.code && reply.file) reject(new KeygenFileError(reply.code, reply.file.path, reply.file.reason));
      else reject(reply.code ? new KeygenError(reply.code, reply.message) : new Error(reply.message));
    });
    worker.once("error", reject);
  });
}

/** The sections of `machines`, computed in this thread. */
export async function enrolleesHere(machines: readonly Machine[]): Promise<Enrollee[]> {
  const out: Enrollee[] = new Array(machines.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < machines.length) {
      const i = next++;
      out[i] = await enrollee(machines[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(ENCRYPT_CONCURRENCY, machines.length) }, worker));
  return out;
}

/** Refuses a name, key ID or fingerprint already in `existing` or twice in `adding`. */
export function checkDuplicates(existing: ReadonlyArray<{ name: string; keyId: string; fingerprint: string }>, adding: readonly Enrollee[]): void {
  const kinds = [
    { code: "ENROLL_DUPLICATE_NAME", label: "name", of: (c: { name: string }) => c.name },
    { code: "ENROLL_DUPLICATE_KEY_ID", label: "key ID", of: (c: { keyId: string }) => c.keyId.toUpperCase() },
    { code: "ENROLL_DUPLICATE_FINGERPRINT", label: "fingerprint", of: (c: { fingerprint: string }) => c.fingerprint.toUpperCase() },
  ] as const;
  for (const kind of kinds) {
    const owner = new Map<string, string>();
    for (const c of existing) if (kind.of(c) !== "") owner.set(kind.of(c), `[${c.name}] in clients.conf`);
    const clashes: string[] = [];
    for (const c of adding) {
      const value = kind.of(c);
      if (value === "") continue;
      const taken = owner.get(value);
      if (taken !== undefined) clashes.push(`[${c.name}]: ${kind.label} ${value} already used by ${taken}`);
      else owner.set(value, `[${c.name}] being enrolled`);
    }
    if (clashes.length > 0) {
      const shown = clashes.slice(0, 10).join("\n  ");
      const more = clashes.length > 10 ? `\n  ... and ${clashes.length - 10} more` : "";
      throw new KeygenError(kind.code, `Refusing to enroll: duplicate ${kind.label}:\n  ${shown}${more}`);
    }
  }
}

export interface EnrollResult {
  readonly added: readonly Enrollee[];
  readonly path: string;
  readonly written: boolean;
}

/** Adds `machines` to the clients.conf at `path` (or, with dryRun, only checks). */
export async function enroll(path: string, machines: readonly Machine[], dryRun: boolean): Promise<EnrollResult> {
  // Names are checked before the slow part, so a typo fails at once.
  checkDuplicates(readClients(path).existing, machines.map((m) => ({ name: m.name, keyId: "", fingerprint: "", section: "" })));
  const added = await enrollees(machines);
  if (dryRun || added.length === 0) {
    checkDuplicates(readClients(path).existing, added);
    return { added, path, written: false };
  }
  // Renaming over a link would replace the link and leave its target stale.
  const target = linkTarget(path);
  // Read again under the lock: another enrollment may have written since.
  return withEnrollLock(target, () => {
    const { text, mode, owner, existing } = readClients(path);
    checkDuplicates(existing, added);
    const separator = text === "" ? "" : text.endsWith("\n\n") ? "" : text.endsWith("\n") ? "\n" : "\n\n";
    const next = text + separator + added.map((a) => a.section).join("\n");
    checkWouldRead(next, path, existing, added);
    removeLeftTemporaries(target);
    replaceFile(target, next, mode, owner);
    return { added, path, written: true };
  });
}

/** The file `path` names through symbolic links; a link to a file not yet there gives that file. */
function linkTarget(path: string): string {
  // Linux's own limit on links followed in one lookup (ELOOP past it).
  for (let hops = 0; hops < 40; hops++) {
    try {
      return realpathSync(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    let link: boolean;
    try {
      link = lstatSync(path).isSymbolicLink();
    } catch {
      return path; // no file, no link: created where named
    }
    if (!link) return path;
    path = resolve(dirname(path), readlinkSync(path));
  }
  throw Object.assign(new Error(`${path}: Too many levels of symbolic links`), { code: "ELOOP", syscall: "readlink", path });
}

/** clients.conf as it is now (empty when missing), its mode and owner, and its clients. */
function readClients(path: string): { text: string; mode: number; owner: { uid: number; gid: number } | null; existing: ClientSettings[] } {
  let text = "";
  let mode = 0o600;
  let owner: { uid: number; gid: number } | null = null;
  try {
    const st = statSync(path);
    const read = decodeConfigText(readFileSync(path));
    // Rewritten, its other bytes would become U+FFFD; the server refuses it anyway.
    if (typeof read !== "string") throw new KeygenError("ENROLL_CONFIG_UNREADABLE", `${path}:${read.badLine}: not valid UTF-8, so it is left alone`);
    text = read;
    mode = st.mode & 0o7777;
    owner = { uid: st.uid, gid: st.gid };
  } catch (error) {
    if (error instanceof KeygenError) throw error;
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new KeygenError("ENROLL_CONFIG_UNREADABLE", `Cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }
  try {
    return { text, mode, owner, existing: parseClientsConfig(text, path) };
  } catch (error) {
    throw new KeygenError("ENROLL_CONFIG_UNREADABLE", `${path} does not parse, so it is left alone: ${(error as Error).message}`);
  }
}

/**
 * Refuses (nothing written) a new clients.conf that the server would not
 * read as exactly the old clients, unchanged, and then the new ones with
 * their key IDs and fingerprints: parsed as the server parses it, so that
 * whatever the name checks above missed cannot break every later start.
 */
function checkWouldRead(next: string, path: string, existing: readonly ClientSettings[], added: readonly Enrollee[]): void {
  let read: ClientSettings[];
  try {
    read = parseClientsConfig(next, path);
  } catch (error) {
    throw new KeygenError("ENROLL_WOULD_BREAK", `Refusing to enroll: ${path} would not parse afterwards, so it is left alone: ${(error as Error).message}`);
  }
  const row = (c: { name: string; keyId: string; fingerprint: string }): string => `[${c.name}] key_id ${c.keyId.toUpperCase() || "(none)"} fingerprint ${c.fingerprint.toUpperCase() || "(none)"}`;
  const expected = [...existing, ...added].map(row);
  const got = read.map(row);
  const i = got.findIndex((r, j) => r !== expected[j]);
  if (i >= 0 || got.length !== expected.length) {
    const where = i >= 0 ? `${got[i]}, where ${expected[i] ?? "nothing"} was expected` : `${got.length} clients, ${expected.length} expected`;
    throw new KeygenError("ENROLL_WOULD_BREAK", `Refusing to enroll: ${path} would not read as its clients plus the new ones (${where}), so it is left alone`);
  }
}

/** The temporary files replaceFile writes beside `path`: `.NAME.enroll.PID.RANDOM`. */
const TEMPORARY = /^\.(.*)\.enroll\.(\d+)\.[0-9a-f]{8}$/;

/**
 * Removes the temporary files of enrollments killed before their rename
 * (each a whole copy of clients.conf): called under the lock, so none is
 * being written but by a process that is gone.
 */
function removeLeftTemporaries(path: string): void {
  const dir = dirname(path);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = TEMPORARY.exec(name);
    if (m === null || m[1] !== basename(path) || Number(m[2]) === process.pid) continue;
    const file = join(dir, name);
    if (writerGone(Number(m[2]), file)) rmSync(file, { force: true });
  }
}

/** Replaces `path` atomically, keeping its mode and owner. */
function replaceFile(path: string, text: string, mode: number, owner: { uid: number; gid: number } | null): void {
  const tmp = join(dirname(path), `.${basename(path)}.enroll.${process.pid}.${randomBytes(4).toString("hex")}`);
  const fd = openSync(tmp, "wx", mode);
  try {
    if (owner && process.getuid?.() === 0) fchownSync(fd, owner.uid, owner.gid);
    // The umask narrowed open's mode (and a chown may clear set-id bits).
    fchmodSync(fd, mode);
    const bytes = Buffer.from(text, "utf8");
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (error) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    unlinkSync(tmp);
    // write(2) and fsync(2) errors name no file: ENOSPC, say, of which file.
    throw fileSystemError(error, tmp) ?? error;
  }
  try {
    const dir = openSync(dirname(path), "r");
    fsyncSync(dir);
    closeSync(dir);
  } catch {
    // Some file systems refuse fsync on a directory; the rename is done.
  }
}

interface EnrollValues {
  readonly "clients-conf"?: string;
  readonly manifest?: string;
  readonly "dry-run"?: boolean;
}

/** The manifest's text ("-": standard input); read(2)'s errors name no file, so it is named here. */
function readManifest(path: string): string {
  try {
    return path === "-" ? readFileSync(0, "utf8") : readFileSync(path, "utf8");
  } catch (error) {
    throw fileSystemError(error, path === "-" ? "<stdin>" : path) ?? error;
  }
}

/** `mandos-keygen --enroll`: resolves with the exit code. */
export async function enrollCommand(o: EnrollValues, dirs: readonly string[], io: { stdout: (t: string) => void; stderr: (t: string) => void }): Promise<number> {
  const path = o["clients-conf"] ?? "/etc/mandos/clients.conf";
  const manifest = o.manifest === undefined ? null : readManifest(o.manifest);
  const machines = machinesFrom(dirs, manifest, o.manifest === "-" ? "<stdin>" : o.manifest);
  if (machines.length === 0) throw new KeygenError("KEYGEN_USAGE", "Nothing to enroll: give key directories or --manifest");
  const dryRun = o["dry-run"] ?? false;
  const result = await enroll(path, machines, dryRun);
  for (const a of result.added) io.stdout(`${dryRun ? "would add" : "added"} [${a.name}] key_id ${a.keyId} fingerprint ${a.fingerprint}\n`);
  io.stdout(
    dryRun
      ? `Dry run: ${result.added.length} clients would be added to ${path}; nothing was changed\n`
      : `${result.added.length} clients added to ${path}; send the server SIGHUP to take them\n`,
  );
  return 0;
}
