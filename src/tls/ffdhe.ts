// The finite-field Diffie-Hellman groups of TLS 1.3 (RFC 7919, named
// groups ffdhe2048-ffdhe8192): their primes (generator 2), and how long a
// private exponent each needs (RFC 7919 §5.2, twice the group's strength).
// GnuTLS offers them in SECURE128; we offer them only when the priority
// string names them (docs/PROTOCOL.md, "Key exchange groups"): a peer that
// picks one makes us spend 1-15 ms of CPU where X25519 costs ~0.1.
//
// Each prime is built as RFC 7919 §A defines it, from the digits of e and
// the RFC's X, at its first use (1-4 ms), rather than written out in
// 5,888 hex digits; test/tls-key-shares.test.ts checks each against
// OpenSSL's by its SHA-256.

/** The finite-field groups. */
export type FfdheGroup = "ffdhe2048" | "ffdhe3072" | "ffdhe4096" | "ffdhe6144" | "ffdhe8192";

export interface FfdheParameters {
  /** The safe prime p, big-endian; a key share is this long (RFC 8446 §4.2.8.1). */
  readonly prime: Buffer;
  /** Bits of private exponent drawn (RFC 7919 §5.2). */
  readonly exponentBits: number;
}

/** Each group's bits, the smallest X that makes p a safe prime (RFC 7919 §A), and its exponent length. */
const GROUPS: Readonly<Record<FfdheGroup, { readonly bits: number; readonly x: bigint; readonly exponentBits: number }>> = {
  ffdhe2048: { bits: 2048, x: 560316n, exponentBits: 225 },
  ffdhe3072: { bits: 3072, x: 2625351n, exponentBits: 275 },
  ffdhe4096: { bits: 4096, x: 5736041n, exponentBits: 325 },
  ffdhe6144: { bits: 6144, x: 15705020n, exponentBits: 375 },
  ffdhe8192: { bits: 8192, x: 10965728n, exponentBits: 400 },
};

/** floor(2^n e), from the series e = Σ 1/k!, with guard bits for the terms' truncation. */
function scaledE(n: bigint): bigint {
  const guard = 64n;
  let term = 1n << (n + guard);
  let sum = 0n;
  for (let k = 1n; term > 0n; k++) {
    sum += term;
    term /= k;
  }
  return sum >> guard;
}

/** p = 2^b - 2^(b-64) + (floor(2^(b-130) e) + X) 2^64 - 1. */
export function rfc7919Prime(bits: number, x: bigint): Buffer {
  const b = BigInt(bits);
  const p = (1n << b) - (1n << (b - 64n)) + ((scaledE(b - 130n) + x) << 64n) - 1n;
  return Buffer.from(p.toString(16).padStart(bits / 4, "0"), "hex");
}

const built = new Map<FfdheGroup, FfdheParameters>();

/** The group's parameters, built at the first call. */
export function ffdhe(group: FfdheGroup): FfdheParameters {
  let parameters = built.get(group);
  if (!parameters) {
    const { bits, x, exponentBits } = GROUPS[group];
    parameters = { prime: rfc7919Prime(bits, x), exponentBits };
    built.set(group, parameters);
  }
  return parameters;
}

/** The finite-field groups, smallest first. */
export const FFDHE_GROUPS = Object.keys(GROUPS) as readonly FfdheGroup[];

/** The length of a share of `group`: p's, known without building p. */
export function ffdheShareLength(group: FfdheGroup): number {
  return GROUPS[group].bits / 8;
}
