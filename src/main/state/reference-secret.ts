// The secrets the Python server sealed in its clients.pickle: each one a
// `gpg --symmetric` message under a passphrase made from the client's
// clients.conf secret (PGPEngine.password_encode). Opening one costs gpg's
// key derivation, 65 MB hashed with its default S2K count (two passes of
// SHA-1 for an AES-256 key, ~70 ms of one core here): a migration of 1,000
// clients is a minute of CPU, once. So they are opened on worker threads,
// one per core (src/workers/reference-secret.ts): all at once here, for
// `mandos-keygen --import-pickle`, which waits for the slowest thread
// instead of for the sum; in the background while serving, each asking
// client's first, in secret-opening.ts.

import { availableParallelism } from "node:os";
import { createRequire } from "node:module";
import { threadId } from "node:worker_threads";
import type * as openpgp from "openpgp";
import type { SecretToOpen } from "../clients/secret-to-open.js";
import { ownedCopy } from "../../tls/record.js";
import { symmetricSessionKey } from "./symmetric-key.js";

const PASSPHRASE_PREFIX = Buffer.from("mandos");
/** GnuPG's longest passphrase, in bytes: past it, the reference escapes the secret instead of giving it in hex. */
const PASSPHRASE_HEX_MAX = 2048;

/**
 * The reference's passphrase for a client's sealed secret
 * (PGPEngine.password_encode): "mandos" and the secret in hex, or, past
 * GnuPG's 2048-byte limit, the secret with backslash, newline and NUL
 * escaped (`\\`, `\n`, `\x00`: the reference's three replaces, in that
 * order, on bytes). Escaped byte by byte into one Buffer: as JS strings
 * and regex replaces, each escaped byte cost ~36 bytes of heap, and a
 * 30 MB secret of NULs filled the server's 1 GB heap as it stopped.
 */
export function passwordEncode(secret: Buffer): Buffer {
  if (PASSPHRASE_PREFIX.length + 2 * secret.length <= PASSPHRASE_HEX_MAX) {
    return Buffer.concat([PASSPHRASE_PREFIX, Buffer.from(secret.toString("hex"))]);
  }
  let extra = 0;
  for (let i = 0; i < secret.length; i++) {
    const b = secret[i]!;
    if (b === 0x5c || b === 0x0a) extra += 1;
    else if (b === 0x00) extra += 3;
  }
  const out = Buffer.allocUnsafe(PASSPHRASE_PREFIX.length + secret.length + extra);
  let at = PASSPHRASE_PREFIX.copy(out, 0);
  for (let i = 0; i < secret.length; i++) {
    const b = secret[i]!;
    if (b === 0x5c) {
      out[at++] = 0x5c;
      out[at++] = 0x5c;
    } else if (b === 0x0a) {
      out[at++] = 0x5c;
      out[at++] = 0x6e; // n
    } else if (b === 0x00) {
      out[at++] = 0x5c;
      out[at++] = 0x78; // x
      out[at++] = 0x30;
      out[at++] = 0x30;
    } else {
      out[at++] = b;
    }
  }
  return out;
}

/** Opens a `gpg --symmetric` message the reference sealed with `configSecret`; null if it cannot. */
export async function openReferenceSecret(sealed: Buffer, configSecret: Buffer): Promise<Buffer | null> {
  try {
    // OpenPGP.js takes passphrases as text only, and the reference's
    // passphrase is binary whenever the secret is long (as an encrypted
    // password is): the session key is derived here (symmetric-key.ts),
    // and OpenPGP.js decrypts the data with it. Loaded here, not at
    // start-up: only a migration needs OpenPGP.js.
    const sessionKey = symmetricSessionKey(sealed, passwordEncode(configSecret));
    if (sessionKey === null) return null;
    const pgp: typeof openpgp = await import("openpgp");
    const message = await pgp.readMessage({ binaryMessage: sealed });
    const algorithm = pgp.enums.read(pgp.enums.symmetric, sessionKey.algorithm) as openpgp.enums.symmetricNames;
    const { data } = await pgp.decrypt({ message, sessionKeys: { data: sessionKey.key, algorithm }, format: "binary" });
    return Buffer.from(data);
  } catch {
    return null;
  }
}

/** One sealed secret to open, and the clients.conf secret it was sealed under. */
export type SealedSecret = SecretToOpen;

/** A worker's answer: the secret (null if it did not open) and the thread that opened it. */
export interface OpenedSecret {
  readonly secret: Uint8Array | null;
  readonly threadId: number;
}

/** Fewer secrets than this are opened on the main thread: a worker takes longer to start than one takes to open. */
const THREADS_FROM = 2;

/**
 * Who watches an opening that may take minutes (10,000 secrets take
 * minutes on a few cores): told how many secrets on how many threads as it
 * begins, and the count opened so far as each one opens (in any order).
 */
export interface OpeningWatch {
  begin?(total: number, threads: number): void;
  opened?(done: number, total: number): void;
  /**
   * A background opening paused while the server is busy (`true`, told
   * once the pause has lasted a while) and went on (`false`), at `done` of
   * `total`; `forMs` is how long it has been paused.
   */
  paused?(paused: boolean, done: number, total: number, forMs: number): void;
}

/**
 * Opens every secret, in order, on up to `threads` worker threads (one per
 * core by default; on the main thread when there is one core or a single
 * secret, or when the workers cannot start). `entry` is the workers'
 * Piscina entry (tests give one that cannot load).
 */
export async function openReferenceSecrets(
  items: readonly SealedSecret[],
  threads = availableParallelism(),
  entry = REFERENCE_SECRET_ENTRY,
  watch: OpeningWatch = {},
): Promise<OpenedSecret[]> {
  if (items.length === 0) return [];
  const count = Math.min(threads, items.length);
  if (count < 2 || items.length < THREADS_FROM) return openHere(items, watch);
  const pool = referenceSecretPool(count, entry);
  // An answer that came after a failed task made the pool be destroyed is
  // ignored: the race is decided by then.
  const failed = new Promise<never>((_resolve, reject) => pool.onError(reject));
  failed.catch(() => undefined);
  watch.begin?.(items.length, count);
  let done = 0;
  try {
    const all = Promise.all(items.map(async (item) => {
      const opened = await pool.run(item);
      watch.opened?.(++done, items.length);
      return opened;
    }));
    return await Promise.race([all, failed]);
  } catch {
    // A worker that cannot load (a damaged installation): the slow way.
    return openHere(items, watch);
  } finally {
    await pool.destroy();
  }
}

async function openHere(items: readonly SealedSecret[], watch: OpeningWatch): Promise<OpenedSecret[]> {
  const opened: OpenedSecret[] = [];
  watch.begin?.(items.length, 1);
  for (const { sealed, configSecret } of items) {
    opened.push({ secret: await openReferenceSecret(sealed, configSecret), threadId });
    watch.opened?.(opened.length, items.length);
  }
  return opened;
}

/** The workers' Piscina entry: CommonJS that import()s reference-secret.js (see src/workers/handshake-entry.cts). */
export const REFERENCE_SECRET_ENTRY = new URL("../../workers/reference-secret-entry.cjs", import.meta.url);

/** Worker threads that open sealed secrets, one at a time each (openReferenceSecrets, secret-opening.ts). */
export interface ReferenceSecretPool {
  run(item: SealedSecret): Promise<OpenedSecret>;
  /**
   * Piscina's "error": a worker that could not load (its tasks would then
   * wait for ever, as Piscina starts no other). Unheard, it would be
   * thrown and end the server: every pool has a listener.
   */
  onError(listener: (error: Error) => void): void;
  destroy(): Promise<void>;
}

export function referenceSecretPool(threads: number, entry: URL = REFERENCE_SECRET_ENTRY): ReferenceSecretPool {
  const { Piscina } = createRequire(import.meta.url)("piscina") as typeof import("piscina");
  const pool = new Piscina<SealedSecret, OpenedSecret>({
    filename: entry.href,
    minThreads: threads,
    maxThreads: threads,
    concurrentTasksPerWorker: 1,
    recordTiming: false,
  });
  return {
    // Each on its own exact-size copy: structured clone copies a view's
    // whole ArrayBuffer (the pickle's, the secrets' arena, Node's pool).
    run: ({ sealed, configSecret }) => pool.run({ sealed: ownedCopy(sealed), configSecret: ownedCopy(configSecret) }),
    onError: (listener) => void pool.on("error", listener),
    destroy: () => pool.destroy(),
  };
}
