// The record layer's framing (RFC 8446 §5.1): bytes in, whole records out,
// and handshake messages reassembled across record boundaries (§5.1: "may
// be coalesced into a single record or fragmented across several").
//
// Invariant: RecordFramer holds at most one incomplete record (≤ 5 + 2^14 +
// 256 bytes) beyond what the caller has not yet asked for; HandshakeAssembler
// at most one incomplete message (bounded by MAX_HANDSHAKE_MESSAGE). Both
// copy each byte a bounded number of times, however it was split.

import { ContentType } from "./constants.js";
import { MAX_CIPHERTEXT, MAX_HANDSHAKE_MESSAGE, MAX_PLAINTEXT } from "./limits.js";
import { TlsError } from "./errors.js";

export interface RawRecord {
  readonly type: number;
  /** The whole record, header and body. */
  readonly bytes: Buffer;
  /** The 5-byte header (the AEAD's additional data for protected records). */
  readonly header: Buffer;
  readonly body: Buffer;
}

/** A record as framed: one view of its bytes; the header and body views are made when asked for. */
class FramedRecord implements RawRecord {
  readonly type: number;
  readonly bytes: Buffer;
  constructor(type: number, bytes: Buffer) {
    this.type = type;
    this.bytes = bytes;
  }
  get header(): Buffer {
    return this.bytes.subarray(0, 5);
  }
  get body(): Buffer {
    return this.bytes.subarray(5);
  }
}

/**
 * Bytes received and not yet consumed, as the chunks they came in. Taking
 * n bytes copies them at most once, so a stream that arrives a byte at a
 * time costs linear work (issue 16: concatenating the pending bytes on
 * every push made one-byte reads quadratic). Headers are read a byte at a
 * time where they lie, and a take that fits in the first chunk is a view
 * of it: a record costs one Buffer object, not one a header peek, a take
 * and the rest of its chunk (a server flight is ~7 records).
 *
 *   chunks: [c0 c1 c2 ...]   c0's first #offset bytes already taken
 *   length = sum of their lengths - #offset
 *   take(n) merges c0..ck into one chunk when c0 holds fewer than n
 */
class ByteQueue {
  #chunks: Buffer[] = [];
  #offset = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Byte i (i < length) of what is not consumed. */
  byte(i: number): number {
    let at = i + this.#offset;
    let k = 0;
    while (at >= this.#chunks[k]!.length) at -= this.#chunks[k++]!.length;
    return this.#chunks[k]![at]!;
  }

  /** The first n bytes (0 < n <= length), consumed. */
  take(n: number): Buffer {
    let first = this.#chunks[0]!;
    if (first.length - this.#offset < n) {
      let k = 1;
      for (let got = first.length - this.#offset; got < n; k++) got += this.#chunks[k]!.length;
      const parts = this.#chunks.slice(0, k);
      parts[0] = first.subarray(this.#offset);
      first = Buffer.concat(parts);
      this.#chunks.splice(0, k, first);
      this.#offset = 0;
    }
    const out = this.#offset === 0 && first.length === n ? first : first.subarray(this.#offset, this.#offset + n);
    this.#offset += n;
    if (this.#offset === first.length) {
      this.#chunks.shift();
      this.#offset = 0;
    }
    this.#length -= n;
    return out;
  }

  /** A copy of everything left. */
  copy(): Buffer {
    if (this.#offset === 0) return Buffer.concat(this.#chunks, this.#length);
    const parts = this.#chunks.slice();
    parts[0] = parts[0]!.subarray(this.#offset);
    return Buffer.concat(parts, this.#length);
  }
}

export class RecordFramer {
  readonly #pending = new ByteQueue();

  push(data: Uint8Array): void {
    // A copy: the caller may reuse its buffer once receive() returns.
    this.#pending.push(Buffer.from(data));
  }

  get buffered(): number {
    return this.#pending.length;
  }

  /** The next whole record, or null if more bytes are needed. */
  next(): RawRecord | null {
    const p = this.#pending;
    if (p.length < 5) return null;
    const type = p.byte(0);
    if (type !== ContentType.ChangeCipherSpec && type !== ContentType.Alert && type !== ContentType.Handshake && type !== ContentType.ApplicationData) {
      throw new TlsError("TLS_UNEXPECTED_MESSAGE", `unknown record content type ${type}`);
    }
    // RFC 8446 §5.1: legacy_record_version is 0x0303 (0x0301 allowed in a first ClientHello).
    const minor = p.byte(2);
    if (p.byte(1) !== 3 || (minor !== 1 && minor !== 3)) {
      throw new TlsError("TLS_DECODE", "bad record version");
    }
    const length = (p.byte(3) << 8) | p.byte(4);
    // RFC 8446 §5.1/§5.2: 2^14 for a plaintext record, 2^14 + 256 for a protected one.
    if (length > (type === ContentType.ApplicationData ? MAX_CIPHERTEXT : MAX_PLAINTEXT)) {
      throw new TlsError("TLS_RECORD_OVERFLOW", `record of ${length} bytes`);
    }
    if (p.length < 5 + length) return null;
    return new FramedRecord(type, p.take(5 + length));
  }
}

export interface HandshakeMessage {
  readonly type: number;
  /** The whole message, its 4-byte header included (what the transcript hashes). */
  readonly raw: Buffer;
  /** The body, after the header. */
  readonly body: Buffer;
}

export class HandshakeAssembler {
  readonly #pending = new ByteQueue();

  push(content: Uint8Array): void {
    if (content.length === 0) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "empty handshake record");
    this.#pending.push(bufferView(content));
  }

  /** Whether a message is partly received (a key change must not split one, RFC 8446 §5.1). */
  get partial(): boolean {
    return this.#pending.length > 0;
  }

  /** A copy of the partly received message's bytes (a flight task hands them to the next). */
  get pending(): Buffer {
    return this.#pending.copy();
  }

  next(): HandshakeMessage | null {
    const p = this.#pending;
    if (p.length < 4) return null;
    const length = (p.byte(1) << 16) | (p.byte(2) << 8) | p.byte(3);
    if (length > MAX_HANDSHAKE_MESSAGE) throw new TlsError("TLS_DECODE", `handshake message of ${length} bytes`);
    if (this.#pending.length < 4 + length) return null;
    const raw = Buffer.from(this.#pending.take(4 + length));
    return { type: raw[0]!, raw, body: raw.subarray(4) };
  }
}

/** `bytes` as a Buffer, without a copy: the same memory, whatever view it came as (a structured clone gives Uint8Arrays). */
export function bufferView(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A copy of `bytes` in memory of its own. For small Buffers kept as long as
 * a connection lives: Node cuts small Buffers (allocUnsafe, from(string),
 * concat) from shared 8 KiB chunks, and one slice kept alive keeps its
 * whole chunk (docs/BENCHMARK.md, "Serve threads' memory").
 */
export function ownedCopy(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(bytes.length);
  out.set(bytes);
  return out;
}

/**
 * `parts` (bytes, or text as UTF-8) one after the other in memory of their
 * own, exactly their size: Buffer.concat and Buffer.from cut a small result
 * from the shared chunks (see ownedCopy).
 */
export function ownedConcat(parts: ReadonlyArray<string | Uint8Array>): Buffer {
  let length = 0;
  for (const part of parts) length += byteSize(part);
  const out = Buffer.allocUnsafeSlow(length);
  let at = 0;
  for (const part of parts) {
    if (typeof part === "string") {
      at += out.write(part, at, "utf8");
    } else {
      out.set(part, at);
      at += part.length;
    }
  }
  return out;
}

/** Bytes of `part`, text counted as UTF-8. */
export function byteSize(part: string | Uint8Array): number {
  return typeof part === "string" ? Buffer.byteLength(part, "utf8") : part.length;
}

/**
 * A plaintext record (only ever ClientHello/ServerHello/CCS/alerts before
 * keys), or as many as it takes to keep each within MAX_PLAINTEXT (RFC 8446
 * §5.1): only a second ClientHello that echoes a HelloRetryRequest's large
 * cookie comes near it.
 */
export function plainRecord(type: number, content: Uint8Array, version = 0x0303): Buffer {
  const records = Math.max(1, Math.ceil(content.length / MAX_PLAINTEXT));
  const out = Buffer.allocUnsafe(5 * records + content.length);
  for (let i = 0, at = 0; i < records; i++) {
    const part = content.subarray(i * MAX_PLAINTEXT, (i + 1) * MAX_PLAINTEXT);
    out[at] = type;
    out.writeUInt16BE(version, at + 1);
    out.writeUInt16BE(part.length, at + 3);
    out.set(part, at + 5);
    at += 5 + part.length;
  }
  return out;
}

export const CHANGE_CIPHER_SPEC = plainRecord(ContentType.ChangeCipherSpec, Buffer.of(1));

export function handshakeHeader(type: number, body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(4 + body.length);
  out[0] = type;
  out.writeUIntBE(body.length, 1, 3);
  out.set(body, 4);
  return out;
}
