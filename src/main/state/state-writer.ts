// Writing the state file atomically (temporary file in the same directory,
// fsync, rename, fsync of the directory), on this thread or on libuv's
// thread pool, from pieces that are either bytes in memory or byte ranges
// of the state file written last (FileSpan): a server with 10,000 clients
// keeps only what changed since its last save in memory, and copies the
// rest from that file, which it keeps open (docs/STATE.md, "Where and when").

import { randomBytes } from "node:crypto";
import {
  close as closeCb,
  closeSync,
  fstatSync,
  fsync as fsyncCb,
  fsyncSync,
  open as openCb,
  openSync,
  read as readCb,
  readdirSync,
  readSync,
  renameSync,
  unlinkSync,
  writev as writevCb,
  writevSync,
} from "node:fs";
import { unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { writerGone } from "../daemon/process-runs.js";

/**
 * The state file as this server last wrote it, still open. Its bytes are
 * trusted only while it is as we left it (`intact`): same inode, size and
 * modification time (not its change time: the save that replaces it
 * unlinks it, which moves that, while an older save may still copy). Closed once a newer one replaced it and no save
 * still copies from it.
 */
export class BaseFile {
  readonly #fd: number;
  readonly #ino: number;
  readonly #size: number;
  readonly #mtimeNs: bigint;
  #users = 0;
  #retired = false;
  #closed = false;

  /**
   * Takes over `fd` (open for reading, and for writing as the save wrote
   * it), the file just renamed into place. Kept open read-only: a file
   * open for writing stops `mount -o remount,ro` of its file system
   * ("busy") for as long as the server runs.
   */
  constructor(fd: number) {
    const st = fstatSync(fd, { bigint: true });
    this.#fd = readOnlyCopy(fd);
    this.#ino = Number(st.ino);
    this.#size = Number(st.size);
    this.#mtimeNs = st.mtimeNs;
  }

  get fd(): number {
    return this.#fd;
  }

  /** Retired (replaced, or found changed): never read again for a new save. */
  get retired(): boolean {
    return this.#retired;
  }

  /** Whether a new save may copy from it: not retired, and still as we wrote it (else it is retired now). */
  intact(): boolean {
    if (this.#retired) return false;
    if (this.unchanged()) return true;
    this.retire();
    return false;
  }

  /** Whether it is still as we wrote it (a save that copied from it checks this before its rename). */
  unchanged(): boolean {
    if (this.#closed) return false;
    try {
      const st = fstatSync(this.#fd, { bigint: true });
      return Number(st.ino) === this.#ino && Number(st.size) === this.#size && st.mtimeNs === this.#mtimeNs;
    } catch {
      // Unreadable: as good as changed.
      return false;
    }
  }

  /** A save copies from it: kept open until `release`. */
  use(): void {
    this.#users++;
  }

  release(): void {
    this.#users--;
    this.#closeIfDone();
  }

  retire(): void {
    this.#retired = true;
    this.#closeIfDone();
  }

  #closeIfDone(): void {
    if (!this.#retired || this.#users > 0 || this.#closed) return;
    this.#closed = true;
    try {
      closeSync(this.#fd);
    } catch {
      // Nothing to do about it.
    }
  }

  /** `length` bytes at `offset`, or null if they cannot be read (closed, short, failed). */
  readSync(offset: number, length: number): Buffer | null {
    if (this.#closed) return null;
    const bytes = Buffer.allocUnsafeSlow(length);
    try {
      return readSync(this.#fd, bytes, 0, length, offset) === length ? bytes : null;
    } catch {
      return null;
    }
  }
}

/** `length` bytes at `offset` of `base`: a piece of a save taken from the file written last. */
export interface FileSpan {
  readonly base: BaseFile;
  readonly offset: number;
  readonly length: number;
}

export type StatePiece = Uint8Array | FileSpan;

/**
 * A save's pieces and what to do when it is over: `settle(fd)` with the new
 * file's descriptor (open read-write, now the caller's) once it replaced
 * the old one, `settle(null)` when it did not (failed, or overtaken). Called
 * exactly once.
 */
export interface StateList {
  readonly pieces: readonly StatePiece[];
  settle(fd: number | null): void;
}

export function isSpan(piece: StatePiece): piece is FileSpan {
  return !(piece instanceof Uint8Array);
}

/** The temporary file a save writes first, beside `path`. */
function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

/**
 * Removes the temporary files that saves of `path` by processes no longer
 * running left behind (a kill -9 or a power cut between the write and the
 * rename): each is a whole copy of the state, sealed secrets and all, and
 * nothing else would ever remove it. Returns the names removed. Called
 * before this process's first save, so that one with its own pid is
 * stale too (a container's server has the same pid at every start), as
 * is one whose pid a process started since has (a pid used again after a
 * reboot); one of another running process (a second server on the same
 * directory, a mistake of its own) is left alone.
 */
export function removeStaleTemporaries(path: string): string[] {
  const pattern = new RegExp(`^\\.${basename(path).replace(/[.]/g, "\\.")}\\.(\\d+)\\.[0-9a-f]{8}\\.tmp$`);
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return removed;
  }
  for (const name of names) {
    const pid = pattern.exec(name)?.[1];
    if (pid === undefined) continue;
    const file = join(dirname(path), name);
    if (Number(pid) === process.pid || !writerGone(Number(pid), file)) continue;
    try {
      unlinkSync(file);
      removed.push(name);
    } catch {
      // gone meanwhile, or not ours to remove: the next start tries again
    }
  }
  return removed;
}

/** `fd` opened again read-only (the same file, through /proc), and closed; `fd` itself where that cannot be. */
function readOnlyCopy(fd: number): number {
  let copy: number;
  try {
    copy = openSync(`/proc/self/fd/${fd}`, "r");
  } catch {
    return fd;
  }
  closeSync(fd);
  return copy;
}

/** Buffers a writev(2) takes at most (Linux's IOV_MAX); a 10,000-client save is up to ~30,000 pieces. */
const IOV_MAX = 1024;
/** How much of a span is copied at a time (a save's only buffer of its own). */
const COPY_CHUNK = 256 * 1024;

/** A save copied from a state file that someone else changed meanwhile: nothing was renamed; the next save makes every client anew. */
export class StateFileChanged extends Error {
  override readonly name = "StateFileChanged";
  constructor() {
    super("the state file changed under the server while a save copied from it; saving again");
  }
}

function basesOf(pieces: readonly StatePiece[]): BaseFile[] {
  const bases = new Set<BaseFile>();
  for (const p of pieces) if (isSpan(p)) bases.add(p.base);
  return [...bases];
}

/** Throws unless every file copied from is still as we wrote it (else the copy may hold anything). */
function checkBases(bases: readonly BaseFile[]): void {
  for (const base of bases) if (!base.unchanged()) throw new StateFileChanged();
}

/** What a writer is given: text, pieces in order, or a StateList (settled by the writer). */
export type StateData = string | readonly StatePiece[] | StateList;

/** `data`'s pieces, and its list when it is one. */
export function piecesOf(data: StateData): { readonly pieces: readonly StatePiece[]; readonly list: StateList | null } {
  if (typeof data === "string") return { pieces: [Buffer.from(data, "utf8")], list: null };
  if (Array.isArray(data)) return { pieces: data as readonly StatePiece[], list: null };
  const list = data as StateList;
  return { pieces: list.pieces, list };
}

/**
 * Writes `data` to `path` atomically: temporary file, fsync, rename, fsync
 * of the directory.
 */
export function writeAtomically(path: string, data: StateData): void {
  const { pieces, list } = piecesOf(data);
  const tmp = temporaryPath(path);
  let fd: number | null = null;
  let renamed = false;
  try {
    fd = openSync(tmp, "wx+", 0o600);
    writePiecesSync(fd, pieces);
    fsyncSync(fd);
    checkBases(basesOf(pieces));
    renameSync(tmp, path);
    renamed = true;
  } finally {
    if (!renamed) {
      if (fd !== null) closeSync(fd);
      try {
        unlinkSync(tmp);
      } catch {
        // Never made, or gone.
      }
      list?.settle(null);
    }
  }
  if (list) list.settle(fd);
  else closeSync(fd);
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

function writePiecesSync(fd: number, pieces: readonly StatePiece[]): void {
  let scratch: Buffer | null = null;
  for (const batch of batchesOf(pieces)) {
    if (batch.read !== null) {
      scratch ??= Buffer.allocUnsafeSlow(COPY_CHUNK);
      const { base, offset, length } = batch.read;
      for (let done = 0; done < length; ) {
        const n = readSync(base.fd, scratch, done, length - done, offset + done);
        if (n <= 0) throw new StateFileChanged();
        done += n;
      }
    }
    writeAllv(buffersOf(batch, scratch), (b) => writevSync(fd, b));
  }
}

/**
 * A run of a save's pieces that a writer handles with at most one read(2)
 * and then writev(2): bytes as they are, and spans as ranges (`at` from the
 * start of `read`) of one range read from one base file. A save that
 * copies the heads of 10,000 changed clients (their runtime new) is some
 * forty reads of 256 KiB, not 10,000 small ones.
 */
export interface Batch {
  read: { readonly base: BaseFile; readonly offset: number; length: number } | null;
  readonly parts: Array<Uint8Array | { readonly at: number; readonly length: number }>;
}

/** `pieces` cut into batches: each at most IOV_MAX parts, its read at most COPY_CHUNK bytes (exported for tests). */
export function* batchesOf(pieces: readonly StatePiece[]): Generator<Batch> {
  let batch: Batch = { read: null, parts: [] };
  for (const piece of pieces) {
    if (batch.parts.length >= IOV_MAX) {
      yield batch;
      batch = { read: null, parts: [] };
    }
    if (!isSpan(piece)) {
      batch.parts.push(piece);
      continue;
    }
    for (let done = 0; done < piece.length; ) {
      const offset = piece.offset + done;
      const read = batch.read;
      // Within reach of this batch's read: same file, further on, the whole range at most a chunk.
      if (read !== null && read.base === piece.base && offset >= read.offset + read.length && offset - read.offset < COPY_CHUNK) {
        const length = Math.min(piece.length - done, COPY_CHUNK - (offset - read.offset));
        batch.parts.push({ at: offset - read.offset, length });
        read.length = offset - read.offset + length;
        done += length;
        continue;
      }
      if (read !== null || batch.parts.length >= IOV_MAX) {
        yield batch;
        batch = { read: null, parts: [] };
      }
      const length = Math.min(piece.length - done, COPY_CHUNK);
      batch.read = { base: piece.base, offset, length };
      batch.parts.push({ at: 0, length });
      done += length;
    }
  }
  if (batch.parts.length > 0) yield batch;
}

/** A batch's parts as buffers, its spans cut from `scratch` (its read). */
function buffersOf(batch: Batch, scratch: Buffer | null): Uint8Array[] {
  // A loop, not map() with an arrow: the arrow, hot where this function is
  // not, lost its optimised code at each full collection and was compiled
  // again (docs/BENCHMARK.md, "Closures compiled again").
  const buffers: Uint8Array[] = [];
  for (const part of batch.parts) buffers.push(part instanceof Uint8Array ? part : scratch!.subarray(part.at, part.at + part.length));
  return buffers;
}

const openAsync = promisify(openCb);
const closeAsync = promisify(closeCb);
const fsyncAsync = promisify(fsyncCb);
const readAsync = promisify(readCb);
const writevAsync = promisify(writevCb);

/**
 * writeAtomically off the main thread: the writes, copies and fsyncs run on
 * libuv's thread pool, so that the main thread does not wait for 9 MB to
 * reach the disk (40-90 ms with 10,000 clients, each save, in the middle
 * of a reboot wave). The rename alone is done on the main thread, and only
 * if `wanted()` still says so then: every rename of the state file happens
 * in the order the main thread asks for it, so a save that a later one
 * overtook (saveNow at shutdown) can never put older state back;
 * `renamed` is called right after the rename, in the same turn, before
 * the directory's fsync lets anything else run. Resolves to whether the
 * file was replaced.
 */
export async function writeAtomicallyInBackground(
  path: string, data: readonly StatePiece[] | StateList, wanted: () => boolean, renamed: () => void = () => undefined,
): Promise<boolean> {
  const { pieces, list } = piecesOf(data);
  const tmp = temporaryPath(path);
  let fd: number | null = null;
  let replaced = false;
  try {
    fd = await openAsync(tmp, "wx+", 0o600);
    await writePiecesAsync(fd, pieces);
    await fsyncAsync(fd);
    if (wanted()) {
      checkBases(basesOf(pieces));
      renameSync(tmp, path);
      replaced = true;
      renamed();
    }
  } finally {
    if (!replaced) {
      if (fd !== null) await closeAsync(fd).catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      list?.settle(null);
    }
  }
  if (!replaced) return false;
  if (list) list.settle(fd);
  else await closeAsync(fd).catch(() => undefined);
  try {
    const dir = await openAsync(dirname(path), "r");
    try {
      await fsyncAsync(dir);
    } finally {
      await closeAsync(dir);
    }
  } catch {
    // As in writeAtomically.
  }
  return true;
}

async function writePiecesAsync(fd: number, pieces: readonly StatePiece[]): Promise<void> {
  let scratch: Buffer | null = null;
  for (const batch of batchesOf(pieces)) {
    if (batch.read !== null) {
      scratch ??= Buffer.allocUnsafeSlow(COPY_CHUNK);
      const { base, offset, length } = batch.read;
      for (let done = 0; done < length; ) {
        const { bytesRead } = await readAsync(base.fd, scratch, done, length - done, offset + done);
        if (bytesRead <= 0) throw new StateFileChanged();
        done += bytesRead;
      }
    }
    for (let left = buffersOf(batch, scratch); left.length > 0; ) left = rest(left, progress((await writevAsync(fd, left)).bytesWritten));
  }
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

/** A regular file's write(2) writes something or fails; a zero would loop for ever. */
function progress(written: number): number {
  if (written > 0) return written;
  throw Object.assign(new Error("write(2) wrote nothing"), { code: "EIO" });
}
