// OpenPGP identities for the TLS 1.2 server role (a simulated legacy
// mandos-client): the recorded session's key from project test data, or a
// fresh one (src/client/openpgp-identity.ts).

import { readFileSync } from "node:fs";
import { generateLegacyIdentity, loadLegacyIdentity, type LegacyIdentity } from "../../src/client/openpgp-identity.js";
import { LEGACY_DATA } from "./legacy-session.js";

export type TestOpenPgpIdentity = LegacyIdentity;

/** The key of the recorded legacy client (fingerprint 9A2BE965...). */
export function recordedIdentity(): Promise<LegacyIdentity> {
  return loadLegacyIdentity(readFileSync(`${LEGACY_DATA}seckey.txt`, "latin1"));
}

/** A fresh RSA key as mandos-keygen would make one. */
export function freshIdentity(bits: 2048 | 3072 | 4096, name = "legacy-fresh"): Promise<LegacyIdentity> {
  return generateLegacyIdentity(bits, name);
}
