// The settings of one client as clients.conf gives them, after parsing and
// validation: the contract between the configuration parser and the registry.
// Durations are milliseconds; key IDs and fingerprints are already normalised
// (uppercase, no white space), as mandos-clients.conf(5) says they compare.

export interface ClientSettings {
  /** The section name in clients.conf. */
  readonly name: string;
  /** SHA-256 of the client's TLS public key (SPKI DER), 64 uppercase hex digits; "" if absent. */
  readonly keyId: string;
  /** OpenPGP fingerprint (legacy clients), uppercase hex; "" if absent. */
  readonly fingerprint: string;
  /** The bytes sent to the client: base64-decoded `secret`, or the contents of `secfile`. */
  readonly secret: Buffer;
  /** `host`, for the checker's %(host)s. */
  readonly host: string;
  readonly timeout: number;
  readonly extendedTimeout: number;
  readonly interval: number;
  /**
   * The checker command after the file's own interpolation, still holding
   * the runtime `%(attr)s` expansions (mandos-clients.conf(5) EXPANSION).
   */
  readonly checker: string;
  readonly approvedByDefault: boolean;
  readonly approvalDelay: number;
  readonly approvalDuration: number;
  readonly enabled: boolean;
}

/** The reference's `Client.client_defaults` (mandos-clients.conf(5) OPTIONS). */
export const CLIENT_DEFAULTS: Readonly<Record<string, string>> = {
  timeout: "PT5M",
  extended_timeout: "PT15M",
  interval: "PT2M",
  checker: "fping -q -- %%(host)s",
  host: "",
  approval_delay: "PT0S",
  approval_duration: "PT1S",
  approved_by_default: "True",
  enabled: "True",
};

/**
 * Whether `checker` holds `secret` as clients.conf gives it, in base64 (a
 * `%(secret)s` in the checker, which the file's interpolation expands, as
 * the reference's does): white space (a secret's continuation lines) and
 * padding aside. Such a checker's command line shows the secret to every
 * user, and it must never leave this server (etcd).
 */
export function checkerHoldsSecret(checker: string, secret: Buffer): boolean {
  // Base64 without padding is ceil(4n / 3) characters: a shorter checker
  // (every usual one) cannot hold it, and costs no encoding.
  if (secret.length < 6 || checker.length < Math.ceil((4 * secret.length) / 3)) return false;
  return checker.replace(/\s+/g, "").includes(secret.toString("base64").replace(/=+$/, ""));
}

/** Key ID of empty input: an old client release's bad key; it never matches a client. */
export const EMPTY_KEY_ID = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";

/** Normalises a key ID or fingerprint for comparison: uppercase, no white space. */
export function normaliseKeyId(value: string): string {
  return value.replace(/\s+/g, "").toUpperCase();
}
