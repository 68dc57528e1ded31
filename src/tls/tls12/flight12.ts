// The TLS 1.2 client role's expensive step as one pure function, the
// counterpart of flight.ts for legacy peers: given the transcript up to
// ServerHelloDone and the server's Certificate and ServerKeyExchange,
// check the OpenPGP certificate, verify the key exchange signature with its
// primary key, do the (EC)DHE agreement, derive the master secret and the
// key block, and build our whole flight (ClientKeyExchange,
// change_cipher_spec, Finished) and the server's expected Finished. It
// runs inline or on a worker (src/workers/handshake.ts); input and output
// are plain data. One task per handshake: the server's flight is plaintext,
// so the main thread knows when it is whole (ServerHelloDone) at no cost.
// Unlike the TLS 1.3 flight task it is async: the OpenPGP key is checked by
// OpenPGP.js (openpgp-cert.ts), whose API is.
//
// Validation, step by step, each failure one alert:
//   1. ServerKeyExchange framing                         -> decode_error / illegal_parameter
//   2. its signature algorithm was offered                -> illegal_parameter
//   3. ECDHE: a curve of TLS12_CURVES (secp384r1, secp521r1);
//      DHE: a prime in MIN/MAX_DH_PRIME_BITS, 1 < g, Ys < p-1 -> illegal_parameter / insufficient_security
//   4. the Certificate's framing (messages12.ts), then the OpenPGP
//      key (openpgp-cert.ts): its key packet read, and before
//      anything dear (OpenPGP.js, the self-signatures)
//   5. the signature verifies with the primary key        -> decrypt_error
//      and then its fingerprint is one a client has (the
//      known-key table, known-keys.ts), so that a peer is
//      "not found" only once it proved it holds the key   -> access_denied
//      the rest of the key: OpenPGP.js, self-signatures
//   6. the agreement succeeds (a point on the curve)       -> illegal_parameter

import { createECDH, createHash, type KeyObject } from "node:crypto";
import { ContentType, HandshakeType } from "../constants.js";
import { TlsError, tlsErrorAs, toErrorData, type TlsErrorData } from "../errors.js";
import { dheShare } from "../ffdhe.js";
import type { FlightContext } from "../flight.js";
import { mayBeKnown } from "../known-keys.js";
import { CHANGE_CIPHER_SPEC, handshakeHeader, plainRecord } from "../record.js";
import { finished12, keyBlock12, masterSecret12, seal12, type Tls12Keys } from "./crypto12.js";
import { encodeClientKeyExchange, parseOpenPgpCertificateMessage, parseServerKeyExchange, serverKeyExchangeContent } from "./messages12.js";
import { checkTransferableKey } from "./openpgp-cert.js";
import {
  CURVE_POINT_LENGTH,
  MAX_DH_PRIME_BITS,
  MIN_DH_PRIME_BITS,
  tls12CurveByCode,
  tls12SignatureByCode,
  tls12SuiteByCode,
  type Tls12Suite,
} from "./suites.js";

export interface Tls12FlightTask {
  readonly kind: "tls12-flight";
  readonly suite: number;
  readonly clientRandom: Uint8Array;
  readonly serverRandom: Uint8Array;
  /** ClientHello..ServerHelloDone, whole handshake messages back to back. */
  readonly transcript: Uint8Array;
  /** The bodies (no header) of Certificate and ServerKeyExchange. */
  readonly certificate: Uint8Array;
  readonly serverKeyExchange: Uint8Array;
  readonly extendedMasterSecret: boolean;
  /** Signature algorithms we offered for TLS 1.2 (code points). */
  readonly offeredSignatures: readonly number[];
}

export type Tls12FlightResult =
  | {
      readonly status: "complete";
      readonly fingerprint: string;
      readonly group: string;
      readonly signatureScheme: string;
      /** ClientKeyExchange, change_cipher_spec, Finished (protected), as records. */
      readonly clientFlight: Uint8Array;
      /** The 12 bytes the server's Finished must carry. */
      readonly expectedServerFinished: Uint8Array;
      readonly clientKeys: Tls12Keys;
      readonly serverKeys: Tls12Keys;
    }
  | { readonly status: "error"; readonly error: TlsErrorData };

/** Runs the task; never rejects. */
export async function processTls12Flight(task: Tls12FlightTask, context: FlightContext = {}): Promise<Tls12FlightResult> {
  try {
    const suite = tls12SuiteByCode(task.suite);
    if (!suite) throw new TlsError("TLS_INTERNAL", "unknown TLS 1.2 suite in task");
    // Step 1.
    const ske = parseServerKeyExchange(Buffer.from(task.serverKeyExchange), suite.kx);
    // Step 2.
    const scheme = tls12SignatureByCode(ske.signatureScheme);
    if (!scheme || !task.offeredSignatures.includes(ske.signatureScheme)) {
      throw tlsErrorAs("GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM", "TLS_ILLEGAL_PARAMETER", `signature algorithm 0x${ske.signatureScheme.toString(16)} was not offered`);
    }
    // Step 3 (cheap) before the certificate's signatures (dear).
    const ex = ske.exchange;
    let group: string;
    if (ex.kind === "ecdhe") {
      const curve = tls12CurveByCode(ex.curve);
      if (!curve) throw new TlsError("TLS_ILLEGAL_PARAMETER", `curve 0x${ex.curve.toString(16)} is not one we accept in TLS 1.2`);
      if (ex.point.length !== CURVE_POINT_LENGTH[curve] || ex.point[0] !== 4) throw new TlsError("TLS_ILLEGAL_PARAMETER", `bad ${curve} point`);
      group = curve;
    } else {
      const bits = bitLength(ex.p);
      if (bits > MAX_DH_PRIME_BITS) throw new TlsError("TLS_ILLEGAL_PARAMETER", `DH prime of ${bits} bits`);
      if (bits < MIN_DH_PRIME_BITS) throw new TlsError("TLS_INSUFFICIENT_SECURITY", `DH prime of ${bits} bits`);
      const p = toBig(ex.p);
      const g = toBig(ex.g);
      const ys = toBig(ex.ys);
      if (p % 2n === 0n || g <= 1n || g >= p - 1n || ys <= 1n || ys >= p - 1n) throw new TlsError("TLS_ILLEGAL_PARAMETER", "bad DH parameters");
      group = `ffdhe-${bits}`;
    }
    // Steps 4 and 5.
    const table = context.knownKeys;
    const framed = parseOpenPgpCertificateMessage(task.certificate);
    const signed = serverKeyExchangeContent(task.clientRandom, task.serverRandom, ske.params);
    const admit = (fingerprint: string): void => {
      if (table && !mayBeKnown(table, fingerprint)) throw new TlsError("TLS_UNKNOWN_PEER_KEY", "the key belongs to no client", undefined, -1, fingerprint);
    };
    const prove = (key: KeyObject): void => {
      if (!ske.verify(key, signed)) throw new TlsError("TLS_DECRYPT_ERROR", "ServerKeyExchange signature does not verify");
    };
    const cert = await checkTransferableKey(framed.key, framed.keyId, admit, undefined, prove);
    // Step 6.
    let publicValue: Buffer;
    let preMaster: Buffer;
    try {
      if (ex.kind === "ecdhe") {
        const ecdh = createECDH(group);
        publicValue = ecdh.generateKeys();
        preMaster = ecdh.computeSecret(ex.point);
      } else {
        // Not createDiffieHellman: it runs OpenSSL's DH_check on the
        // peer's prime, a primality test of seconds for 4,096 bits (ffdhe.ts).
        const dh = dheShare(ex.p, ex.g, bitLength(ex.p));
        publicValue = dh.publicValue;
        preMaster = dh.agree(ex.ys);
      }
    } catch {
      throw new TlsError("TLS_ILLEGAL_PARAMETER", `invalid ${group} share`);
    }
    return finish(task, suite, cert.fingerprint, group, scheme, publicValue, preMaster);
  } catch (error) {
    return { status: "error", error: toErrorData(error) };
  }
}

function finish(task: Tls12FlightTask, suite: Tls12Suite, fingerprint: string, group: string, scheme: string, publicValue: Buffer, preMaster: Buffer): Tls12FlightResult {
  const cke = encodeClientKeyExchange(suite.kx, publicValue);
  const hash = (parts: Uint8Array[]) => {
    const h = createHash(suite.hash);
    for (const p of parts) h.update(p);
    return h.digest();
  };
  const master = task.extendedMasterSecret
    ? masterSecret12(suite, preMaster, { sessionHash: hash([task.transcript, cke]) })
    : masterSecret12(suite, preMaster, { clientRandom: task.clientRandom, serverRandom: task.serverRandom });
  const keys = keyBlock12(suite, master, task.clientRandom, task.serverRandom);
  const fin = handshakeHeader(HandshakeType.Finished, finished12(suite, master, "client", hash([task.transcript, cke])));
  const expectedServerFinished = finished12(suite, master, "server", hash([task.transcript, cke, fin]));
  return {
    status: "complete",
    fingerprint,
    group,
    signatureScheme: scheme,
    clientFlight: Buffer.concat([plainRecord(ContentType.Handshake, cke), CHANGE_CIPHER_SPEC, seal12(suite, keys.client, 0n, ContentType.Handshake, fin)]),
    expectedServerFinished,
    clientKeys: keys.client,
    serverKeys: keys.server,
  };
}

function bitLength(b: Uint8Array): number {
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  return i === b.length ? 0 : (b.length - i - 1) * 8 + (32 - Math.clz32(b[i]!));
}

function toBig(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt(`0x${Buffer.from(b).toString("hex")}`);
}
