// Broken legacy clients: OpenPGP certificates made from the recorded
// legacy client's key, whose private key still signs the handshake (so a
// server that reads the certificate at all gets as far with each as its
// checks let it), and TLS 1.2 handshakes our engine breaks on purpose
// (Tls12ServerFaults). With the warning the legacy reference (the Python
// server on GnuTLS 3.5.19) logs for each, found by sending them to it
// (docs/OPERATION.md, "Why a handshake failed";
// test/server-legacy-clients.test.ts compares them again when a GnuTLS 3.5
// build is at hand).

import { readFileSync } from "node:fs";
import * as openpgp from "openpgp";
import { fetchSecret } from "../../src/client/fetch.js";
import { openPgpPacket } from "../../src/client/openpgp-identity.js";
import { DEFAULT_PRIORITY, parsePriority } from "../../src/tls/index.js";
import type { OpenPgpIdentity, Tls12ServerFaults } from "../../src/tls/tls12/server12.js";
import { LEGACY_DATA } from "./legacy-session.js";

export interface LegacyFault {
  readonly name: string;
  /** The certificate's key bytes, in place of the recorded public key. */
  readonly key?: Buffer;
  /** What the client's TLS 1.2 engine breaks. */
  readonly faults?: Tls12ServerFaults;
  /** The legacy reference's warning for it. */
  readonly warning: string;
}

/** The `Handshake failed:` and `Bad certificate:` warnings in a server's log, in order. */
export function loggedWarnings(log: string): string[] {
  return [...log.matchAll(/WARNING: ((?:Handshake failed|Bad certificate): .*)$/gm)].map((m) => m[1]!);
}

/** Our TLS 1.2 client as a legacy mandos-client (`faults`: what it breaks), to `host`; resolves with the secret. */
export function legacyFetch(port: number, identity: OpenPgpIdentity, faults?: Tls12ServerFaults, host = "::1"): Promise<Buffer> {
  return fetchSecret({
    host,
    port,
    identity: { privateKey: identity.privateKey, publicKeySpki: Buffer.alloc(0) },
    settings: parsePriority(DEFAULT_PRIORITY),
    legacy: identity,
    legacyOptions: faults ? { faults } : {},
    timeoutMs: 20_000,
  });
}

export interface KeyPacket {
  readonly tag: number;
  /** The whole packet, header included. */
  readonly bytes: Buffer;
  /** Its body: the bytes after the header. */
  readonly body: Buffer;
}

/** The packets of a well-formed key, old or new format headers (RFC 4880 §4.2), as they lie. */
export function keyPackets(key: Buffer): KeyPacket[] {
  const out: KeyPacket[] = [];
  for (let at = 0; at < key.length; ) {
    const h = key[at]!;
    let tag: number;
    let header: number;
    let length: number;
    if (h & 0x40) {
      tag = h & 0x3f;
      const l0 = key[at + 1]!;
      if (l0 < 192) [header, length] = [2, l0];
      else if (l0 < 224) [header, length] = [3, ((l0 - 192) << 8) + key[at + 2]! + 192];
      else [header, length] = [6, key.readUInt32BE(at + 2)];
    } else {
      tag = (h >> 2) & 0x0f;
      header = 1 + [1, 2, 4][h & 3]!;
      length = key.readUIntBE(at + 1, header - 1);
    }
    out.push({ tag, bytes: key.subarray(at, at + header + length), body: key.subarray(at + header, at + header + length) });
    at += header + length;
  }
  return out;
}

const BAD_CERTIFICATE = "Bad certificate: (unknown error code)";
const INTERNAL_ERROR = "Handshake failed: GnuTLS internal error.";
/** GNUTLS_E_UNEXPECTED_PACKET_LENGTH in GnuTLS 3.5's words (3.7: "Error decoding the received TLS packet."). */
const UNEXPECTED_LENGTH = "Handshake failed: A TLS packet with unexpected length was received.";

/**
 * The log lines a fault costs its source with --debug: `TCP connection
 * from`, `Protocol version`, the warning and our reason. The table is
 * longer than PEER_LINES_BURST allows one source (100, 4 lines a fault), so
 * a test sends it from more than one source, or moves the log's clock on.
 */
export const LINES_A_FAULT = 4;

/** The faults; `publicKey` is the recorded client's (test/data/legacy/pubkey.txt, binary). */
export async function legacyFaults(publicKey: Uint8Array): Promise<LegacyFault[]> {
  const pub = Buffer.from(publicKey);
  const parts = keyPackets(pub);
  const joined = (ps: readonly KeyPacket[]): Buffer => Buffer.concat(ps.map((p) => p.bytes));
  const secret = await openpgp.readPrivateKey({ armoredKey: readFileSync(`${LEGACY_DATA}seckey.txt`, "latin1") });
  const subkey = parts.findIndex((p) => p.tag === 14);
  const flipped = Buffer.from(pub);
  flipped[flipped.indexOf(Buffer.from("legacy-test"))]! ^= 0x20;
  return [
    // Read, and refused by verify_self after the reference's handshake.
    { name: "a self-signature that does not verify (its user ID changed)", key: flipped, warning: BAD_CERTIFICATE },
    { name: "the key packet alone", key: parts[0]!.bytes, warning: BAD_CERTIFICATE },
    { name: "no signature at all", key: joined(parts.filter((p) => p.tag !== 2)), warning: BAD_CERTIFICATE },
    { name: "a subkey without its binding signature", key: joined(parts.filter((p, i) => !(i > subkey && p.tag === 2))), warning: BAD_CERTIFICATE },
    { name: "the user ID's certification before the user ID", key: joined([parts[0]!, parts[2]!, ...parts.slice(1)]), warning: BAD_CERTIFICATE },
    { name: "the user ID before the key", key: joined([parts[1]!, parts[0]!, ...parts.slice(2)]), warning: BAD_CERTIFICATE },
    // Not read: OpenCDK's parse errors.
    { name: "bytes that are no packet", key: Buffer.from("not a key at all, just bytes"), warning: INTERNAL_ERROR },
    { name: "a packet header cut short after the key", key: Buffer.concat([pub, Buffer.of(0x99)]), warning: INTERNAL_ERROR },
    { name: "the secret key", key: Buffer.from(secret.write()), warning: INTERNAL_ERROR },
    { name: "a signature packet that does not parse", key: Buffer.concat([parts[0]!.bytes, openPgpPacket(13, Buffer.from("x")), openPgpPacket(2, Buffer.of(4, 0x13, 1, 8, 0x78))]), warning: INTERNAL_ERROR },
    { name: "the last 40 bytes cut off (inside a signature's MPI)", key: pub.subarray(0, pub.length - 40), warning: "Handshake failed: The scanning of a large integer has failed." },
    { name: "an empty certificate", key: Buffer.alloc(0), warning: UNEXPECTED_LENGTH },
    // The handshake itself.
    { name: "a ServerKeyExchange signature changed", faults: { tamperSignature: true }, warning: "Handshake failed: Public key signature verification has failed." },
    { name: "a Finished changed", faults: { badFinished: true }, warning: "Handshake failed: An error was encountered at the TLS Finished packet calculation." },
    { name: "TLS 1.1 in ServerHello", faults: { version: 0x0302 }, warning: "Handshake failed: No supported cipher suites have been found." },
    { name: "cert_type X.509", faults: { certType: 0 }, warning: "Handshake failed: The certificate type is not supported." },
    { name: "server_certificate_type in ServerHello", faults: { rawKeyExtension: true }, warning: "Handshake failed: An illegal TLS extension was received." },
    { name: "a renegotiation_info that is not empty", faults: { renegotiationInfo: true }, warning: "Handshake failed: Safe renegotiation failed." },
    { name: "a HelloRequest in the flight", faults: { helloRequestInFlight: true }, warning: "Handshake failed: An unexpected TLS handshake packet was received." },
    { name: "a fatal alert instead of Finished", faults: { alertInsteadOfFinished: 40 }, warning: "Handshake failed: A TLS fatal alert has been received." },
    { name: "a suite not offered", faults: { suite: 0x009d }, warning: "Handshake failed: Could not negotiate a supported cipher suite." },
    { name: "a signature algorithm not offered (RSA with SHA-1)", faults: { signatureScheme: 0x0201 }, warning: "Handshake failed: The signature algorithm is not supported." },
    { name: "the flight in records of 7 bytes", faults: { fragment: 7 }, warning: UNEXPECTED_LENGTH },
    { name: "a record of 2^16 - 1 bytes after the ServerHello", faults: { oversizedRecord: true }, warning: UNEXPECTED_LENGTH },
    { name: "gone inside a record after the ServerHello", faults: { cutInsideRecord: true }, warning: UNEXPECTED_LENGTH },
  ];
}
