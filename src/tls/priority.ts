// GnuTLS priority strings (GnuTLS manual §6.10 "Priority strings") mapped
// onto engine settings. A string is an initial keyword followed by
// ":"-separated modifiers: "+X" adds, "-X" or "!X" removes, "%X" sets a
// flag. We map what a TLS 1.3 raw-public-key handshake can use, and what a
// TLS 1.2 OpenPGP handshake with a legacy Mandos client can use
// (VERS-TLS1.2, CTYPE-OPENPGP, the ECDHE-RSA/DHE-RSA key exchanges, and the
// AES-256-GCM/CHACHA20-POLY1305 ciphers; docs/PROTOCOL.md, "Priority
// strings"); other tokens of older TLS (MACs, compression, other key
// exchanges) are accepted and change nothing; anything we do not know is
// refused with an error naming the token.

import {
  type CipherSuiteName,
  type NamedGroup,
  type SignatureScheme,
} from "./constants.js";
import { TlsError } from "./errors.js";
import { FFDHE_GROUPS } from "./ffdhe.js";
import { TLS12_CURVES, TLS12_SIGNATURES, TLS12_SUITES } from "./tls12/suites.js";

/**
 * Ours: both generations of Mandos clients, modern (TLS 1.3, raw public
 * key) and legacy (TLS 1.2, OpenPGP), from one ClientHello.
 */
export const DEFAULT_PRIORITY = "SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:+CTYPE-OPENPGP:!RSA:!VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%PROFILE_ULTRA";
/** The reference's default with GnuTLS >= 3.6.6: modern clients only. */
export const REFERENCE_RPK_PRIORITY = "SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:!RSA:!VERS-ALL:+VERS-TLS1.3:%PROFILE_ULTRA";
/** The reference's default with GnuTLS < 3.6: legacy clients only. */
export const REFERENCE_OPENPGP_PRIORITY = "SECURE256:!CTYPE-X.509:+CTYPE-OPENPGP:!RSA:+SIGN-DSA-SHA256";

/** What we offer a legacy (TLS 1.2, OpenPGP) Mandos client; code points. */
export interface LegacySettings {
  /** TLS 1.2 cipher suites, most preferred first (tls12/suites.ts). */
  readonly suites: readonly number[];
  /** supported_groups entries for TLS 1.2 ECDHE (secp384r1, secp521r1). */
  readonly groups: readonly number[];
  /** signature_algorithms entries for the ServerKeyExchange (RSA PKCS#1 SHA-384/512). */
  readonly signatures: readonly number[];
}

export type SecurityProfile = "VERY_WEAK" | "LOW" | "LEGACY" | "MEDIUM" | "HIGH" | "ULTRA" | "FUTURE" | "SUITEB128" | "SUITEB192";

/** What the engine needs to know from a priority string. Plain data. */
export interface TlsSettings {
  /** Cipher suites, most preferred first. */
  readonly cipherSuites: readonly CipherSuiteName[];
  /** supported_groups, most preferred first. */
  readonly groups: readonly NamedGroup[];
  /**
   * Groups the first ClientHello carries key shares for: one share, for
   * the first group of `groups`. GnuTLS (mandos-client) takes the client's
   * first group when the client sent its share, and otherwise asks for
   * secp256r1 with a HelloRetryRequest; so one share of the first group
   * means no HelloRetryRequest and no share made in vain.
   */
  readonly keyShareGroups: readonly NamedGroup[];
  /** signature_algorithms, most preferred first. */
  readonly signatureSchemes: readonly SignatureScheme[];
  readonly profile: SecurityProfile | null;
  /** The string these settings came from. */
  readonly priority: string;
  /** Modern clients: TLS 1.3 with raw public keys (VERS-TLS1.3 and CTYPE-RAWPK). */
  readonly modern: boolean;
  /** Legacy clients: TLS 1.2 with OpenPGP certificates (VERS-TLS1.2 and CTYPE-OPENPGP); null when not served. */
  readonly legacy: LegacySettings | null;
  /**
   * What the string asks for that the reference's GnuTLS would do and ours
   * does not, one sentence each, for the daemon to warn about at start.
   */
  readonly ignored: readonly string[];
}

// GnuTLS 3.7's order; AES-128-CCM last, so that it is chosen only by a peer that has nothing else.
const ALL_SUITES: readonly CipherSuiteName[] = ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256", "TLS_AES_128_CCM_SHA256"];
const ALL_GROUPS: readonly NamedGroup[] = ["secp256r1", "secp384r1", "x25519", "x448"];
// GnuTLS 3.7's order (`gnutls-cli --priority SECURE128 --list`), less the
// PKCS#1 v1.5 schemes, which TLS 1.3 does not sign with.
const ALL_SCHEMES: readonly SignatureScheme[] = [
  "rsa_pss_pss_sha256", "rsa_pss_rsae_sha256", "ecdsa_secp256r1_sha256", "ed25519",
  "rsa_pss_pss_sha384", "rsa_pss_rsae_sha384", "ecdsa_secp384r1_sha384", "ed448",
  "rsa_pss_pss_sha512", "rsa_pss_rsae_sha512", "ecdsa_secp521r1_sha512",
];
const STRONG_SCHEMES: readonly SignatureScheme[] = [
  "rsa_pss_pss_sha384", "rsa_pss_rsae_sha384", "ecdsa_secp384r1_sha384", "ed448",
  "rsa_pss_pss_sha512", "rsa_pss_rsae_sha512", "ecdsa_secp521r1_sha512",
];

interface Lists {
  suites: CipherSuiteName[];
  groups: NamedGroup[];
  schemes: SignatureScheme[];
  tls13: boolean;
  rawpk: boolean;
}

/** GnuTLS's keywords enable TLS 1.2 and X.509 only; these are the legacy extras, edited by tokens. */
interface LegacyLists {
  tls12: boolean;
  openpgp: boolean;
  kx: Set<"ECDHE-RSA" | "DHE-RSA">;
}

// Initial keywords, as `gnutls-cli --priority K --list` shows them (GnuTLS
// 3.7) restricted to what we implement, in the same order.
const KEYWORDS: Record<string, () => Lists> = {
  NORMAL: () => ({ suites: [...ALL_SUITES], groups: [...ALL_GROUPS], schemes: [...ALL_SCHEMES], tls13: true, rawpk: false }),
  PFS: () => KEYWORDS.NORMAL!(),
  LEGACY: () => KEYWORDS.NORMAL!(),
  SECURE128: () => KEYWORDS.NORMAL!(),
  PERFORMANCE: () => ({
    suites: ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256"],
    groups: [...ALL_GROUPS],
    schemes: [...ALL_SCHEMES],
    tls13: true,
    rawpk: false,
  }),
  SECURE192: () => ({
    suites: ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"],
    groups: ["secp384r1"],
    schemes: [...STRONG_SCHEMES],
    tls13: true,
    rawpk: false,
  }),
  SECURE256: () => KEYWORDS.SECURE192!(),
  SUITEB128: () => ({
    suites: ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"],
    groups: ["secp256r1", "secp384r1"],
    schemes: ["ecdsa_secp256r1_sha256", "ecdsa_secp384r1_sha384"],
    tls13: true,
    rawpk: false,
  }),
  SUITEB192: () => ({
    suites: ["TLS_AES_256_GCM_SHA384"],
    groups: ["secp384r1"],
    schemes: ["ecdsa_secp384r1_sha384"],
    tls13: true,
    rawpk: false,
  }),
  NONE: () => ({ suites: [], groups: [], schemes: [], tls13: false, rawpk: false }),
};

const CIPHER_TOKENS: Record<string, CipherSuiteName[]> = {
  "AES-128-GCM": ["TLS_AES_128_GCM_SHA256"],
  "AES-256-GCM": ["TLS_AES_256_GCM_SHA384"],
  "CHACHA20-POLY1305": ["TLS_CHACHA20_POLY1305_SHA256"],
  "AES-128-CCM": ["TLS_AES_128_CCM_SHA256"],
  "CIPHER-ALL": [...ALL_SUITES],
};
/** Ciphers GnuTLS knows that no TLS 1.3 suite of ours uses. */
const OTHER_CIPHERS = new Set([
  "AES-256-CCM", "AES-128-CCM-8", "AES-256-CCM-8", "AES-128-CBC", "AES-256-CBC", "AES-192-CBC",
  "CAMELLIA-128-GCM", "CAMELLIA-256-GCM", "CAMELLIA-128-CBC", "CAMELLIA-256-CBC", "3DES-CBC", "ARCFOUR-128", "NULL",
  "GOST28147-TC26Z-CNT", "MAGMA-CTR-ACPKM", "KUZNYECHIK-CTR-ACPKM", "AES-192-GCM", "CIPHER-GOST-ALL",
]);
/**
 * GnuTLS's group tokens. secp521r1 and the finite-field groups are in
 * GnuTLS's keywords (SECURE128, GROUP-ALL) but here only when named, since
 * a peer that picks one costs us 1-107 ms of CPU against ~0.1 for X25519
 * (docs/PROTOCOL.md, "Key exchange groups").
 */
const GROUP_TOKENS: Record<string, NamedGroup[]> = {
  SECP256R1: ["secp256r1"],
  SECP384R1: ["secp384r1"],
  SECP521R1: ["secp521r1"],
  X25519: ["x25519"],
  X448: ["x448"],
  FFDHE2048: ["ffdhe2048"],
  FFDHE3072: ["ffdhe3072"],
  FFDHE4096: ["ffdhe4096"],
  FFDHE6144: ["ffdhe6144"],
  FFDHE8192: ["ffdhe8192"],
  "DH-ALL": [...FFDHE_GROUPS],
  // Not GnuTLS's (it refuses it), but what our docs once said: taken as
  // GROUP-DH-ALL, so that a mandos.conf written from them still starts.
  "DHE-ALL": [...FFDHE_GROUPS],
  ALL: [...ALL_GROUPS],
  "EC-ALL": [...ALL_GROUPS],
};
/** GnuTLS's groups we implement nothing of (the GOST curves of RFC 9189 among them). */
const OTHER_GROUPS = new Set([
  "SECP192R1", "SECP224R1", "GC256A", "GC256B", "GC256C", "GC256D", "GC512A", "GC512B", "GC512C", "GOST-ALL",
]);
const REMOVE_GROUP_TOKENS: Record<string, NamedGroup[]> = {
  ALL: [...ALL_GROUPS, "secp521r1", ...FFDHE_GROUPS],
  "EC-ALL": [...ALL_GROUPS, "secp521r1"],
};
const SIGN_TOKENS: Record<string, SignatureScheme[]> = {
  "EDDSA-ED25519": ["ed25519"],
  "EDDSA-ED448": ["ed448"],
  "ECDSA-SECP256R1-SHA256": ["ecdsa_secp256r1_sha256"],
  "ECDSA-SECP384R1-SHA384": ["ecdsa_secp384r1_sha384"],
  "ECDSA-SECP521R1-SHA512": ["ecdsa_secp521r1_sha512"],
  // In TLS 1.3 these share the code points of the curve-bound schemes.
  "ECDSA-SHA256": ["ecdsa_secp256r1_sha256"],
  "ECDSA-SHA384": ["ecdsa_secp384r1_sha384"],
  "ECDSA-SHA512": ["ecdsa_secp521r1_sha512"],
  "RSA-PSS-RSAE-SHA256": ["rsa_pss_rsae_sha256"],
  "RSA-PSS-RSAE-SHA384": ["rsa_pss_rsae_sha384"],
  "RSA-PSS-RSAE-SHA512": ["rsa_pss_rsae_sha512"],
  // GnuTLS's names for the schemes of RSASSA-PSS keys (RFC 8446 §4.2.3, rsa_pss_pss_*).
  "RSA-PSS-SHA256": ["rsa_pss_pss_sha256"],
  "RSA-PSS-SHA384": ["rsa_pss_pss_sha384"],
  "RSA-PSS-SHA512": ["rsa_pss_pss_sha512"],
  ALL: [...ALL_SCHEMES],
};
const OTHER_SIGNS = new Set([
  "RSA-SHA1", "RSA-SHA224", "RSA-SHA256", "RSA-SHA384", "RSA-SHA512", "RSA-MD5", "DSA-SHA1", "DSA-SHA224", "DSA-SHA256",
  "ECDSA-SHA1", "ECDSA-SHA224", "DSA-SHA384", "DSA-SHA512",
  "GOSTR341012-512", "GOSTR341012-256", "GOSTR341001", "GOST-ALL", "RSA-RAW", "RSA-RMD160", "RSA-MD2",
  "ECDSA-SHA3-224", "ECDSA-SHA3-256", "ECDSA-SHA3-384", "ECDSA-SHA3-512", "RSA-SHA3-224", "RSA-SHA3-256",
  "RSA-SHA3-384", "RSA-SHA3-512", "DSA-SHA3-224", "DSA-SHA3-256", "DSA-SHA3-384", "DSA-SHA3-512",
]);
const KX_TOKENS = new Set([
  "RSA", "DHE-RSA", "DHE-DSS", "ECDHE-RSA", "ECDHE-ECDSA", "ANON-DH", "ANON-ECDH", "PSK", "DHE-PSK", "ECDHE-PSK",
  "RSA-PSK", "SRP", "SRP-RSA", "SRP-DSS", "RSA-EXPORT", "VKO-GOST-12", "KX-GOST-ALL", "KX-ALL",
]);
const MAC_TOKENS = new Set(["SHA1", "SHA256", "SHA384", "SHA512", "MD5", "AEAD", "UMAC-96", "UMAC-128", "GOST28147-TC26Z-IMIT", "MAC-GOST-ALL", "MAC-ALL"]);
const OLD_VERSIONS = new Set(["SSL3.0", "TLS1.0", "TLS1.1", "TLS1.2", "DTLS0.9", "DTLS1.0", "DTLS1.2", "DTLS-ALL"]);
const PROFILES = new Set<SecurityProfile>(["VERY_WEAK", "LOW", "LEGACY", "MEDIUM", "HIGH", "ULTRA", "FUTURE", "SUITEB128", "SUITEB192"]);
const HARMLESS_FLAGS = new Set([
  "SERVER_PRECEDENCE", "COMPAT", "DUMBFW", "NO_TICKETS", "NO_TICKETS_TLS12", "NO_ETM", "FORCE_ETM", "NO_SESSION_HASH",
  "FORCE_SESSION_HASH", "NO_STATUS_REQUEST", "SSL3_RECORD_VERSION", "LATEST_RECORD_VERSION", "ALLOW_SMALL_RECORDS",
  "SAFE_RENEGOTIATION", "UNSAFE_RENEGOTIATION", "PARTIAL_RENEGOTIATION", "DISABLE_SAFE_RENEGOTIATION",
  "VERIFY_ALLOW_SIGN_RSA_MD5", "VERIFY_ALLOW_SIGN_WITH_SHA1", "VERIFY_DISABLE_CRL_CHECKS", "VERIFY_ALLOW_X509_V1_CA_CRT",
  "DISABLE_WILDCARDS", "NO_EXTENSIONS_TLS12", "STATELESS_COMPRESSION", "NO_SHUFFLE_EXTENSIONS",
  "VERIFY_ALLOW_BROKEN", "FALLBACK_SCSV", "NEW_PADDING", "DISABLE_TLS13_COMPAT_MODE",
]);

function tokenError(token: string, why: string): TlsError {
  return new TlsError("TLS_PRIORITY_TOKEN", `priority string token ${JSON.stringify(token)}: ${why}`);
}

function edit<T>(list: T[], items: readonly T[], add: boolean): void {
  for (const item of items) {
    const i = list.indexOf(item);
    if (add) {
      if (i < 0) list.push(item);
    } else if (i >= 0) {
      list.splice(i, 1);
    }
  }
}

export function parsePriority(priority: string): TlsSettings {
  const tokens = priority.split(":").map((t) => t.trim());
  const first = (tokens.shift() ?? "").toUpperCase();
  if (first.startsWith("@")) throw tokenError(first, "system-wide priority keywords are not supported");
  const keyword = KEYWORDS[first];
  if (!keyword) throw tokenError(first, "unknown initial keyword (NORMAL, SECURE128, SECURE256, PERFORMANCE, NONE, ...)");
  const lists = keyword();
  const legacy: LegacyLists = { tls12: first !== "NONE", openpgp: false, kx: new Set(first === "NONE" ? [] : ["ECDHE-RSA", "DHE-RSA"]) };
  let profile: SecurityProfile | null = null;

  for (const raw of tokens) {
    // GnuTLS's gnutls_priority_init refuses the whole string (-50): the
    // reference, which sets it at each connection, would then serve no one.
    if (raw === "") throw tokenError(raw, "an empty element (a colon at the end, or two in a row), which GnuTLS refuses");
    const prefix = raw[0]!;
    const name = raw.slice(1).toUpperCase();
    if (prefix === "%") {
      const profileName = name.startsWith("PROFILE_") ? name.slice("PROFILE_".length) : "";
      if (PROFILES.has(profileName as SecurityProfile)) profile = profileName as SecurityProfile;
      else if (!HARMLESS_FLAGS.has(name)) {
        throw tokenError(raw, name === "NO_EXTENSIONS" ? "TLS 1.3 cannot work without extensions" : "unknown or unsupported flag");
      }
      continue;
    }
    if (prefix !== "+" && prefix !== "-" && prefix !== "!") {
      throw tokenError(raw, "a modifier must start with +, -, ! or %");
    }
    const add = prefix === "+";
    if (name.startsWith("VERS-")) {
      const v = name.slice(5);
      if (v === "TLS1.3") lists.tls13 = add;
      else if (v === "TLS1.2") legacy.tls12 = add;
      else if (v === "ALL" || v === "TLS-ALL") lists.tls13 = legacy.tls12 = add;
      else if (!OLD_VERSIONS.has(v)) throw tokenError(raw, "unknown protocol version");
      continue;
    }
    if (name.startsWith("CTYPE-")) {
      const t = name.replace(/^CTYPE-(CLI-|SRV-)?/, "");
      if (t === "RAWPK") lists.rawpk = add;
      else if (t === "OPENPGP") legacy.openpgp = add;
      else if (t === "ALL") lists.rawpk = legacy.openpgp = add;
      else if (t !== "X.509" && t !== "X509") throw tokenError(raw, "unknown certificate type");
      continue;
    }
    if (name.startsWith("GROUP-") || name.startsWith("CURVE-")) {
      const g = name.slice(6);
      // Taking ALL away takes every group, the ones only named too, as GnuTLS's.
      const groups = add ? GROUP_TOKENS[g] : (REMOVE_GROUP_TOKENS[g] ?? GROUP_TOKENS[g]);
      if (groups) edit(lists.groups, groups, add);
      else if (!OTHER_GROUPS.has(g)) throw tokenError(raw, "unknown group");
      continue;
    }
    if (name.startsWith("SIGN-")) {
      const s = name.slice(5);
      const schemes = SIGN_TOKENS[s];
      if (schemes) edit(lists.schemes, schemes, add);
      else if (!OTHER_SIGNS.has(s)) throw tokenError(raw, "unknown signature algorithm");
      continue;
    }
    const suites = CIPHER_TOKENS[name];
    if (suites) {
      edit(lists.suites, suites, add);
      continue;
    }
    if (name === "ECDHE-RSA" || name === "DHE-RSA") {
      if (add) legacy.kx.add(name);
      else legacy.kx.delete(name);
      continue;
    }
    if (name === "KX-ALL") {
      for (const kx of ["ECDHE-RSA", "DHE-RSA"] as const) {
        if (add) legacy.kx.add(kx);
        else legacy.kx.delete(kx);
      }
      continue;
    }
    if (OTHER_CIPHERS.has(name) || KX_TOKENS.has(name) || MAC_TOKENS.has(name) || /^COMP-(NULL|DEFLATE|ALL)$/.test(name)) continue;
    throw tokenError(raw, "unknown token");
  }

  const legacySettings = legacyFrom(lists, legacy);
  const modern = lists.tls13 && lists.rawpk;
  if (!modern && !legacySettings) {
    if (legacy.tls12 && legacy.openpgp) throw tokenError(priority, "no TLS 1.2 cipher suite is enabled (AES-256-GCM or CHACHA20-POLY1305, with ECDHE-RSA or DHE-RSA)");
    if (lists.rawpk) throw tokenError(priority, "TLS 1.3 (VERS-TLS1.3) is not enabled; raw public keys need it here (TLS 1.2 serves OpenPGP clients only)");
    if (legacy.openpgp) throw tokenError(priority, "TLS 1.2 (VERS-TLS1.2) is not enabled; OpenPGP certificates need it");
    throw tokenError(priority, "neither raw public keys (CTYPE-RAWPK) nor OpenPGP certificates (CTYPE-OPENPGP) are enabled; Mandos clients need one");
  }
  if (modern) {
    if (lists.suites.length === 0) throw tokenError(priority, "no TLS 1.3 cipher suite is enabled");
    if (lists.groups.length === 0) throw tokenError(priority, "no key exchange group is enabled");
    if (lists.schemes.length === 0) throw tokenError(priority, "no signature algorithm is enabled");
  }

  // X25519 first: as a client role we choose the order we offer, and an
  // X25519 agreement costs a third of a P-256 one here (bench/micro.ts).
  // The priority string still decides which groups are allowed at all.
  const groups = !modern ? [] : lists.groups.includes("x25519") ? ["x25519" as const, ...lists.groups.filter((g) => g !== "x25519")] : lists.groups;
  const keyShareGroups: NamedGroup[] = modern ? [groups[0]!] : [];
  // The reference's GnuTLS serves raw public keys over TLS 1.2 too when the
  // string leaves VERS-TLS1.2 on (a keyword does, unless !VERS-ALL or
  // -VERS-TLS1.2 takes it away); ours serves them over TLS 1.3 only
  // (docs/DIFFERENCES.md), and TLS 1.2 is for OpenPGP.
  const ignored = modern && legacy.tls12 && !legacy.openpgp
    ? ["TLS 1.2 (VERS-TLS1.2) without CTYPE-OPENPGP has no effect here: raw public keys are served over TLS 1.3 only, so a client limited to TLS 1.2 gets no secret"]
    : [];
  return {
    cipherSuites: modern ? lists.suites : [],
    groups,
    keyShareGroups,
    signatureSchemes: modern ? lists.schemes : [],
    profile,
    priority,
    modern,
    legacy: legacySettings,
    ignored,
  };
}

/**
 * The TLS 1.2 offer: the AEAD suites whose cipher (AES-256-GCM,
 * CHACHA20-POLY1305, the same tokens as TLS 1.3's) and key exchange
 * (ECDHE-RSA, DHE-RSA) the string enables, ECDHE first; the curves and
 * signature algorithms a legacy client's SECURE256 accepts (docs/PROTOCOL.md).
 */
function legacyFrom(lists: Lists, legacy: LegacyLists): LegacySettings | null {
  if (!legacy.tls12 || !legacy.openpgp) return null;
  const cipherOn = (cipher: string) =>
    cipher === "aes-256-gcm" ? lists.suites.includes("TLS_AES_256_GCM_SHA384") : lists.suites.includes("TLS_CHACHA20_POLY1305_SHA256");
  const suites = TLS12_SUITES.filter((s) => legacy.kx.has(s.kx === "ECDHE_RSA" ? "ECDHE-RSA" : "DHE-RSA") && cipherOn(s.cipher)).map((s) => s.code);
  if (suites.length === 0) return null;
  return { suites, groups: Object.values(TLS12_CURVES), signatures: Object.values(TLS12_SIGNATURES) };
}
