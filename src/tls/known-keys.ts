// The key IDs a server knows, as a table the flight task can read on any
// thread: so that a peer whose key ID belongs to no client is refused
// before its CertificateVerify signature is checked (issue 16: an unknown
// key must cost no verification; a P-521 or RSA-8,192 check costs 5 to 15
// times the rest of the flight).
//
// A set of the key IDs' first 64 bits in a SharedArrayBuffer (open
// addressing, linear probing): a task carries the buffer, not a copy, so a
// batch of tasks on the pool costs one handle. The table answers "may be
// known": a miss is certain (the key ID is no client's), a hit is only
// likely, and the registry's exact lookup decides after the handshake. The
// table is rebuilt, never changed in place, so a reader never sees it half
// written.

/** Slots per key ID at least (load factor at most 1/2). */
const SLACK = 2;
/** Header words: [0] slot mask, [1] whether the all-zero prefix is a member. */
const HEADER = 2;

function prefixOf(keyId: string): [number, number] | null {
  if (!/^[0-9A-Fa-f]{16}/.test(keyId)) return null;
  return [parseInt(keyId.slice(0, 8), 16) >>> 0, parseInt(keyId.slice(8, 16), 16) >>> 0];
}

/** A new table holding `keyIds` (hex strings; anything else can match no peer and is left out). */
export function buildKnownKeyTable(keyIds: Iterable<string>): SharedArrayBuffer {
  const prefixes: Array<[number, number]> = [];
  for (const id of keyIds) {
    const p = prefixOf(id);
    if (p) prefixes.push(p);
  }
  let slots = 16;
  while (slots < prefixes.length * SLACK) slots *= 2;
  const buffer = new SharedArrayBuffer((HEADER + 2 * slots) * 4);
  const words = new Uint32Array(buffer);
  words[0] = slots - 1;
  for (const [hi, lo] of prefixes) {
    // (0, 0) marks an empty slot; that one prefix is kept in the header.
    if (hi === 0 && lo === 0) {
      words[1] = 1;
      continue;
    }
    for (let slot = mix(hi, lo) & (slots - 1); ; slot = (slot + 1) & (slots - 1)) {
      const at = HEADER + 2 * slot;
      if (words[at] === hi && words[at + 1] === lo) break;
      if (words[at] === 0 && words[at + 1] === 0) {
        words[at] = hi;
        words[at + 1] = lo;
        break;
      }
    }
  }
  return buffer;
}

/** False only when `keyId` is certainly in no client's settings. */
export function mayBeKnown(table: SharedArrayBuffer, keyId: string): boolean {
  const p = prefixOf(keyId);
  if (!p) return false;
  const [hi, lo] = p;
  const words = new Uint32Array(table);
  if (hi === 0 && lo === 0) return words[1] === 1;
  const mask = words[0]!;
  for (let slot = mix(hi, lo) & mask; ; slot = (slot + 1) & mask) {
    const at = HEADER + 2 * slot;
    if (words[at] === hi && words[at + 1] === lo) return true;
    if (words[at] === 0 && words[at + 1] === 0) return false;
  }
}

/** The key ID is a hash already; fold its words so that either half spreads. */
function mix(hi: number, lo: number): number {
  return (hi ^ Math.imul(lo, 0x9e3779b1)) >>> 0;
}
