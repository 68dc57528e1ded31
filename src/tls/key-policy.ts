// Which raw public keys the client role accepts from a server (RFC 7250),
// before it spends a signature verification on one: only kinds our
// priority string admits (a key that fits a signature scheme we offered)
// and what GnuTLS would take: Ed25519, Ed448, ECDSA on the named curves of
// those schemes, RSA (rsaEncryption, and RSASSA-PSS with the parameters
// its SPKI may pin) with a small odd exponent. One bound is ours alone:
// the modulus, 1,024 to 16,384 bits (limits.ts says why), where GnuTLS
// also takes smaller keys; its refusal is a KEY_POLICY error, whose
// message is the WARNING the daemon logs. The DER exactness of the SPKI is
// checked after this, by requireCanonicalSpki (crypto.ts), so that one key
// has one key ID.

import { schemeByCode } from "./constants.js";
import { keyFitsScheme } from "./crypto.js";
import { TlsError, tlsErrorAs } from "./errors.js";
import { MAX_RSA_EXPONENT_BITS, MAX_RSA_MODULUS_BITS, MIN_RSA_MODULUS_BITS } from "./limits.js";
import type { KeyObject } from "node:crypto";

/** Whether a scheme we offered fits the key. A loop, not some() with an arrow made a call (docs/BENCHMARK.md, "Closures compiled again"). */
function fitsAnOffered(key: KeyObject, offeredSchemes: readonly number[]): boolean {
  for (const code of offeredSchemes) {
    const scheme = schemeByCode(code);
    if (scheme !== undefined && keyFitsScheme(key, scheme)) return true;
  }
  return false;
}

/** Throws unsupported_certificate for a key we will not verify with; cheap (no crypto). */
export function admitPeerKey(key: KeyObject, offeredSchemes: readonly number[]): void {
  if (!fitsAnOffered(key, offeredSchemes)) throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", `no signature scheme we offered fits a ${key.asymmetricKeyType ?? "unknown"} key`);
  if (key.asymmetricKeyType !== "rsa" && key.asymmetricKeyType !== "rsa-pss") return;
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_MODULUS_BITS) throw tlsErrorAs("KEY_POLICY", "TLS_UNSUPPORTED_CERTIFICATE", `RSA key of ${bits} bits: below ${MIN_RSA_MODULUS_BITS}`);
  if (bits > MAX_RSA_MODULUS_BITS) throw tlsErrorAs("KEY_POLICY", "TLS_UNSUPPORTED_CERTIFICATE", `RSA key of ${bits} bits: above ${MAX_RSA_MODULUS_BITS}`);
  const e = key.asymmetricKeyDetails?.publicExponent ?? 0n;
  const eBits = e.toString(2).length;
  // RFC 8017 §3.1: 3 <= e < n, odd.
  if (e < 3n || e % 2n === 0n) throw new TlsError("TLS_UNSUPPORTED_CERTIFICATE", "RSA public exponent below 3 or even");
  if (eBits > MAX_RSA_EXPONENT_BITS) throw tlsErrorAs("KEY_POLICY", "TLS_UNSUPPORTED_CERTIFICATE", `RSA public exponent of ${eBits} bits: above ${MAX_RSA_EXPONENT_BITS}`);
}
