// The connected state of a TLS 1.2 connection (both roles): application
// data and alerts under the key block's keys, sequence numbers going on
// from the Finished each side sent (RFC 5246 §6.1). No renegotiation: a
// HelloRequest or ClientHello after the handshake is refused with
// no_renegotiation (RFC 5246 §7.2.2), and nothing else of the handshake
// protocol may come.

import { AlertDescription, ContentType } from "../constants.js";
import type { ChannelInput } from "../channel.js";
import type { RecordChannel } from "../endpoint.js";
import { TlsError, malformedAlertError, peerAlertError } from "../errors.js";
import { MAX_PLAINTEXT } from "../limits.js";
import type { RawRecord } from "../record.js";
import { open12, seal12, type Tls12Keys } from "./crypto12.js";
import type { Tls12Suite } from "./suites.js";
import { ClosingRecordWriter } from "../record-writer.js";

/** RFC 5246 §7.2.2. */
export const NO_RENEGOTIATION = 100;

export class Tls12Channel extends ClosingRecordWriter implements RecordChannel {
  readonly #suite: Tls12Suite;
  readonly #readKeys: Tls12Keys;
  readonly #writeKeys: Tls12Keys;
  #readSeq: bigint;
  #writeSeq: bigint;
  #readClosed = false;

  /** `readSeq`/`writeSeq`: the next sequence numbers (1 after each side's Finished). */
  constructor(suite: Tls12Suite, readKeys: Tls12Keys, writeKeys: Tls12Keys, readSeq = 1n, writeSeq = 1n) {
    super();
    this.#suite = suite;
    this.#readKeys = readKeys;
    this.#writeKeys = writeKeys;
    this.#readSeq = readSeq;
    this.#writeSeq = writeSeq;
  }

  receive(record: RawRecord, _out: Buffer[]): ChannelInput {
    if (this.#readClosed) return { kind: "none" };
    const type = record.type;
    if (type !== ContentType.ApplicationData && type !== ContentType.Alert && type !== ContentType.Handshake) {
      throw new TlsError("TLS_UNEXPECTED_MESSAGE", `record type ${type} after the handshake`);
    }
    const content = open12(this.#suite, this.#readKeys, this.#readSeq++, type, record.body);
    switch (type) {
      case ContentType.ApplicationData:
        return { kind: "data", data: Buffer.from(content) };
      case ContentType.Alert:
        if (content.length !== 2) throw malformedAlertError();
        if (content[1] === AlertDescription.CloseNotify) {
          this.#readClosed = true;
          return { kind: "closed" };
        }
        throw peerAlertError(content[1]!, content[0]);
      default:
        // HelloRequest (0) from a server, ClientHello (1) from a client: a renegotiation.
        if (content.length >= 1 && (content[0] === 0 || content[0] === 1)) {
          throw new TlsError("TLS_UNEXPECTED_MESSAGE", "renegotiation refused", NO_RENEGOTIATION);
        }
        throw new TlsError("TLS_UNEXPECTED_MESSAGE", "handshake message after the handshake");
    }
  }

  send(data: Uint8Array, out: Buffer[]): void {
    if (this.writeClosed) throw new TlsError("TLS_CLOSED", "write after close_notify");
    for (let i = 0; i < data.length; i += MAX_PLAINTEXT) {
      out.push(this.seal(ContentType.ApplicationData, data.subarray(i, Math.min(data.length, i + MAX_PLAINTEXT))));
    }
  }

  /** TLS 1.2 has no KeyUpdate. */
  keyUpdate(_requestUpdate: boolean, _out: Buffer[]): void {}




  protected seal(type: number, content: Uint8Array): Buffer {
    return seal12(this.#suite, this.#writeKeys, this.#writeSeq++, type, content);
  }
}
