// Random bytes for the handshakes, drawn from a pool that node:crypto's
// CSPRNG fills 4 KiB at a time, one pool a thread (module state is per
// isolate). randomBytes costs ~5 µs a call whatever the size (a job
// object and a trip into C++ each); every handshake of the server role
// draws twice, its ClientHello's random and session ID and its X25519
// private key: ~0.2 µs a draw from the pool (docs/BENCHMARK.md, session
// 15); the state file's GCM nonces come from it too. Each byte is handed
// out once, as a copy, and zeroed in the pool at once, so the pool never
// holds a key that is in use.

import { randomBytes, randomFillSync } from "node:crypto";
import { ownedCopy } from "./record.js";

const POOL_BYTES = 4096;
/** Draws larger than this go to randomBytes directly. */
const MAX_POOLED = 256;

let pool: Buffer = Buffer.alloc(0);
let next = 0;

/** `size` bytes from the CSPRNG, as randomBytes(size) gives them. */
export function drawRandom(size: number): Buffer {
  if (size > MAX_POOLED) return randomBytes(size);
  if (next + size > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafeSlow(POOL_BYTES));
    next = 0;
  }
  // Not a slice of Node's Buffer pool (ownedCopy): a draw lives as long as
  // its connection (its ClientHello's random and session ID).
  const out = ownedCopy(pool.subarray(next, next + size));
  pool.fill(0, next, next + size);
  next += size;
  return out;
}
