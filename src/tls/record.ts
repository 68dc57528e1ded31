// The record layer's framing (RFC 8446 §5.1): bytes in, whole records out,
// and handshake messages reassembled across record boundaries (§5.1: "may
// be coalesced into a single record or fragmented across several").
//
// Invariant: RecordFramer holds at most one incomplete record (≤ 5 + 2^14 +
// 256 bytes); HandshakeAssembler at most one incomplete message (bounded by
// MAX_HANDSHAKE_MESSAGE).

import { ContentType } from "./constants.js";
import { MAX_CIPHERTEXT, MAX_HANDSHAKE_MESSAGE, MAX_PLAINTEXT } from "./limits.js";
import { TlsError } from "./errors.js";

export interface RawRecord {
  readonly type: number;
  /** The 5-byte header (the AEAD's additional data for protected records). */
  readonly header: Buffer;
  readonly body: Buffer;
}

export class RecordFramer {
  #pending: Buffer = Buffer.alloc(0);

  push(data: Uint8Array): void {
    const chunk = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.#pending = this.#pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#pending, chunk]);
  }

  get buffered(): number {
    return this.#pending.length;
  }

  /** The next whole record, or null if more bytes are needed. */
  next(): RawRecord | null {
    const p = this.#pending;
    if (p.length < 5) return null;
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
    if (p.length < 5 + length) return null;
    const header = p.subarray(0, 5);
    const body = p.subarray(5, 5 + length);
    this.#pending = p.subarray(5 + length);
    return { type, header, body };
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
  #pending: Buffer = Buffer.alloc(0);

  push(content: Uint8Array): void {
    if (content.length === 0) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "empty handshake record");
    const c = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
    this.#pending = this.#pending.length === 0 ? c : Buffer.concat([this.#pending, c]);
  }

  /** Whether a message is partly received (a key change must not split one, RFC 8446 §5.1). */
  get partial(): boolean {
    return this.#pending.length > 0;
  }

  next(): HandshakeMessage | null {
    const p = this.#pending;
    if (p.length < 4) return null;
    const length = (p[1]! << 16) | (p[2]! << 8) | p[3]!;
    if (length > MAX_HANDSHAKE_MESSAGE) throw new TlsError("TLS_DECODE", `handshake message of ${length} bytes`);
    if (p.length < 4 + length) return null;
    const raw = Buffer.from(p.subarray(0, 4 + length));
    this.#pending = p.subarray(4 + length);
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
