// TLS 1.2 cryptography for the AEAD suites of suites.ts, on node:crypto:
// the PRF (RFC 5246 §5), the master secret, plain (§8.1) or extended
// (RFC 7627 §4), the key block (§6.3), Finished verify_data (§7.4.9) and
// record protection for AES-GCM (RFC 5288 §3: 4-byte salt, 8-byte
// explicit nonce) and ChaCha20-Poly1305 (RFC 7905 §2: 12-byte IV XOR the
// sequence number, nothing explicit). Pure functions, plain data in and
// out, so they run on a worker as well as inline.

import { createCipheriv, createDecipheriv, createHmac } from "node:crypto";
import { TlsError } from "../errors.js";
import { MAX_PLAINTEXT } from "../limits.js";
import type { Tls12Suite } from "./suites.js";

/** P_hash(secret, label || seed) truncated to `length` (RFC 5246 §5). */
export function prf12(hash: "sha256" | "sha384", secret: Uint8Array, label: string, seed: Uint8Array, length: number): Buffer {
  const labelSeed = Buffer.concat([Buffer.from(label, "latin1"), seed]);
  const out = Buffer.allocUnsafe(length);
  let a: Buffer = labelSeed;
  for (let filled = 0; filled < length; ) {
    a = createHmac(hash, secret).update(a).digest();
    const block = createHmac(hash, secret).update(a).update(labelSeed).digest();
    filled += block.copy(out, filled, 0, Math.min(block.length, length - filled));
  }
  return out;
}

/** The 48-byte master secret: extended (RFC 7627 §4, over the session hash) or plain (RFC 5246 §8.1). */
export function masterSecret12(
  suite: Tls12Suite,
  preMaster: Uint8Array,
  how: { readonly sessionHash: Uint8Array } | { readonly clientRandom: Uint8Array; readonly serverRandom: Uint8Array },
): Buffer {
  if ("sessionHash" in how) return prf12(suite.hash, preMaster, "extended master secret", how.sessionHash, 48);
  return prf12(suite.hash, preMaster, "master secret", Buffer.concat([how.clientRandom, how.serverRandom]), 48);
}

/** One direction's record keys. Plain data: crosses to workers. */
export interface Tls12Keys {
  readonly key: Uint8Array;
  readonly iv: Uint8Array;
}

/** RFC 5246 §6.3 for AEAD suites (no MAC keys): client key, server key, client IV, server IV. */
export function keyBlock12(suite: Tls12Suite, master: Uint8Array, clientRandom: Uint8Array, serverRandom: Uint8Array): { client: Tls12Keys; server: Tls12Keys } {
  const k = suite.keyLength;
  const v = suite.fixedIvLength;
  const block = prf12(suite.hash, master, "key expansion", Buffer.concat([serverRandom, clientRandom]), 2 * k + 2 * v);
  return {
    client: { key: block.subarray(0, k), iv: block.subarray(2 * k, 2 * k + v) },
    server: { key: block.subarray(k, 2 * k), iv: block.subarray(2 * k + v, 2 * k + 2 * v) },
  };
}

/** Finished verify_data, 12 bytes (RFC 5246 §7.4.9). */
export function finished12(suite: Tls12Suite, master: Uint8Array, role: "client" | "server", transcriptHash: Uint8Array): Buffer {
  return prf12(suite.hash, master, `${role} finished`, transcriptHash, 12);
}

const TAG = 16;

function seqBytes(seq: bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(seq);
  return b;
}

function aad(seq: bigint, type: number, length: number): Buffer {
  const a = Buffer.allocUnsafe(13);
  a.writeBigUInt64BE(seq, 0);
  a[8] = type;
  a[9] = 3;
  a[10] = 3;
  a.writeUInt16BE(length, 11);
  return a;
}

/** ChaCha20-Poly1305's nonce: the IV XOR the sequence number, left-padded (RFC 7905 §2). */
function chachaNonce(iv: Uint8Array, seq: bigint): Buffer {
  const n = Buffer.from(iv);
  const s = seqBytes(seq);
  for (let i = 0; i < 8; i++) n[4 + i]! ^= s[i]!;
  return n;
}

/** One protected TLS 1.2 record, header included. For GCM the explicit nonce is the sequence number (RFC 5288 §3 allows it; GnuTLS does the same). */
export function seal12(suite: Tls12Suite, keys: Tls12Keys, seq: bigint, type: number, content: Uint8Array): Buffer {
  const gcm = suite.cipher === "aes-256-gcm";
  const explicit = gcm ? 8 : 0;
  const length = explicit + content.length + TAG;
  const record = Buffer.allocUnsafe(5 + length);
  record[0] = type;
  record[1] = 3;
  record[2] = 3;
  record.writeUInt16BE(length, 3);
  let nonce: Buffer;
  if (gcm) {
    const s = seqBytes(seq);
    s.copy(record, 5);
    nonce = Buffer.concat([keys.iv, s]);
  } else {
    nonce = chachaNonce(keys.iv, seq);
  }
  const cipher = createCipheriv(suite.cipher as "aes-256-gcm", keys.key, nonce, { authTagLength: TAG });
  cipher.setAAD(aad(seq, type, content.length), { plaintextLength: content.length });
  let o = 5 + explicit;
  o += cipher.update(content).copy(record, o);
  o += cipher.final().copy(record, o);
  cipher.getAuthTag().copy(record, o);
  return record;
}

/** Opens one protected TLS 1.2 record of content type `type`; any failure is bad_record_mac. */
export function open12(suite: Tls12Suite, keys: Tls12Keys, seq: bigint, type: number, body: Uint8Array): Buffer {
  const gcm = suite.cipher === "aes-256-gcm";
  const explicit = gcm ? 8 : 0;
  if (body.length < explicit + TAG) throw new TlsError("TLS_BAD_RECORD_MAC", "record too short to be protected");
  const length = body.length - explicit - TAG;
  // RFC 5246 §6.2.3: TLSCiphertext.length at most 2^14 + 2048; the plaintext at most 2^14.
  if (length > MAX_PLAINTEXT) throw new TlsError("TLS_RECORD_OVERFLOW", "protected record plaintext too long");
  const nonce = gcm ? Buffer.concat([keys.iv, body.subarray(0, 8)]) : chachaNonce(keys.iv, seq);
  try {
    const decipher = createDecipheriv(suite.cipher as "aes-256-gcm", keys.key, nonce, { authTagLength: TAG });
    decipher.setAAD(aad(seq, type, length), { plaintextLength: length });
    decipher.setAuthTag(body.subarray(body.length - TAG));
    const head = decipher.update(body.subarray(explicit, body.length - TAG));
    const tail = decipher.final();
    return tail.length ? Buffer.concat([head, tail]) : head;
  } catch {
    throw new TlsError("TLS_BAD_RECORD_MAC", "record authentication failed");
  }
}
