// A TLS server role that misbehaves on request: what a broken or hostile
// TLS server (a fake mandos-client) would send to the Mandos server's client
// role. It overrides the two steps TlsServer builds its encrypted flight
// with, so the engine itself carries no fault code.

import {
  certificateVerifyContent,
  makeSignature,
} from "../../src/tls/crypto.js";
import { HandshakeType, type SignatureScheme } from "../../src/tls/constants.js";
import {
  encodeCertificateVerify,
  encodeEncryptedExtensions,
  encodeFinished,
  encodeRawKeyCertificate,
} from "../../src/tls/messages.js";
import { Writer } from "../../src/tls/reader.js";
import { handshakeHeader } from "../../src/tls/record.js";
import { TlsServer, type ServerFlightContext, type ServerIdentity } from "../../src/tls/server.js";
import type { TlsSettings } from "../../src/tls/index.js";

export interface ServerFaults {
  /** Present this SPKI instead of our own (the signature then cannot verify). */
  readonly presentKey?: Buffer;
  /** Sign with this scheme whatever the key and whatever the client offered. */
  readonly scheme?: SignatureScheme;
  /** Flip a bit in the Finished MAC. */
  readonly badFinished?: boolean;
  /** Flip a bit in the signature. */
  readonly badSignature?: boolean;
  /** Send Certificate before EncryptedExtensions. */
  readonly outOfOrder?: boolean;
  /** Leave server_certificate_type out of EncryptedExtensions (X.509 implied). */
  readonly noRawKey?: boolean;
  /** Extensions (the whole block, its length prefix included) in the Certificate entry. */
  readonly entryExtensions?: Buffer;
  /** Split the encrypted flight into records of this many bytes. */
  readonly fragment?: number;
}

export class FaultyServer extends TlsServer {
  readonly #identity: ServerIdentity;
  readonly #faults: ServerFaults;

  constructor(settings: TlsSettings, identity: ServerIdentity, faults: ServerFaults = {}) {
    super(settings, identity);
    this.#identity = identity;
    this.#faults = faults;
  }

  /** Sends a NewSessionTicket the client must ignore (it never resumes). */
  sendTicket(): void {
    // lifetime, age_add, nonce, ticket, no extensions (RFC 8446 §4.6.1).
    const body = Buffer.from("0000a8c0" + "01020304" + "01" + "00" + "0004" + "deadbeef" + "0000", "hex");
    this.sendHandshakeMessage(handshakeHeader(HandshakeType.NewSessionTicket, body));
  }

  protected override selectScheme(offered: readonly number[]): SignatureScheme | undefined {
    return this.#faults.scheme ?? super.selectScheme(offered);
  }

  protected override encryptedFlight(c: ServerFlightContext): Buffer[] {
    const f = this.#faults;
    const ee = encodeEncryptedExtensions(!f.noRawKey);
    const spki = f.presentKey ?? this.#identity.publicKeySpki;
    const cert = f.entryExtensions ? certificateWithExtensions(spki, f.entryExtensions) : encodeRawKeyCertificate(spki);
    const first = f.outOfOrder ? [cert, ee] : [ee, cert];
    let signature: Buffer;
    try {
      signature = makeSignature(c.scheme, this.#identity.privateKey, certificateVerifyContent("server", c.transcriptHash(first)));
    } catch {
      signature = Buffer.alloc(64, 1); // a scheme our key cannot sign with
    }
    if (f.badSignature) signature[signature.length - 1]! ^= 1;
    const cv = encodeCertificateVerify(c.scheme, signature);
    const mac = c.finishedMac([...first, cv]);
    if (f.badFinished) mac[0]! ^= 0x80;
    const flight = Buffer.concat([...first, cv, encodeFinished(mac)]);
    const size = f.fragment ?? flight.length;
    const records: Buffer[] = [];
    for (let i = 0; i < flight.length; i += size) records.push(flight.subarray(i, i + size));
    return records;
  }
}

/** A Certificate whose one entry carries `extensions` (RFC 8446 §4.4.2). */
function certificateWithExtensions(spki: Buffer, extensions: Buffer): Buffer {
  const w = new Writer();
  w.u8(0).open(3).open(3).bytes(spki).close().bytes(extensions).close();
  return handshakeHeader(HandshakeType.Certificate, w.finish());
}
