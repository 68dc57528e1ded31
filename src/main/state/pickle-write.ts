// A writer of Python pickles, for the clients.pickle this server leaves
// for the Python server (pickle-export.ts): protocol 2, as the reference's
// `pickle.dump(..., protocol=2)` writes under Python 3, and only the values
// unpickle.ts reads back: None, bools, integers, str, bytes (as
// `_codecs.encode(str, "latin1")`, protocol 2's way), lists, tuples, dicts
// with str keys, datetime.datetime (naive UTC) and datetime.timedelta.
// Python's Lib/pickletools.py documents each opcode.

import { createHash } from "node:crypto";
import { PyDatetime, PyTimedelta, PyTuple } from "./unpickle.js";

const MS_PER_DAY = 86_400_000;

/**
 * A dict whose entries are made as they are written (`entries()` is called
 * once, and must yield `size` of them): the stop's pickle of 20,000 clients
 * makes each client's attributes, writes them and drops them, so that none
 * outlives the young generation (kept to the end, they were ~2 s of
 * garbage collection; docs/BENCHMARK.md, "The stop's pickle").
 */
export class StreamedDict {
  constructor(
    readonly size: number,
    readonly entries: () => Iterable<readonly [string, PickleValue]>,
  ) {}
}

/**
 * A dict given as its keys and values in turn (`[k0, v0, k1, v1, ...]`,
 * each key a string): one array, where a Map is its table and an array
 * for each entry, and its iteration an array for each again (the stop's
 * pickle makes 40,000 of them; docs/BENCHMARK.md, "The stop's pickle").
 */
export class FlatDict {
  constructor(readonly pairs: readonly PickleValue[]) {}
}

/** The values pickled here: those unpickle.ts's PyValue has that a writer needs (no bigint, no globals). */
export type PickleValue = null | boolean | number | string | Buffer | readonly PickleValue[] | PyTuple | ReadonlyMap<string, PickleValue> | StreamedDict | FlatDict | PyDatetime | PyTimedelta;

/**
 * A pickle's bytes, as the chunks they were written into (in order; a
 * writev(2) takes them as they are), and their SHA-256.
 */
export interface PickleBytes {
  readonly chunks: readonly Buffer[];
  readonly length: number;
  /** SHA-256 of the bytes, hex. */
  readonly sha256: string;
  /** Zeroes the chunks (they hold secrets, sealed), once written. */
  wipe(): void;
}

/** The longest string utf8() writes byte by byte when it is ASCII. */
const SHORT_STRING = 64;

/** How much a chunk holds (one value larger than this has a chunk of its own size). */
export const PICKLE_CHUNK_BYTES = 1 << 20;

/**
 * The pickle's bytes, written into chunks of `chunkBytes`, each left as it
 * fills and hashed then: nothing is copied again. (Before 2026-12, one
 * buffer that doubled as it filled, copied once more at the end: 81 MB for
 * 20,000 clients, 128 MB of buffer, ~1.5 s of copies and the collections
 * that 200 MB of external memory set off.)
 */
class Out {
  readonly #chunkBytes: number;
  readonly #chunks: Buffer[] = [];
  readonly #hash = createHash("sha256");
  #buf: Buffer;
  #at = 0;
  #length = 0;

  constructor(chunkBytes: number) {
    this.#chunkBytes = chunkBytes;
    this.#buf = Buffer.allocUnsafeSlow(chunkBytes);
  }

  /** Room for `n` more bytes in the chunk written: a new chunk when this one has too little. */
  #room(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    this.#leave();
    this.#buf = Buffer.allocUnsafeSlow(Math.max(this.#chunkBytes, n));
  }

  /** The chunk written so far, done with. */
  #leave(): void {
    if (this.#at === 0) return;
    const done = this.#buf.subarray(0, this.#at);
    this.#chunks.push(done);
    this.#hash.update(done);
    this.#length += this.#at;
    this.#at = 0;
  }

  byte(...values: number[]): void {
    this.#room(values.length);
    for (const v of values) this.#buf[this.#at++] = v;
  }

  /** Opcodes and their arguments (a few characters each): byte by byte, as utf8() writes a short string. */
  ascii(s: string): void {
    const n = s.length;
    this.#room(n);
    const buf = this.#buf;
    let at = this.#at;
    for (let i = 0; i < n; i++) buf[at++] = s.charCodeAt(i);
    this.#at = at;
  }

  u32(n: number): void {
    this.#room(4);
    this.#at = this.#buf.writeUInt32LE(n, this.#at);
  }

  i32(n: number): void {
    this.#room(4);
    this.#at = this.#buf.writeInt32LE(n, this.#at);
  }

  /**
   * A string's UTF-8, its length first. A short ASCII one (every key, most
   * values: ~90 strings a client in the stop's pickle) byte by byte:
   * Buffer#write's checks and call cost ~5 times what its bytes do.
   */
  utf8(s: string): void {
    const length = s.length;
    if (length <= SHORT_STRING) {
      this.#room(4 + length);
      const buf = this.#buf;
      const start = this.#at;
      let at = start + 4;
      let i = 0;
      for (; i < length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[at++] = c;
      }
      if (i === length) {
        buf.writeUInt32LE(length, start);
        this.#at = at;
        return;
      }
      // Not ASCII: what was written is written over, as any string is.
    }
    const n = Buffer.byteLength(s, "utf8");
    this.u32(n);
    this.#room(n);
    this.#at += this.#buf.write(s, this.#at, n, "utf8");
  }

  /**
   * `b` read as latin-1 text, written as UTF-8 (a byte over 0x7f is two):
   * its length first, filled in once the bytes are written (room for the
   * most they can be). One indexed pass: the two `for...of` passes over
   * the bytes before 2026-12 took ~0.55 s for the 20,000 clients' sealed
   * secrets (~1,300 random bytes each), this ~0.17 s, about what Node's
   * own latin-1 to UTF-8 through a string takes, without the string.
   */
  latin1AsUtf8(b: Uint8Array): void {
    const n = b.length;
    this.#room(4 + 2 * n);
    const buf = this.#buf;
    const start = this.#at;
    let at = start + 4;
    for (let i = 0; i < n; i++) {
      const v = b[i]!;
      if (v <= 0x7f) buf[at++] = v;
      else {
        buf[at++] = 0xc0 | (v >> 6);
        buf[at++] = 0x80 | (v & 0x3f);
      }
    }
    buf.writeUInt32LE(at - start - 4, start);
    this.#at = at;
  }

  /** The bytes written. */
  finish(): PickleBytes {
    this.#leave();
    const chunks = this.#chunks;
    return {
      chunks,
      length: this.#length,
      sha256: this.#hash.digest("hex"),
      wipe: () => {
        for (const chunk of chunks) chunk.fill(0);
      },
    };
  }
}

/** A Python tuple of these values. */
export function pyTuple(items: readonly PickleValue[]): PyTuple {
  return new PyTuple(items as PyTuple["items"]);
}

/** One value, pickled whole (PROTO 2 ... STOP), in chunks of `chunkBytes` (tests choose small ones). */
export function pickleChunks(value: PickleValue, chunkBytes = PICKLE_CHUNK_BYTES): PickleBytes {
  const out = new Out(chunkBytes);
  out.byte(0x80, 2);
  write(value, out);
  out.ascii(".");
  return out.finish();
}

function write(value: PickleValue, out: Out): void {
  if (value === null) out.ascii("N");
  else if (value === true) out.byte(0x88);
  else if (value === false) out.byte(0x89);
  else if (typeof value === "number") integer(value, out);
  else if (typeof value === "string") text(value, out);
  else if (Buffer.isBuffer(value)) bytes(value, out);
  else if (value instanceof PyTuple) tuple(value.items as PickleValue[], out);
  else if (value instanceof PyDatetime) datetime(value.ms, out);
  else if (value instanceof PyTimedelta) timedelta(value.ms, out);
  else if (value instanceof Map) dict(value.size, value, out);
  else if (value instanceof StreamedDict) dict(value.size, value.entries(), out);
  else if (value instanceof FlatDict) flatDict(value.pairs, out);
  else {
    // EMPTY_LIST, then MARK, the items, APPENDS.
    const items = value as readonly PickleValue[];
    out.ascii("]");
    if (items.length === 0) return;
    out.ascii("(");
    for (const item of items) write(item, out);
    out.ascii("e");
  }
}

/** EMPTY_DICT, then MARK, the pairs, SETITEMS (an empty one: EMPTY_DICT alone). */
function dict(size: number, entries: Iterable<readonly [string, PickleValue]>, out: Out): void {
  out.ascii("}");
  if (size === 0) return;
  out.ascii("(");
  let n = 0;
  for (const [k, v] of entries) {
    text(k, out);
    write(v, out);
    n++;
  }
  if (n !== size) throw new RangeError(`a dict said to hold ${size} entries held ${n}`);
  out.ascii("u");
}

/** A FlatDict, as dict() writes a Map. */
function flatDict(pairs: readonly PickleValue[], out: Out): void {
  if (pairs.length % 2 !== 0) throw new RangeError("a FlatDict's keys and values do not pair up");
  out.ascii("}");
  if (pairs.length === 0) return;
  out.ascii("(");
  for (let i = 0; i < pairs.length; i += 2) {
    const k = pairs[i];
    if (typeof k !== "string") throw new TypeError("a dict's key here is a str");
    text(k, out);
    write(pairs[i + 1] as PickleValue, out);
  }
  out.ascii("u");
}

/** BININT1, BININT2, BININT, or LONG1 past 32 bits (little-endian two's complement). */
function integer(n: number, out: Out): void {
  if (!Number.isSafeInteger(n)) throw new RangeError(`not an integer a pickle here holds: ${n}`);
  if (n >= 0 && n < 0x100) out.byte(0x4b, n);
  else if (n >= 0 && n < 0x10000) out.byte(0x4d, n & 0xff, n >> 8);
  else if (n >= -0x80000000 && n < 0x80000000) {
    out.byte(0x4a);
    out.i32(n);
  } else {
    let v = BigInt(n);
    const digits: number[] = [];
    do {
      digits.push(Number(v & 0xffn));
      v >>= 8n;
    } while (!(v === 0n && (digits.at(-1)! & 0x80) === 0) && !(v === -1n && (digits.at(-1)! & 0x80) !== 0));
    out.byte(0x8a, digits.length, ...digits);
  }
}

/** BINUNICODE: a length, then UTF-8. */
function text(s: string, out: Out): void {
  out.byte(0x58);
  out.utf8(s);
}

/** bytes as Python 3 pickles them in protocol 2: _codecs.encode(the latin-1 str, "latin1"). */
function bytes(b: Uint8Array, out: Out): void {
  out.ascii("c_codecs\nencode\n");
  out.byte(0x58);
  out.latin1AsUtf8(b);
  text("latin1", out);
  out.byte(0x86);
  out.ascii("R");
}

/** EMPTY_TUPLE, TUPLE1-3, or MARK ... TUPLE. */
function tuple(items: readonly PickleValue[], out: Out): void {
  if (items.length <= 3) {
    for (const item of items) write(item, out);
    out.byte([0x29, 0x85, 0x86, 0x87][items.length]!);
    return;
  }
  out.ascii("(");
  for (const item of items) write(item, out);
  out.ascii("t");
}

/**
 * A datetime's state as it is written (one at a time: no array a
 * datetime, 10 of them a client in the stop's pickle). A Buffer, as the
 * sealed secrets are, so that latin1AsUtf8 sees one kind of array.
 */
const DATETIME_STATE = Buffer.alloc(10);

/** datetime.datetime(state): its 10-byte state, year first, microseconds last (naive: read as UTC). */
function datetime(exact: number, out: Out): void {
  const d = new Date(Math.round(exact));
  const year = d.getUTCFullYear();
  if (!(year >= 1 && year <= 9999)) throw new RangeError(`not a time a Python datetime holds: ${exact}`);
  const us = d.getUTCMilliseconds() * 1000;
  out.ascii("cdatetime\ndatetime\n");
  const state = DATETIME_STATE;
  state[0] = year >> 8;
  state[1] = year & 0xff;
  state[2] = d.getUTCMonth() + 1;
  state[3] = d.getUTCDate();
  state[4] = d.getUTCHours();
  state[5] = d.getUTCMinutes();
  state[6] = d.getUTCSeconds();
  state[7] = us >> 16;
  state[8] = (us >> 8) & 0xff;
  state[9] = us & 0xff;
  bytes(state, out);
  out.byte(0x85);
  out.ascii("R");
}

/** datetime.timedelta(days, seconds, microseconds), normalised as Python keeps it. */
function timedelta(exact: number, out: Out): void {
  const ms = Math.round(exact);
  const days = Math.floor(ms / MS_PER_DAY);
  const rest = ms - days * MS_PER_DAY;
  out.ascii("cdatetime\ntimedelta\n");
  tuple([days, Math.floor(rest / 1000), (rest % 1000) * 1000], out);
  out.ascii("R");
}
