// The registry's two exact lookups a serve thread needs (key ID → client
// name, OpenPGP fingerprint → client name) as one SharedArrayBuffer, built
// on the main thread and read by every serve thread: one copy in the
// process, not one a thread. As Maps of strings each thread held ~5 MiB for
// 10,000 clients (docs/BENCHMARK.md, "Serve threads' memory"), and each
// reload cloned 20,000 pairs into every thread.
//
// Layout (little-endian; the table is rebuilt, never changed in place, so a
// reader never sees it half written):
//
//   word 0        slot mask (slots − 1; slots a power of two, at least twice the entries)
//   word 1        byte offset of the entries
//   words 2 ...   the slots: 0 empty, else 1 + an entry's offset from the entries' start
//   entries       kind (1 byte: KEY_ID or FINGERPRINT), key length (4), key (UTF-8),
//                 name length (4), name (UTF-8)
//
// Open addressing with linear probing on FNV-1a of the kind and the key. A
// hit compares the whole key, so the lookup is exact, as the registry's.

const KEY_ID = 1;
const FINGERPRINT = 2;
type Kind = typeof KEY_ID | typeof FINGERPRINT;

/** Slots per entry at least (load factor at most 1/2). */
const SLACK = 2;
const HEADER_WORDS = 2;

/** One client as the index is built from it (on the main thread, from the registry's clients in their order). */
export interface ClientKeysRow {
  readonly name: string;
  readonly keyId?: string | undefined;
  readonly fingerprint?: string | undefined;
}

/** The index of `clients`; for a key two clients share, the earlier one's name (as the registry's maps, filled in order). */
export function buildClientIndex(clients: Iterable<ClientKeysRow>): SharedArrayBuffer {
  const entries = new Map<string, { kind: Kind; key: Buffer; name: Buffer }>();
  const first = (id: string, entry: { kind: Kind; key: Buffer; name: Buffer }): void => {
    if (!entries.has(id)) entries.set(id, entry);
  };
  for (const c of clients) {
    const name = Buffer.from(c.name, "utf8");
    if (c.keyId) first(`${KEY_ID}${c.keyId}`, { kind: KEY_ID, key: Buffer.from(c.keyId, "utf8"), name });
    if (c.fingerprint) first(`${FINGERPRINT}${c.fingerprint}`, { kind: FINGERPRINT, key: Buffer.from(c.fingerprint, "utf8"), name });
  }
  let slots = 16;
  while (slots < entries.size * SLACK) slots *= 2;
  let blobBytes = 0;
  for (const e of entries.values()) blobBytes += 9 + e.key.length + e.name.length;
  const start = (HEADER_WORDS + slots) * 4;
  const buffer = new SharedArrayBuffer(start + blobBytes);
  const words = new Uint32Array(buffer, 0, HEADER_WORDS + slots);
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  words[0] = slots - 1;
  words[1] = start;
  let at = 0;
  for (const e of entries.values()) {
    for (let slot = hashOf(e.kind, e.key) & (slots - 1); ; slot = (slot + 1) & (slots - 1)) {
      if (words[HEADER_WORDS + slot] === 0) {
        words[HEADER_WORDS + slot] = at + 1;
        break;
      }
    }
    let p = start + at;
    bytes[p] = e.kind;
    view.setUint32(p + 1, e.key.length, true);
    bytes.set(e.key, p + 5);
    p += 5 + e.key.length;
    view.setUint32(p, e.name.length, true);
    bytes.set(e.name, p + 4);
    at += 9 + e.key.length + e.name.length;
  }
  return buffer;
}

/** A serve thread's reader of an index from buildClientIndex. */
export class ClientIndex {
  readonly #buffer: SharedArrayBuffer;
  readonly #words: Uint32Array;
  readonly #bytes: Uint8Array;
  readonly #view: DataView;

  constructor(buffer: SharedArrayBuffer) {
    this.#buffer = buffer;
    this.#words = new Uint32Array(buffer, 0, HEADER_WORDS + new Uint32Array(buffer, 0, 1)[0]! + 1);
    this.#bytes = new Uint8Array(buffer);
    this.#view = new DataView(buffer);
  }

  /** The client whose key ID is `keyId` (normalised), as Registry.byKeyId. */
  byKeyId(keyId: string): { name: string } | undefined {
    return this.#find(KEY_ID, keyId);
  }

  /** The client whose OpenPGP fingerprint is `fingerprint` (normalised), as Registry.byFingerprint. */
  byFingerprint(fingerprint: string): { name: string } | undefined {
    return this.#find(FINGERPRINT, fingerprint);
  }

  #find(kind: Kind, keyText: string): { name: string } | undefined {
    if (!keyText) return undefined;
    const key = Buffer.from(keyText, "utf8");
    const words = this.#words;
    const mask = words[0]!;
    const start = words[1]!;
    const bytes = this.#bytes;
    for (let slot = hashOf(kind, key) & mask; ; slot = (slot + 1) & mask) {
      const entry = words[HEADER_WORDS + slot]!;
      if (entry === 0) return undefined;
      const p = start + entry - 1;
      if (bytes[p] !== kind || this.#view.getUint32(p + 1, true) !== key.length) continue;
      if (!key.equals(bytes.subarray(p + 5, p + 5 + key.length))) continue;
      const n = p + 5 + key.length;
      const length = this.#view.getUint32(n, true);
      return { name: Buffer.from(this.#buffer, n + 4, length).toString("utf8") };
    }
  }
}

/** 32-bit FNV-1a of the kind byte and then the key's bytes. */
function hashOf(kind: Kind, key: Uint8Array): number {
  let h = Math.imul(0x811c9dc5 ^ kind, 0x01000193);
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  return h >>> 0;
}
