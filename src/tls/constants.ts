// TLS 1.3 code points (RFC 8446 §B; RFC 7250 §3 for certificate types;
// RFC 8422, RFC 7748 and RFC 8446 §4.2.7 for groups) and the names we use
// for them in settings, logs and events.

export const ContentType = { ChangeCipherSpec: 20, Alert: 21, Handshake: 22, ApplicationData: 23 } as const;

export const HandshakeType = {
  ClientHello: 1,
  ServerHello: 2,
  NewSessionTicket: 4,
  EndOfEarlyData: 5,
  EncryptedExtensions: 8,
  Certificate: 11,
  CertificateRequest: 13,
  CertificateVerify: 15,
  Finished: 20,
  KeyUpdate: 24,
  MessageHash: 254,
} as const;

export const ExtensionType = {
  ServerName: 0,
  SupportedGroups: 10,
  SignatureAlgorithms: 13,
  ClientCertificateType: 19,
  ServerCertificateType: 20,
  PreSharedKey: 41,
  EarlyData: 42,
  SupportedVersions: 43,
  Cookie: 44,
  PskKeyExchangeModes: 45,
  SignatureAlgorithmsCert: 50,
  KeyShare: 51,
} as const;

/** RFC 7250 §3 / IANA TLS Certificate Types. */
export const CertificateType = { X509: 0, RawPublicKey: 2 } as const;

export const TLS13 = 0x0304;
export const LEGACY_VERSION = 0x0303;

/** RFC 8446 §6: alert descriptions we send or recognise. */
export const AlertDescription = {
  CloseNotify: 0,
  UnexpectedMessage: 10,
  BadRecordMac: 20,
  RecordOverflow: 22,
  HandshakeFailure: 40,
  BadCertificate: 42,
  UnsupportedCertificate: 43,
  CertificateUnknown: 46,
  IllegalParameter: 47,
  AccessDenied: 49,
  DecodeError: 50,
  DecryptError: 51,
  ProtocolVersion: 70,
  InsufficientSecurity: 71,
  InternalError: 80,
  MissingExtension: 109,
  UnsupportedExtension: 110,
  CertificateRequired: 116,
} as const;

export type CipherSuiteName = "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" | "TLS_AES_128_CCM_SHA256";
export type NamedGroup =
  | "x25519"
  | "secp256r1"
  | "x448"
  | "secp384r1"
  | "secp521r1"
  | "ffdhe2048"
  | "ffdhe3072"
  | "ffdhe4096"
  | "ffdhe6144"
  | "ffdhe8192";
export type SignatureScheme =
  | "ed25519"
  | "ed448"
  | "ecdsa_secp256r1_sha256"
  | "ecdsa_secp384r1_sha384"
  | "ecdsa_secp521r1_sha512"
  | "rsa_pss_rsae_sha256"
  | "rsa_pss_rsae_sha384"
  | "rsa_pss_rsae_sha512"
  | "rsa_pss_pss_sha256"
  | "rsa_pss_pss_sha384"
  | "rsa_pss_pss_sha512";

export interface CipherSuiteInfo {
  readonly name: CipherSuiteName;
  readonly code: number;
  /** node:crypto hash name. */
  readonly hash: "sha256" | "sha384";
  readonly hashLength: number;
  /** node:crypto cipher name. */
  readonly cipher: "aes-128-gcm" | "aes-256-gcm" | "chacha20-poly1305" | "aes-128-ccm";
  readonly keyLength: number;
}

export const CIPHER_SUITES: readonly CipherSuiteInfo[] = [
  { name: "TLS_AES_128_GCM_SHA256", code: 0x1301, hash: "sha256", hashLength: 32, cipher: "aes-128-gcm", keyLength: 16 },
  { name: "TLS_AES_256_GCM_SHA384", code: 0x1302, hash: "sha384", hashLength: 48, cipher: "aes-256-gcm", keyLength: 32 },
  { name: "TLS_CHACHA20_POLY1305_SHA256", code: 0x1303, hash: "sha256", hashLength: 32, cipher: "chacha20-poly1305", keyLength: 32 },
  // RFC 8446 §B.4: AES-128 in CCM with a 16-byte tag (RFC 6655), not CCM_8.
  { name: "TLS_AES_128_CCM_SHA256", code: 0x1304, hash: "sha256", hashLength: 32, cipher: "aes-128-ccm", keyLength: 16 },
];

export const GROUP_CODES: Readonly<Record<NamedGroup, number>> = {
  secp256r1: 0x0017,
  secp384r1: 0x0018,
  secp521r1: 0x0019,
  x25519: 0x001d,
  x448: 0x001e,
  ffdhe2048: 0x0100,
  ffdhe3072: 0x0101,
  ffdhe4096: 0x0102,
  ffdhe6144: 0x0103,
  ffdhe8192: 0x0104,
};

export const SIGNATURE_CODES: Readonly<Record<SignatureScheme, number>> = {
  ecdsa_secp256r1_sha256: 0x0403,
  ecdsa_secp384r1_sha384: 0x0503,
  ecdsa_secp521r1_sha512: 0x0603,
  ed25519: 0x0807,
  ed448: 0x0808,
  rsa_pss_rsae_sha256: 0x0804,
  rsa_pss_rsae_sha384: 0x0805,
  rsa_pss_rsae_sha512: 0x0806,
  rsa_pss_pss_sha256: 0x0809,
  rsa_pss_pss_sha384: 0x080a,
  rsa_pss_pss_sha512: 0x080b,
};

export function suiteByCode(code: number): CipherSuiteInfo | undefined {
  return CIPHER_SUITES.find((s) => s.code === code);
}

export function suiteByName(name: CipherSuiteName): CipherSuiteInfo {
  const suite = CIPHER_SUITES.find((s) => s.name === name);
  if (!suite) throw new Error(`unknown cipher suite ${name}`);
  return suite;
}

/** GROUP_CODES the other way, made once: a ServerHello's group is looked up every handshake. */
const GROUP_BY_CODE: ReadonlyMap<number, NamedGroup> = new Map((Object.keys(GROUP_CODES) as NamedGroup[]).map((g) => [GROUP_CODES[g], g]));

export function groupByCode(code: number): NamedGroup | undefined {
  return GROUP_BY_CODE.get(code);
}

/** SIGNATURE_CODES the other way, made once: a CertificateVerify's scheme is looked up every handshake. */
const SCHEME_BY_CODE: ReadonlyMap<number, SignatureScheme> = new Map((Object.keys(SIGNATURE_CODES) as SignatureScheme[]).map((s) => [SIGNATURE_CODES[s], s]));

export function schemeByCode(code: number): SignatureScheme | undefined {
  return SCHEME_BY_CODE.get(code);
}
