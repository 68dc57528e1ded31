// The connected state shared by both roles: application data under the
// application traffic keys (RFC 8446 §7.3), post-handshake messages
// (NewSessionTicket ignored, KeyUpdate honoured, §4.6) and closure alerts
// (§6.1). Sequence numbers start at 0 for each key (§5.3).

import { AlertDescription, ContentType, HandshakeType, type CipherSuiteInfo } from "./constants.js";
import { nextTrafficSecret, openRecord, sealRecord, trafficKeys, type TrafficKeys } from "./crypto.js";
import { TlsError, malformedAlertError, peerAlertError } from "./errors.js";
import { encodeKeyUpdate, parseKeyUpdate } from "./messages.js";
import { MAX_KEY_UPDATES, MAX_PLAINTEXT } from "./limits.js";
import { HandshakeAssembler, bufferView, type RawRecord } from "./record.js";
import { ClosingRecordWriter } from "./record-writer.js";

interface Direction {
  secret: Uint8Array;
  /** Made when first needed: the server role's secret goes out with our close_notify, and the peer's answer seldom arrives before we close. */
  keys: TrafficKeys | null;
  seq: bigint;
}

export type ChannelInput =
  | { readonly kind: "data"; readonly data: Buffer }
  | { readonly kind: "closed" }
  | { readonly kind: "none" };

/**
 * The write sequence number at which a close_notify sealed with the flight
 * (flight.ts) is ours to send: after one record of application data, the
 * secret a Mandos server sends before it closes.
 */
export const CLOSE_NOTIFY_SEQUENCE = 1n;

export class ApplicationChannel extends ClosingRecordWriter {
  readonly #suite: CipherSuiteInfo;
  readonly #read: Direction;
  readonly #write: Direction;
  readonly #post = new HandshakeAssembler();
  #keyUpdates = 0;
  #readClosed = false;
  /** Our close_notify sealed under the first write keys at CLOSE_NOTIFY_SEQUENCE, until it is sent or can no longer be. */
  #closeNotify: Uint8Array | null;

  /**
   * `writeKeys`: our write key and IV when the handshake made them already
   * (a flight task); else made at the first record. `closeNotify`: our
   * close_notify sealed under `writeKeys` at CLOSE_NOTIFY_SEQUENCE, sent
   * as it is if our close comes there, sealed again otherwise.
   */
  constructor(suite: CipherSuiteInfo, readSecret: Uint8Array, writeSecret: Uint8Array, writeKeys?: TrafficKeys, closeNotify?: Uint8Array) {
    super();
    this.#suite = suite;
    this.#read = { secret: readSecret, keys: null, seq: 0n };
    this.#write = { secret: writeSecret, keys: writeKeys ?? null, seq: 0n };
    this.#closeNotify = writeKeys && closeNotify ? closeNotify : null;
  }

  /** Handles one record from the peer; `out` collects anything we must send in answer. */
  receive(record: RawRecord, out: Buffer[]): ChannelInput {
    if (this.#readClosed) return { kind: "none" };
    if (record.type !== ContentType.ApplicationData) {
      throw new TlsError("TLS_UNEXPECTED_MESSAGE", `unprotected record type ${record.type} after the handshake`);
    }
    const opened = openRecord(this.#suite, this.#keysOf(this.#read), this.#read.seq++, record.header, record.body);
    switch (opened.type) {
      case ContentType.ApplicationData:
        return { kind: "data", data: Buffer.from(opened.content) };
      case ContentType.Alert: {
        if (opened.content.length !== 2) throw malformedAlertError();
        if (opened.content[1] === AlertDescription.CloseNotify) {
          this.#readClosed = true;
          return { kind: "closed" };
        }
        throw peerAlertError(opened.content[1]!, opened.content[0]);
      }
      case ContentType.Handshake:
        this.#post.push(opened.content);
        for (let msg = this.#post.next(); msg; msg = this.#post.next()) {
          if (msg.type === HandshakeType.NewSessionTicket) continue; // We never resume.
          if (msg.type !== HandshakeType.KeyUpdate) {
            throw new TlsError("TLS_UNEXPECTED_MESSAGE", `handshake message ${msg.type} after the handshake`);
          }
          if (++this.#keyUpdates > MAX_KEY_UPDATES) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "KeyUpdate flood");
          // RFC 8446 §5.1: a KeyUpdate must end its record.
          if (this.#post.partial) throw new TlsError("TLS_UNEXPECTED_MESSAGE", "KeyUpdate not at a record boundary");
          const { requestUpdate } = parseKeyUpdate(msg.body);
          this.#rekey(this.#read);
          if (requestUpdate && !this.writeClosed) {
            out.push(this.seal(ContentType.Handshake, encodeKeyUpdate(false)));
            this.#rekey(this.#write);
          }
        }
        return { kind: "none" };
      default:
        throw new TlsError("TLS_UNEXPECTED_MESSAGE", `protected record of type ${opened.type}`);
    }
  }

  /** Protects application data, in records of at most 2^14 bytes. */
  send(data: Uint8Array, out: Buffer[]): void {
    if (this.writeClosed) throw new TlsError("TLS_CLOSED", "write after close_notify");
    for (let i = 0; i < data.length; i += MAX_PLAINTEXT) {
      out.push(this.seal(ContentType.ApplicationData, data.subarray(i, Math.min(data.length, i + MAX_PLAINTEXT))));
    }
  }

  /** Sends a KeyUpdate and switches our write keys (RFC 8446 §4.6.3). */
  keyUpdate(requestUpdate: boolean, out: Buffer[]): void {
    if (this.writeClosed) return;
    out.push(this.seal(ContentType.Handshake, encodeKeyUpdate(requestUpdate)));
    this.#rekey(this.#write);
  }

  /** The flight's sealed close_notify when our close comes at CLOSE_NOTIFY_SEQUENCE under the first keys; sealed here otherwise. */
  protected override sealCloseNotify(): Buffer {
    const sealed = this.#closeNotify;
    this.#closeNotify = null;
    if (sealed === null || this.#write.seq !== CLOSE_NOTIFY_SEQUENCE) return super.sealCloseNotify();
    this.#write.seq++;
    return bufferView(sealed);
  }

  protected seal(type: number, content: Uint8Array): Buffer {
    return sealRecord(this.#suite, this.#keysOf(this.#write), this.#write.seq++, type, content);
  }

  #keysOf(d: Direction): TrafficKeys {
    d.keys ??= trafficKeys(this.#suite, d.secret);
    return d.keys;
  }

  #rekey(d: Direction): void {
    d.secret = nextTrafficSecret(this.#suite, d.secret);
    d.keys = null;
    d.seq = 0n;
    // Sealed under the keys just retired.
    if (d === this.#write) this.#closeNotify = null;
  }
}
