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
  /** The 5-byte header (the AEAD's additional data for protected records). */
  readonly header: Buffer;
  readonly body: Buffer;
}

/**
 * Bytes received and not yet consumed, as the chunks they came in. Taking
 * n bytes copies them at most once, so a stream that arrives a byte at a
 * time costs linear work (issue 16: concatenating the pending bytes on
 * every push made one-byte reads quadratic).
 *
 *   chunks: [c0 c1 c2 ...]   length = sum of their lengths
 *   peek(n) merges c0..ck into one chunk when c0 is shorter than n
 */
class ByteQueue {
  #chunks: Buffer[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The first n bytes (n <= length), not consumed. */
  peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    let k = 0;
    for (let got = 0; got < n; k++) got += this.#chunks[k]!.length;
    const merged = Buffer.concat(this.#chunks.slice(0, k));
    this.#chunks.splice(0, k, merged);
    return merged.subarray(0, n);
  }

  /** The first n bytes (n <= length), consumed. */
  take(n: number): Buffer {
    const out = this.peek(n);
    const first = this.#chunks[0]!;
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#length -= n;
    return out;
  }

  /** A copy of everything left. */
  copy(): Buffer {
    return Buffer.concat(this.#chunks, this.#length);
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
    if (this.#pending.length < 5) return null;
    const p = this.#pending.peek(5);
    const type = p[0]!;
    if (type !== ContentType.ChangeCipherSpec && type !== ContentType.Alert && type !== ContentType.Handshake && type !== ContentType.ApplicationData) {
      throw new TlsError("TLS_UNEXPECTED_MESSAGE", `unknown record content type ${type}`);
    }
    // RFC 8446 §5.1: legacy_record_version is 0x0303 (0x0301 allowed in a first ClientHello).
    if (p[1] !== 3 || (p[2] !== 1 && p[2] !== 3)) {
      throw new TlsError("TLS_DECODE", "bad record version");
    }
    const length = p.readUInt16BE(3);
    // RFC 8446 §5.1/§5.2: 2^14 for a plaintext record, 2^14 + 256 for a protected one.
    if (length > (type === ContentType.ApplicationData ? MAX_CIPHERTEXT : MAX_PLAINTEXT)) {
      throw new TlsError("TLS_RECORD_OVERFLOW", `record of ${length} bytes`);
    }
    if (this.#pending.length < 5 + length) return null;
    const record = this.#pending.take(5 + length);
    return { type, header: record.subarray(0, 5), body: record.subarray(5) };
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
    this.#pending.push(Buffer.from(content.buffer, content.byteOffset, content.byteLength));
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
    if (this.#pending.length < 4) return null;
    const p = this.#pending.peek(4);
    const length = (p[1]! << 16) | (p[2]! << 8) | p[3]!;
    if (length > MAX_HANDSHAKE_MESSAGE) throw new TlsError("TLS_DECODE", `handshake message of ${length} bytes`);
    if (this.#pending.length < 4 + length) return null;
    const raw = Buffer.from(this.#pending.take(4 + length));
    return { type: raw[0]!, raw, body: raw.subarray(4) };
  }
}

/** A plaintext record (only ever ClientHello/ServerHello/CCS/alerts before keys). */
export function plainRecord(type: number, content: Uint8Array, version = 0x0303): Buffer {
  const out = Buffer.allocUnsafe(5 + content.length);
  out[0] = type;
  out.writeUInt16BE(version, 1);
  out.writeUInt16BE(content.length, 3);
  out.set(content, 5);
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
