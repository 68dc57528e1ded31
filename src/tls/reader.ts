// Bounds-checked reading of TLS wire structures (RFC 8446 §3): every
// overrun is a decode_error, never an exception of another kind.

import { TlsError } from "./errors.js";

export class Reader {
  readonly #buf: Uint8Array;
  #pos: number;
  readonly #end: number;

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.#buf = buf;
    this.#pos = start;
    this.#end = end;
  }

  get remaining(): number {
    return this.#end - this.#pos;
  }

  #need(n: number, what: string): void {
    if (this.#pos + n > this.#end) throw new TlsError("TLS_DECODE", `truncated ${what}`);
  }

  u8(what = "u8"): number {
    this.#need(1, what);
    return this.#buf[this.#pos++]!;
  }

  u16(what = "u16"): number {
    this.#need(2, what);
    const v = (this.#buf[this.#pos]! << 8) | this.#buf[this.#pos + 1]!;
    this.#pos += 2;
    return v;
  }

  u24(what = "u24"): number {
    this.#need(3, what);
    const v = (this.#buf[this.#pos]! << 16) | (this.#buf[this.#pos + 1]! << 8) | this.#buf[this.#pos + 2]!;
    this.#pos += 3;
    return v;
  }

  bytes(n: number, what = "bytes"): Buffer {
    this.#need(n, what);
    const out = Buffer.from(this.#buf.buffer, this.#buf.byteOffset + this.#pos, n);
    this.#pos += n;
    return out;
  }

  /** A vector with an 8-, 16- or 24-bit length prefix. */
  vector(lengthBytes: 1 | 2 | 3, what: string, min = 0): Buffer {
    const n = lengthBytes === 1 ? this.u8(what) : lengthBytes === 2 ? this.u16(what) : this.u24(what);
    if (n < min) throw new TlsError("TLS_DECODE", `${what} too short`);
    return this.bytes(n, what);
  }

  /** A sub-reader over a length-prefixed vector. */
  sub(lengthBytes: 1 | 2 | 3, what: string, min = 0): Reader {
    const v = this.vector(lengthBytes, what, min);
    return new Reader(v);
  }

  end(what: string): void {
    if (this.#pos !== this.#end) throw new TlsError("TLS_DECODE", `trailing bytes in ${what}`);
  }
}

/** Builds wire structures; length prefixes are filled in when a vector closes. */
export class Writer {
  #buf: Buffer;
  #len = 0;
  readonly #open: Array<{ at: number; bytes: 1 | 2 | 3 }> = [];

  constructor(size = 512) {
    this.#buf = Buffer.allocUnsafe(size);
  }

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  /** How many bytes are written so far: where the next one goes. */
  get length(): number {
    return this.#len;
  }

  u8(v: number): this {
    this.#room(1);
    this.#buf[this.#len++] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    this.#room(2);
    this.#buf.writeUInt16BE(v & 0xffff, this.#len);
    this.#len += 2;
    return this;
  }

  u24(v: number): this {
    this.#room(3);
    this.#buf.writeUIntBE(v & 0xffffff, this.#len, 3);
    this.#len += 3;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.#room(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    return this;
  }

  /** Starts a vector whose length prefix has `bytes` bytes. */
  open(bytes: 1 | 2 | 3): this {
    this.#open.push({ at: this.#len, bytes });
    this.#room(bytes);
    this.#len += bytes;
    return this;
  }

  close(): this {
    const v = this.#open.pop();
    if (!v) throw new Error("Writer.close without open");
    const n = this.#len - v.at - v.bytes;
    this.#buf.writeUIntBE(n, v.at, v.bytes);
    return this;
  }

  /** A copy of what was written. */
  finish(): Buffer {
    if (this.#open.length > 0) throw new Error("Writer.finish with open vectors");
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}
