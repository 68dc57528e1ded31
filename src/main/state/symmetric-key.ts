// The session key of a `gpg --symmetric` message, from a passphrase given
// as bytes: the first packet, a version 4 Symmetric-Key Encrypted Session
// Key packet (RFC 4880 §5.3), with its string-to-key specifier (§3.7.1).
// With no encrypted session key in the packet (as gpg writes it), the
// S2K output is the session key itself (§5.3). And the other way, for the
// clients.pickle this server leaves for the Python server (pickle-export.ts):
// such a message made here, as `gpg --symmetric` makes it, for gpg to open.

import { createCipheriv, createDecipheriv, createHash } from "node:crypto";
import { drawRandom } from "../../tls/random.js";
import { ownedCopy } from "../../tls/record.js";
import { packetHeader } from "../config/openpgp-message.js";

export interface SessionKey {
  /** RFC 4880 §9.2 symmetric algorithm ID. */
  readonly algorithm: number;
  readonly key: Uint8Array;
}

// RFC 4880 §9.2: key sizes in bytes.
const KEY_BYTES: Record<number, number> = { 2: 24, 3: 16, 4: 16, 7: 16, 8: 24, 9: 32, 10: 32 };
const AES_NAMES: Record<number, string> = { 7: "aes-128-cfb", 8: "aes-192-cfb", 9: "aes-256-cfb" };
// RFC 4880 §9.4.
const HASH_NAMES: Record<number, string> = { 1: "md5", 2: "sha1", 3: "ripemd160", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224" };

/** The first packet's tag and body, when its length is given (old or new format header, RFC 4880 §4.2). */
function firstPacket(data: Buffer): { tag: number; body: Buffer } | null {
  const h = packetHeader(data, 0);
  if (h === undefined || h.partial || h.bodyLength === undefined || h.bodyStart + h.bodyLength > data.length) return null;
  return { tag: h.tag, body: data.subarray(h.bodyStart, h.bodyStart + h.bodyLength) };
}

const S2K_BLOCK_BYTES = 1 << 20;

/** RFC 4880 §3.7.1: simple (0), salted (1) and iterated and salted (3) S2K. */
function stringToKey(passphrase: Buffer, type: number, hash: string, salt: Buffer, countByte: number, bytes: number): Buffer {
  const input = Buffer.concat([salt, passphrase]);
  const count = type === 3 ? Math.max((16 + (countByte & 15)) << ((countByte >> 4) + 6), input.length) : input.length;
  // Feed the repeated salt and passphrase in large blocks: a count of
  // 65 MB (gpg's default) is then a few dozen hash updates.
  // The block holds whole repetitions, so every prefix of it continues the
  // stream where the previous block left off.
  const block = Buffer.alloc(Math.min(count, input.length * Math.max(1, Math.floor(S2K_BLOCK_BYTES / input.length))));
  for (let i = 0; i < block.length; i += input.length) input.copy(block, i, 0, Math.min(input.length, block.length - i));
  const out: Buffer[] = [];
  for (let prefix = 0; Buffer.concat(out).length < bytes; prefix++) {
    const h = createHash(hash);
    h.update(Buffer.alloc(prefix));
    let left = count;
    while (left > 0) {
      const n = Math.min(left, block.length);
      h.update(block.subarray(0, n));
      left -= n;
    }
    out.push(h.digest());
  }
  return Buffer.concat(out).subarray(0, bytes);
}

/** The message's session key under `passphrase`; null for a message this does not handle. */
export function symmetricSessionKey(message: Buffer, passphrase: Buffer): SessionKey | null {
  const packet = firstPacket(message);
  if (!packet || packet.tag !== 3) return null;
  const p = packet.body;
  if (p[0] !== 4) return null;
  const algorithm = p[1]!;
  const s2kType = p[2]!;
  const hash = HASH_NAMES[p[3]!];
  const keyBytes = KEY_BYTES[algorithm];
  if (hash === undefined || keyBytes === undefined) return null;
  let offset = 4;
  let salt: Buffer = Buffer.alloc(0);
  let countByte = 0;
  if (s2kType === 1 || s2kType === 3) {
    salt = p.subarray(offset, offset + 8);
    offset += 8;
  } else if (s2kType !== 0) return null;
  if (s2kType === 3) countByte = p[offset++]!;
  const key = stringToKey(passphrase, s2kType, hash, salt, countByte, keyBytes);
  const encrypted = p.subarray(offset);
  if (encrypted.length === 0) return { algorithm, key };
  // An encrypted session key: CFB with a zero IV, algorithm byte first.
  const cipher = AES_NAMES[algorithm];
  if (cipher === undefined) return null;
  const d = createDecipheriv(cipher, key, Buffer.alloc(16));
  const plain = Buffer.concat([d.update(encrypted), d.final()]);
  return { algorithm: plain[0]!, key: plain.subarray(1) };
}

/** The octets of a new-format packet header (RFC 4880 §4.2.2) for a body of `n`: the tag, then a one-, two- or five-octet length. */
function headerBytes(n: number): number {
  return n < 192 ? 2 : n < 8384 ? 3 : 6;
}

/** Writes a new-format packet header at `at` of `out`; returns where the body starts. */
function writeHeader(out: Buffer, at: number, tag: number, n: number): number {
  out[at++] = 0xc0 | tag;
  if (n < 192) out[at++] = n;
  else if (n < 8384) {
    out[at++] = ((n - 192) >> 8) + 192;
    out[at++] = (n - 192) & 0xff;
  } else {
    out[at++] = 0xff;
    at = out.writeUInt32BE(n, at);
  }
  return at;
}

/** AES-256 (RFC 4880 §9.2), SHA-256 (§9.4), iterated and salted S2K (§3.7.1.3). */
const SEAL_ALGORITHM = 9;
const SEAL_HASH = 8;
const SEAL_S2K = 3;

/**
 * The S2K of a message to seal under one passphrase: its salt, its coded
 * count and the session key they make. The key derivation is all of a
 * seal's cost but the cipher, so a caller that seals for the same
 * passphrase later (the stop's clients.pickle, pickle-export.ts) derives
 * it ahead of time; each is used for one message.
 */
export interface SealKey {
  readonly salt: Buffer;
  readonly countByte: number;
  readonly key: Buffer;
}

/** A new salt, and the session key it makes with `passphrase` at `countByte` (§3.7.1.3). */
export function deriveSealKey(passphrase: Buffer, countByte: number): SealKey {
  // From the handshakes' pool: randomBytes cost ~15 µs a call, two a
  // client, 0.6 s of a stop of 20,000 clients.
  const salt = drawRandom(8);
  const derived = stringToKey(passphrase, SEAL_S2K, HASH_NAMES[SEAL_HASH]!, salt, countByte, KEY_BYTES[SEAL_ALGORITHM]!);
  // Its own memory, not a slice of Node's shared pool: it may be kept all the server's life.
  const key = ownedCopy(derived);
  derived.fill(0);
  return { salt, countByte, key };
}

/**
 * `data` as `gpg --symmetric` seals it under `passphrase`: a version 4
 * Symmetric-Key Encrypted Session Key packet whose S2K output is the
 * session key (§5.3), then a Symmetrically Encrypted Integrity Protected
 * Data packet (§5.13: CFB with a zero IV over a random block, its last two
 * octets again, a binary Literal Data packet and the Modification
 * Detection Code packet, a SHA-1 of all that). `countByte` is the S2K's
 * coded count (§3.7.1.3): what each opening costs.
 */
export function sealSymmetric(data: Buffer, passphrase: Buffer, countByte: number): Buffer {
  const key = deriveSealKey(passphrase, countByte);
  const sealed = sealWithKey(data, key);
  key.key.fill(0);
  return sealed;
}

/** The CFB's IV, all zero (§13.9: the random prefix does its work); createCipheriv copies it. */
const ZERO_IV = Buffer.alloc(16);

/**
 * `data` sealed as sealSymmetric seals it, with a key derived ahead
 * (deriveSealKey). Each part written in place into two buffers, the
 * plaintext and the message, not made of a dozen small ones joined
 * (the stop's pickle seals 20,000 secrets: ~90 MB of short-lived buffers,
 * half of what it allocated; docs/BENCHMARK.md, "The stop's pickle").
 */
export function sealWithKey(data: Buffer, { salt, countByte, key }: SealKey): Buffer {
  // The plaintext: the random block and its last two octets again, the
  // literal data packet (format "b", binary; no file name, no date), and
  // the MDC packet's header (§5.14), which the SHA-1 covers.
  const literalBody = 6 + data.length;
  const plain = Buffer.allocUnsafe(18 + headerBytes(literalBody) + literalBody + 2);
  const prefix = drawRandom(16);
  prefix.copy(plain, 0);
  plain[16] = prefix[14]!;
  plain[17] = prefix[15]!;
  prefix.fill(0);
  let at = writeHeader(plain, 18, 11, literalBody);
  plain[at++] = 0x62;
  plain.fill(0, at, at + 5);
  at += 5;
  at += data.copy(plain, at);
  plain[at] = 0xd3;
  plain[at + 1] = 0x14;
  const mdc = createHash("sha1").update(plain).digest();
  const c = createCipheriv(AES_NAMES[SEAL_ALGORITHM]!, key, ZERO_IV);
  const encrypted = [c.update(plain), c.update(mdc), c.final()];
  plain.fill(0);
  // The session key packet (§5.3: version 4, the algorithms, the S2K's
  // salt and count), then the integrity protected data packet (§5.13:
  // version 1, the ciphertext).
  const skeskBody = 4 + salt.length + 1;
  const seipdBody = 1 + plain.length + mdc.length;
  const out = Buffer.allocUnsafe(headerBytes(skeskBody) + skeskBody + headerBytes(seipdBody) + seipdBody);
  at = writeHeader(out, 0, 3, skeskBody);
  out[at++] = 4;
  out[at++] = SEAL_ALGORITHM;
  out[at++] = SEAL_S2K;
  out[at++] = SEAL_HASH;
  at += salt.copy(out, at);
  out[at++] = countByte;
  at = writeHeader(out, at, 18, seipdBody);
  out[at++] = 1;
  for (const part of encrypted) at += part.copy(out, at);
  if (at !== out.length) throw new Error("a sealed message's length came out wrong");
  return out;
}
