// A writer of Python pickles, for the clients.pickle this server leaves
// for the Python server (pickle-export.ts): protocol 2, as the reference's
// `pickle.dump(..., protocol=2)` writes under Python 3, and only the values
// unpickle.ts reads back: None, bools, integers, str, bytes (as
// `_codecs.encode(str, "latin1")`, protocol 2's way), lists, tuples, dicts
// with str keys, datetime.datetime (naive UTC) and datetime.timedelta.
// Python's Lib/pickletools.py documents each opcode.

import { PyDatetime, PyTimedelta, PyTuple } from "./unpickle.js";

/** The values pickled here: those unpickle.ts's PyValue has that a writer needs (no bigint, no globals). */
export type PickleValue = null | boolean | number | string | Buffer | readonly PickleValue[] | PyTuple | ReadonlyMap<string, PickleValue> | PyDatetime | PyTimedelta;

const MS_PER_DAY = 86_400_000;

/**
 * The pickle's bytes, written into one buffer that doubles as it fills:
 * 10,000 clients' pickle is ~40 MB, and with a small Buffer a value the
 * stop's pickling was mostly garbage collection (the whole export 2.5 s;
 * 2.2 s in one buffer, the rest the secrets' S2K and sealing).
 */
class Out {
  #buf = Buffer.allocUnsafe(1 << 16);
  #at = 0;

  #room(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#at + n) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.#buf.copy(grown, 0, 0, this.#at);
    this.#buf.fill(0, 0, this.#at);
    this.#buf = grown;
  }

  byte(...values: number[]): void {
    this.#room(values.length);
    for (const v of values) this.#buf[this.#at++] = v;
  }

  ascii(s: string): void {
    this.#room(s.length);
    this.#at += this.#buf.write(s, this.#at, "latin1");
  }

  u32(n: number): void {
    this.#room(4);
    this.#at = this.#buf.writeUInt32LE(n, this.#at);
  }

  i32(n: number): void {
    this.#room(4);
    this.#at = this.#buf.writeInt32LE(n, this.#at);
  }

  utf8(s: string): void {
    const n = Buffer.byteLength(s, "utf8");
    this.u32(n);
    this.#room(n);
    this.#at += this.#buf.write(s, this.#at, "utf8");
  }

  /** `b` read as latin-1 text, written as UTF-8 (a byte over 0x7f is two): its length first. */
  latin1AsUtf8(b: Uint8Array): void {
    let n = b.length;
    for (const v of b) if (v > 0x7f) n++;
    this.u32(n);
    this.#room(n);
    const buf = this.#buf;
    let at = this.#at;
    for (const v of b) {
      if (v <= 0x7f) buf[at++] = v;
      else {
        buf[at++] = 0xc0 | (v >> 6);
        buf[at++] = 0x80 | (v & 0x3f);
      }
    }
    this.#at = at;
  }

  /** The bytes written, in a buffer of their own; the working one is zeroed (it held secrets, sealed). */
  take(): Buffer {
    const done = Buffer.from(this.#buf.subarray(0, this.#at));
    this.#buf.fill(0, 0, this.#at);
    return done;
  }
}

/** A Python tuple of these values. */
export function pyTuple(items: readonly PickleValue[]): PyTuple {
  return new PyTuple(items as PyTuple["items"]);
}

/** One value, pickled whole (PROTO 2 ... STOP). */
export function pickle(value: PickleValue): Buffer {
  const out = new Out();
  out.byte(0x80, 2);
  write(value, out);
  out.ascii(".");
  return out.take();
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
  else if (value instanceof Map) {
    // EMPTY_DICT, then MARK, the pairs, SETITEMS.
    out.ascii("}");
    if (value.size === 0) return;
    out.ascii("(");
    for (const [k, v] of value) {
      text(k, out);
      write(v, out);
    }
    out.ascii("u");
  } else {
    // EMPTY_LIST, then MARK, the items, APPENDS.
    const items = value as readonly PickleValue[];
    out.ascii("]");
    if (items.length === 0) return;
    out.ascii("(");
    for (const item of items) write(item, out);
    out.ascii("e");
  }
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

/** datetime.datetime(state): its 10-byte state, year first, microseconds last (naive: read as UTC). */
function datetime(exact: number, out: Out): void {
  const d = new Date(Math.round(exact));
  const year = d.getUTCFullYear();
  if (!(year >= 1 && year <= 9999)) throw new RangeError(`not a time a Python datetime holds: ${exact}`);
  const us = d.getUTCMilliseconds() * 1000;
  out.ascii("cdatetime\ndatetime\n");
  bytes(Uint8Array.of(year >> 8, year & 0xff, d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), us >> 16, (us >> 8) & 0xff, us & 0xff), out);
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
