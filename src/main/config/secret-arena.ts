// Where the secrets read from one clients.conf live: packed side by side in
// a few shared chunks instead of one allocation each. A Buffer of its own
// costs an ArrayBuffer object on V8's heap and a backing store with its
// bookkeeping in malloc beside its bytes, ~400 bytes for a secret of ~470:
// measured, 20,000 secrets took 25.5 MiB of RSS one allocation each and
// 17.3 packed (docs/BENCHMARK.md, "Records shared, secrets packed").
//
// Each secret is still a Buffer, a view on its chunk, and the chunk lives
// as long as any of its views. A view must not be posted to another thread
// as it is (structured clone copies the whole chunk under it): the serve
// threads' answers go through packBytes (../../workers/pack-bytes.ts).

import { ownedCopy } from "../../tls/record.js";

/** Bytes of one chunk: ~140 secrets of a typical size. */
export const SECRET_CHUNK_BYTES = 64 * 1024;

/** A secret larger than this gets a chunk of its own size (a secfile may hold anything). */
const SHARED_UP_TO = SECRET_CHUNK_BYTES / 8;

export class SecretArena {
  #chunk: Buffer | null = null;
  #used = 0;
  /** Bytes still to be kept, as told (at most): a chunk is no larger. */
  #left: number;

  /**
   * `expected`: the bytes of the secrets it will be asked to keep, at most,
   * if known. A reload's few new clients then take a chunk of their size:
   * a chunk of 64 KiB for one secret of 600 bytes lived as long as that
   * client, and a fleet enrolled a machine a reload held 64 MB a thousand.
   */
  constructor(expected = Infinity) {
    this.#left = expected;
  }

  /** A copy of `secret` in the arena. */
  keep(secret: Buffer): Buffer {
    if (secret.length > SHARED_UP_TO) return ownedCopy(secret);
    if (this.#chunk === null || this.#used + secret.length > this.#chunk.length) {
      // Zeroed: a chunk's unused tail holds nothing left over from elsewhere.
      this.#chunk = Buffer.alloc(Math.max(secret.length, Math.min(SECRET_CHUNK_BYTES, this.#left)));
      this.#used = 0;
    }
    const view = this.#chunk.subarray(this.#used, this.#used + secret.length);
    this.#used += secret.length;
    this.#left -= secret.length;
    secret.copy(view);
    return view;
  }
}
