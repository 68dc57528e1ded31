// Encoding and decoding of the TLS 1.3 handshake messages we exchange
// (RFC 8446 §4), with RFC 7250 certificate-type extensions. Decoders check
// every length and return plain objects; semantic checks (was this offered?)
// belong to the state machines.

import { randomBytes } from "node:crypto";
import {
  CertificateType,
  ExtensionType,
  GROUP_CODES,
  HandshakeType,
  LEGACY_VERSION,
  SIGNATURE_CODES,
  TLS13,
  type NamedGroup,
  type SignatureScheme,
} from "./constants.js";
import { TlsError } from "./errors.js";
import { Reader, Writer } from "./reader.js";
import { handshakeHeader } from "./record.js";

/** RFC 8446 §4.1.3: the ServerHello.random that marks a HelloRetryRequest. */
export const HRR_RANDOM = Buffer.from("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C", "hex");
const DOWNGRADE_12 = Buffer.from("444f574e47524401", "hex");
const DOWNGRADE_11 = Buffer.from("444f574e47524400", "hex");

export interface Extension {
  readonly type: number;
  readonly data: Buffer;
}

export function readExtensions(r: Reader, what: string): Extension[] {
  const list = r.sub(2, `${what} extensions`);
  const out: Extension[] = [];
  const seen = new Set<number>();
  while (list.remaining > 0) {
    const type = list.u16("extension type");
    const data = list.vector(2, "extension data");
    // RFC 8446 §4.2: no two extensions of the same type in one block.
    if (seen.has(type)) throw new TlsError("TLS_ILLEGAL_PARAMETER", `duplicate extension ${type} in ${what}`);
    seen.add(type);
    out.push({ type, data });
  }
  return out;
}

function writeExtension(w: Writer, type: number, body: (w: Writer) => void): void {
  w.u16(type).open(2);
  body(w);
  w.close();
}

// ------------------------------------------------------------ ClientHello

export interface ClientHelloParams {
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cipherSuites: readonly number[];
  readonly groups: readonly NamedGroup[];
  readonly shares: ReadonlyArray<{ readonly group: NamedGroup; readonly publicKey: Uint8Array }>;
  readonly signatureSchemes: readonly SignatureScheme[];
  readonly cookie?: Uint8Array | undefined;
  /** False for a TLS 1.2-only ClientHello (a priority string that serves legacy clients only). Default true. */
  readonly tls13?: boolean;
  /**
   * What the same ClientHello offers legacy (TLS 1.2, OpenPGP) Mandos
   * clients: their suites are in `cipherSuites` already; here the extra
   * groups and signature algorithms and the TLS 1.2 extensions (RFC 6091
   * cert_type, RFC 7627, RFC 5746, RFC 8422 point formats).
   */
  readonly legacy?: { readonly groups: readonly number[]; readonly signatures: readonly number[] } | null;
}

/** The whole ClientHello handshake message (header included). */
export function encodeClientHello(p: ClientHelloParams): Buffer {
  return encodeClientHelloAt(p).message;
}

/**
 * A ClientHello whose per-connection bytes (random, legacy_session_id, the
 * key shares' public keys) are written into a copy of one encoded for the
 * same settings: every connection sends one, and the rest of it (suites,
 * groups, schemes, extensions) never changes. A retry with a cookie is
 * encoded afresh.
 */
export class ClientHelloTemplate {
  readonly #message: Buffer;
  readonly #randomAt: number;
  readonly #sessionIdAt: number;
  readonly #sessionIdLength: number;
  /** Where each share's key goes; none in a TLS 1.2-only ClientHello, which sends no key_share. */
  readonly #shares: ReadonlyArray<{ readonly at: number; readonly group: NamedGroup; readonly length: number }>;

  /** `p`'s random, session ID and share keys are placeholders of the lengths every connection will use. */
  constructor(p: ClientHelloParams) {
    if (p.cookie) throw new Error("a ClientHello with a cookie is not a template");
    const encoded = encodeClientHelloAt(p);
    this.#message = encoded.message;
    this.#randomAt = encoded.randomAt;
    this.#sessionIdAt = encoded.sessionIdAt;
    this.#sessionIdLength = p.sessionId.length;
    this.#shares = encoded.shareAts.map((at, i) => ({ at, group: p.shares[i]!.group, length: p.shares[i]!.publicKey.length }));
  }

  /** Whether `fill` makes the ClientHello of these values: the same groups, and lengths as the template's. */
  fits(sessionId: Uint8Array, shares: ClientHelloParams["shares"]): boolean {
    if (sessionId.length !== this.#sessionIdLength) return false;
    if (this.#shares.length === 0) return true;
    if (shares.length !== this.#shares.length) return false;
    for (let i = 0; i < shares.length; i++) {
      const t = this.#shares[i]!;
      if (shares[i]!.group !== t.group || shares[i]!.publicKey.length !== t.length) return false;
    }
    return true;
  }

  /**
   * The same bytes encodeClientHello gives for the template's settings and
   * these values (check `fits` first), in memory of their own: the
   * connection keeps them as its transcript until the peer's ServerHello,
   * and a slice of Node's shared 8 KiB chunks would keep a whole chunk.
   */
  fill(random: Uint8Array, sessionId: Uint8Array, shares: ClientHelloParams["shares"]): Buffer {
    const out = Buffer.allocUnsafeSlow(this.#message.length);
    this.#message.copy(out);
    out.set(random, this.#randomAt);
    out.set(sessionId, this.#sessionIdAt);
    for (let i = 0; i < this.#shares.length; i++) out.set(shares[i]!.publicKey, this.#shares[i]!.at);
    return out;
  }
}

/** The ClientHello, and where its per-connection bytes lie in it. */
function encodeClientHelloAt(p: ClientHelloParams): { message: Buffer; randomAt: number; sessionIdAt: number; shareAts: number[] } {
  /** The handshake header handshakeHeader puts before the body. */
  const HEADER = 4;
  const shareAts: number[] = [];
  const w = new Writer(512);
  w.u16(LEGACY_VERSION);
  const randomAt = HEADER + w.length;
  w.bytes(p.random);
  w.open(1);
  const sessionIdAt = HEADER + w.length;
  w.bytes(p.sessionId).close();
  w.open(2);
  for (const s of p.cipherSuites) w.u16(s);
  w.close();
  w.u8(1).u8(0);
  const tls13 = p.tls13 ?? true;
  const legacy = p.legacy ?? null;
  w.open(2);
  if (tls13) {
    writeExtension(w, ExtensionType.SupportedVersions, (x) => {
      x.open(1).u16(TLS13);
      if (legacy) x.u16(LEGACY_VERSION);
      x.close();
    });
  }
  const groups = p.groups.map((g) => GROUP_CODES[g]);
  for (const g of legacy?.groups ?? []) if (!groups.includes(g)) groups.push(g);
  writeExtension(w, ExtensionType.SupportedGroups, (x) => {
    x.open(2);
    for (const g of groups) x.u16(g);
    x.close();
  });
  const schemes = p.signatureSchemes.map((s) => SIGNATURE_CODES[s]);
  for (const s of legacy?.signatures ?? []) if (!schemes.includes(s)) schemes.push(s);
  writeExtension(w, ExtensionType.SignatureAlgorithms, (x) => {
    x.open(2);
    for (const s of schemes) x.u16(s);
    x.close();
  });
  if (legacy) {
    // RFC 6091 §3.1 client form: a list, here [OpenPGP (1)]; RFC 7627; RFC 5746 (empty); RFC 8422 [uncompressed].
    writeExtension(w, 9, (x) => x.open(1).u8(1).close());
    writeExtension(w, 23, () => {});
    writeExtension(w, 0xff01, (x) => x.u8(0));
    writeExtension(w, 11, (x) => x.open(1).u8(0).close());
  }
  if (tls13) {
    writeExtension(w, ExtensionType.ServerCertificateType, (x) => x.open(1).u8(CertificateType.RawPublicKey).close());
    writeExtension(w, ExtensionType.KeyShare, (x) => {
      x.open(2);
      for (const s of p.shares) {
        x.u16(GROUP_CODES[s.group]).open(2);
        shareAts.push(HEADER + x.length);
        x.bytes(s.publicKey).close();
      }
      x.close();
    });
  }
  if (p.cookie) writeExtension(w, ExtensionType.Cookie, (x) => x.open(2).bytes(p.cookie!).close());
  w.close();
  const message = handshakeHeader(HandshakeType.ClientHello, w.finish());
  if (message.length !== HEADER + w.length) throw new Error("handshake header is not 4 bytes");
  return { message, randomAt, sessionIdAt, shareAts };
}

export interface ParsedClientHello {
  readonly random: Buffer;
  readonly sessionId: Buffer;
  readonly cipherSuites: number[];
  readonly extensions: Map<number, Buffer>;
  readonly supportedVersions: number[];
  readonly groups: number[];
  readonly shares: Array<{ group: number; key: Buffer }>;
  readonly signatureSchemes: number[];
  /** server_certificate_type list; null when absent (X.509 implied). */
  readonly serverCertTypes: number[] | null;
  readonly cookie: Buffer | null;
}

export function parseClientHello(body: Buffer): ParsedClientHello {
  const r = new Reader(body);
  const version = r.u16("legacy_version");
  if (version !== LEGACY_VERSION) throw new TlsError("TLS_PROTOCOL_VERSION", "ClientHello legacy_version is not TLS 1.2");
  const random = r.bytes(32, "random");
  const sessionId = r.vector(1, "legacy_session_id");
  if (sessionId.length > 32) throw new TlsError("TLS_DECODE", "legacy_session_id longer than 32");
  const suitesRaw = r.sub(2, "cipher_suites", 2);
  const cipherSuites: number[] = [];
  while (suitesRaw.remaining > 0) cipherSuites.push(suitesRaw.u16("cipher suite"));
  const compression = r.vector(1, "legacy_compression_methods", 1);
  if (compression.length !== 1 || compression[0] !== 0) throw new TlsError("TLS_ILLEGAL_PARAMETER", "compression offered");
  const extList = readExtensions(r, "ClientHello");
  r.end("ClientHello");
  const extensions = new Map(extList.map((e) => [e.type, e.data]));

  const supportedVersions: number[] = [];
  const sv = extensions.get(ExtensionType.SupportedVersions);
  if (sv) {
    const s = new Reader(sv).sub(1, "supported_versions", 2);
    while (s.remaining > 0) supportedVersions.push(s.u16());
  }
  const groups: number[] = [];
  const sg = extensions.get(ExtensionType.SupportedGroups);
  if (sg) {
    const s = new Reader(sg).sub(2, "supported_groups", 2);
    while (s.remaining > 0) groups.push(s.u16());
  }
  const shares: Array<{ group: number; key: Buffer }> = [];
  const ks = extensions.get(ExtensionType.KeyShare);
  if (ks) {
    const s = new Reader(ks).sub(2, "client_shares");
    while (s.remaining > 0) {
      const group = s.u16("key share group");
      shares.push({ group, key: s.vector(2, "key_exchange", 1) });
    }
  }
  const signatureSchemes: number[] = [];
  const sa = extensions.get(ExtensionType.SignatureAlgorithms);
  if (sa) {
    const s = new Reader(sa).sub(2, "signature_algorithms", 2);
    while (s.remaining > 0) signatureSchemes.push(s.u16());
  }
  let serverCertTypes: number[] | null = null;
  const sct = extensions.get(ExtensionType.ServerCertificateType);
  if (sct) serverCertTypes = [...new Reader(sct).vector(1, "server_certificate_type", 1)];
  const ck = extensions.get(ExtensionType.Cookie);
  const cookie = ck ? new Reader(ck).vector(2, "cookie", 1) : null;
  return { random, sessionId, cipherSuites, extensions, supportedVersions, groups, shares, signatureSchemes, serverCertTypes, cookie };
}

// ------------------------------------------------------------ ServerHello

export interface ParsedServerHello {
  readonly isRetry: boolean;
  readonly random: Buffer;
  readonly sessionId: Buffer;
  readonly cipherSuite: number;
  readonly extensions: Extension[];
  /** ServerHello: the server's share; HelloRetryRequest: null. */
  readonly keyShare: { group: number; key: Buffer } | null;
  /** HelloRetryRequest: the selected group. */
  readonly selectedGroup: number | null;
  readonly cookie: Buffer | null;
}

export function parseServerHello(body: Buffer): ParsedServerHello {
  const r = new Reader(body);
  const version = r.u16("legacy_version");
  if (version !== LEGACY_VERSION) throw new TlsError("TLS_PROTOCOL_VERSION", "ServerHello legacy_version is not TLS 1.2");
  const random = r.bytes(32, "random");
  const isRetry = random.equals(HRR_RANDOM);
  const sessionId = r.vector(1, "legacy_session_id_echo");
  const cipherSuite = r.u16("cipher_suite");
  const compression = r.u8("legacy_compression_method");
  if (compression !== 0) throw new TlsError("TLS_ILLEGAL_PARAMETER", "ServerHello compression is not null");
  const extensions = readExtensions(r, "ServerHello");
  r.end("ServerHello");

  let version13 = false;
  let keyShare: ParsedServerHello["keyShare"] = null;
  let selectedGroup: number | null = null;
  let cookie: Buffer | null = null;
  for (const ext of extensions) {
    const x = new Reader(ext.data);
    switch (ext.type) {
      case ExtensionType.SupportedVersions: {
        const v = x.u16("selected_version");
        x.end("supported_versions");
        if (v !== TLS13) throw new TlsError("TLS_ILLEGAL_PARAMETER", "server selected a version we did not offer");
        version13 = true;
        break;
      }
      case ExtensionType.KeyShare:
        if (isRetry) {
          selectedGroup = x.u16("selected_group");
        } else {
          const group = x.u16("key share group");
          keyShare = { group, key: x.vector(2, "key_exchange", 1) };
        }
        x.end("key_share");
        break;
      case ExtensionType.Cookie:
        if (!isRetry) throw new TlsError("TLS_UNSUPPORTED_EXTENSION", "cookie in a ServerHello");
        cookie = x.vector(2, "cookie", 1);
        x.end("cookie");
        break;
      default:
        // RFC 8446 §4.2: an extension we did not offer (pre_shared_key included).
        throw new TlsError("TLS_UNSUPPORTED_EXTENSION", `unexpected extension ${ext.type} in ServerHello`);
    }
  }
  if (!version13) {
    // Without supported_versions this is TLS 1.2 or older (RFC 8446 §4.1.3).
    throw new TlsError("TLS_PROTOCOL_VERSION", "server does not speak TLS 1.3");
  }
  if (!isRetry) {
    const tail = random.subarray(24);
    if (tail.equals(DOWNGRADE_12) || tail.equals(DOWNGRADE_11)) throw new TlsError("TLS_ILLEGAL_PARAMETER", "downgrade sentinel in ServerHello.random");
    if (!keyShare) throw new TlsError("TLS_MISSING_EXTENSION", "ServerHello without key_share");
  } else if (selectedGroup === null && !cookie) {
    // RFC 8446 §4.1.4: an HRR that would not change the ClientHello.
    throw new TlsError("TLS_ILLEGAL_PARAMETER", "HelloRetryRequest changes nothing");
  }
  return { isRetry, random, sessionId, cipherSuite, extensions, keyShare, selectedGroup, cookie };
}

export interface ServerHelloParams {
  readonly retry: boolean;
  readonly random?: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cipherSuite: number;
  readonly keyShare?: { readonly group: NamedGroup; readonly publicKey: Uint8Array };
  readonly selectedGroup?: NamedGroup;
}

export function encodeServerHello(p: ServerHelloParams): Buffer {
  const w = new Writer(256);
  w.u16(LEGACY_VERSION).bytes(p.retry ? HRR_RANDOM : (p.random ?? randomBytes(32)));
  w.open(1).bytes(p.sessionId).close();
  w.u16(p.cipherSuite).u8(0);
  w.open(2);
  writeExtension(w, ExtensionType.SupportedVersions, (x) => x.u16(TLS13));
  if (p.retry && p.selectedGroup) {
    writeExtension(w, ExtensionType.KeyShare, (x) => x.u16(GROUP_CODES[p.selectedGroup!]));
  } else if (p.keyShare) {
    writeExtension(w, ExtensionType.KeyShare, (x) => x.u16(GROUP_CODES[p.keyShare!.group]).open(2).bytes(p.keyShare!.publicKey).close());
  }
  w.close();
  return handshakeHeader(HandshakeType.ServerHello, w.finish());
}

// ---------------------------------------------------- EncryptedExtensions

export function encodeEncryptedExtensions(rawPublicKey: boolean): Buffer {
  const w = new Writer(32);
  w.open(2);
  if (rawPublicKey) writeExtension(w, ExtensionType.ServerCertificateType, (x) => x.u8(CertificateType.RawPublicKey));
  w.close();
  return handshakeHeader(HandshakeType.EncryptedExtensions, w.finish());
}

/** The server certificate type the server chose (RFC 7250 §4.2), or null if it did not say (X.509). */
export function parseEncryptedExtensions(body: Buffer): { serverCertType: number | null } {
  const r = new Reader(body);
  const exts = readExtensions(r, "EncryptedExtensions");
  r.end("EncryptedExtensions");
  let serverCertType: number | null = null;
  for (const ext of exts) {
    const x = new Reader(ext.data);
    switch (ext.type) {
      case ExtensionType.ServerCertificateType:
        serverCertType = x.u8("server_certificate_type");
        x.end("server_certificate_type");
        break;
      case ExtensionType.SupportedGroups:
        // RFC 8446 §4.2.7: the server's preferences, for later; allowed here.
        break;
      case ExtensionType.ServerName:
        // Only valid if we sent server_name, which we never do.
        throw new TlsError("TLS_UNSUPPORTED_EXTENSION", "server_name in EncryptedExtensions");
      default:
        throw new TlsError("TLS_UNSUPPORTED_EXTENSION", `unexpected extension ${ext.type} in EncryptedExtensions`);
    }
  }
  return { serverCertType };
}

// ------------------------------------------------------------ Certificate

/** A Certificate with one raw public key (RFC 7250 §3; RFC 8446 §4.4.2). */
export function encodeRawKeyCertificate(spki: Uint8Array, context: Uint8Array = Buffer.alloc(0)): Buffer {
  const w = new Writer(spki.length + 16);
  w.open(1).bytes(context).close();
  w.open(3);
  w.open(3).bytes(spki).close();
  w.u16(0);
  w.close();
  return handshakeHeader(HandshakeType.Certificate, w.finish());
}

/** An empty Certificate: the answer to a CertificateRequest when we have none. */
export function encodeEmptyCertificate(context: Uint8Array): Buffer {
  const w = new Writer(8);
  w.open(1).bytes(context).close();
  w.u24(0);
  return handshakeHeader(HandshakeType.Certificate, w.finish());
}

export interface CertificateEntry {
  readonly data: Buffer;
  /** The entry's extensions block, unparsed (RFC 8446 §4.4.2). */
  readonly extensions: Buffer;
}

export function parseCertificate(body: Buffer): { context: Buffer; entries: CertificateEntry[] } {
  const r = new Reader(body);
  const context = r.vector(1, "certificate_request_context");
  const list = r.sub(3, "certificate_list");
  r.end("Certificate");
  const entries: CertificateEntry[] = [];
  while (list.remaining > 0) {
    const data = list.vector(3, "cert_data", 1);
    entries.push({ data, extensions: list.vector(2, "certificate entry extensions") });
  }
  return { context, entries };
}

export function parseCertificateRequest(body: Buffer): { context: Buffer } {
  const r = new Reader(body);
  const context = r.vector(1, "certificate_request_context");
  const exts = readExtensions(r, "CertificateRequest");
  r.end("CertificateRequest");
  if (!exts.some((e) => e.type === ExtensionType.SignatureAlgorithms)) {
    throw new TlsError("TLS_MISSING_EXTENSION", "CertificateRequest without signature_algorithms");
  }
  return { context };
}

// ------------------------------------------------------ CertificateVerify

export function encodeCertificateVerify(scheme: SignatureScheme, signature: Uint8Array): Buffer {
  const w = new Writer(signature.length + 8);
  w.u16(SIGNATURE_CODES[scheme]).open(2).bytes(signature).close();
  return handshakeHeader(HandshakeType.CertificateVerify, w.finish());
}

export function parseCertificateVerify(body: Buffer): { scheme: number; signature: Buffer } {
  const r = new Reader(body);
  const scheme = r.u16("signature scheme");
  const signature = r.vector(2, "signature", 1);
  r.end("CertificateVerify");
  return { scheme, signature };
}

// --------------------------------------------------------------- Finished

export function encodeFinished(verifyData: Uint8Array): Buffer {
  return handshakeHeader(HandshakeType.Finished, verifyData);
}

// -------------------------------------------------------------- KeyUpdate

export function encodeKeyUpdate(requestUpdate: boolean): Buffer {
  return handshakeHeader(HandshakeType.KeyUpdate, Buffer.of(requestUpdate ? 1 : 0));
}

export function parseKeyUpdate(body: Buffer): { requestUpdate: boolean } {
  const r = new Reader(body);
  const v = r.u8("request_update");
  r.end("KeyUpdate");
  if (v > 1) throw new TlsError("TLS_ILLEGAL_PARAMETER", "bad KeyUpdate request_update");
  return { requestUpdate: v === 1 };
}

/** RFC 8446 §4.4.1: the synthetic message that replaces ClientHello1 after a HelloRetryRequest. */
export function messageHash(hashOfClientHello1: Uint8Array): Buffer {
  return handshakeHeader(HandshakeType.MessageHash, hashOfClientHello1);
}
