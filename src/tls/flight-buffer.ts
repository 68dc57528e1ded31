// The server's encrypted flight on the client role's main thread, as it
// arrives: whole records back to back in one buffer, until a flight task
// (flight.ts) has taken them. Issue 16: one pair of small Buffers per record
// parked ~1.6 MB for a 77 KB flight of one-byte records; here a flight
// costs its own size, at most MAX_HANDSHAKE_BUFFER_BYTES (endpoint.ts).
//
//   #bytes: [ handed to the task that is out | not yet handed | free ]
//           0                          #handed            #length   capacity

import { ContentType } from "./constants.js";
import { TlsError } from "./errors.js";
import { MAX_FLIGHT_RECORDS } from "./limits.js";

const EMPTY = Buffer.alloc(0);

/** RFC 8446 §5.2: the AEAD expansion of every TLS 1.3 cipher suite (AES-GCM, ChaCha20-Poly1305, AES-CCM) is a 16-byte tag. */
const AEAD_TAG_BYTES = 16;

export class FlightBuffer {
  #bytes = Buffer.allocUnsafe(1024);
  #length = 0;
  #handed = 0;
  #records = 0;
  /** The most plaintext the records not yet handed can hold (unhandedRoom). */
  #room = 0;

  /** One whole record, header included; more than MAX_FLIGHT_RECORDS in a flight is decode_error. */
  append(record: Uint8Array): void {
    if (++this.#records > MAX_FLIGHT_RECORDS) {
      throw new TlsError("TLS_DECODE", `more than ${MAX_FLIGHT_RECORDS} records in the server's flight`);
    }
    const need = this.#length + record.length;
    if (need > this.#bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, 2 * this.#bytes.length));
      this.#bytes.copy(grown, 0, 0, this.#length);
      this.#bytes = grown;
    }
    this.#bytes.set(record, this.#length);
    this.#length = need;
    // A protected record's content is its body less the AEAD tag (16 bytes for
    // every TLS 1.3 suite) and the inner content type (RFC 8446 §5.2); padding
    // only makes it less. change_cipher_spec carries none.
    if (record[0] === ContentType.ApplicationData) this.#room += Math.max(0, record.length - 5 - AEAD_TAG_BYTES - 1);
  }

  /**
   * The most handshake bytes the records not yet handed can hold: a task
   * is worth sending only when this reaches what the last one still needed
   * (FlightProgress.need). A flight in one-byte records then costs a task
   * or two a handshake message, not one a read.
   */
  get unhandedRoom(): number {
    return this.#room;
  }

  /** Bytes not yet handed to a task. */
  get unhanded(): number {
    return this.#length - this.#handed;
  }

  /** A copy of the records not yet handed to a task (what a task carries); they count as handed. */
  hand(): Uint8Array {
    const out = Buffer.from(this.#bytes.subarray(this.#handed, this.#length));
    this.#handed = this.#length;
    this.#room = 0;
    return out;
  }

  /** The task that had the handed records is done with them. */
  release(): void {
    this.#bytes.copyWithin(0, this.#handed, this.#length);
    this.#length -= this.#handed;
    this.#handed = 0;
  }

  /** The records from `offset` into the handed ones to the end: those after the server's Finished. */
  after(offset: number): Buffer {
    return offset >= this.#length ? EMPTY : Buffer.from(this.#bytes.subarray(offset, this.#length));
  }
}
