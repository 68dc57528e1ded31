// What both TLS roles share: bytes in (receive), bytes out (takeOutput),
// events out (nextEvent), application data (send, close, keyUpdate) once
// connected, and the rules every record meets whatever the handshake state:
// change_cipher_spec dropped during the handshake (RFC 8446 §5), a plaintext
// alert before the keys, a bound on the bytes a handshake may take, and
// failure as one error event, at most one alert, then silence.
//
// A base class rather than a composed object: the roles differ only in
// their handshake states, and the shared part must call into them on every
// record (onHandshakeRecord) and when failing (handshakeAlert) while they
// call back into it (emit, connect, fail). A composed "endpoint" member
// would need those same two callbacks passed in, plus forwarding methods in
// each role for the five public ones.
//
// Phases: Handshaking (the role's own states) -> Connected -> Failed, or
// Handshaking -> Failed. The role never sees a record once Connected.

import { AlertDescription, ContentType } from "./constants.js";
import type { ChannelInput } from "./channel.js";
import { TlsError, malformedAlertError, peerAlertError } from "./errors.js";
import { MAX_HANDSHAKE_BUFFER_BYTES } from "./limits.js";
import { RecordFramer, plainRecord, type RawRecord } from "./record.js";

export type TlsEvent =
  | {
      readonly type: "handshake-complete";
      /** The peer's raw public key, DER SubjectPublicKeyInfo (empty in the server role). */
      readonly peerPublicKey: Buffer;
      /** The Mandos key ID of that key ("" in the server role). */
      readonly keyId: string;
      readonly cipherSuite: string;
      readonly group: string;
      readonly signatureScheme: string;
      /** "TLS1.2" for a legacy peer (OpenPGP certificate); absent means TLS 1.3. */
      readonly version?: "TLS1.2" | "TLS1.3";
      /** A legacy peer's OpenPGP v4 fingerprint, 40 upper-case hex digits (then keyId is ""). */
      readonly fingerprint?: string;
    }
  | { readonly type: "data"; readonly data: Buffer }
  | { readonly type: "closed" }
  | { readonly type: "error"; readonly error: TlsError };

export type HandshakeCompleteEvent = Extract<TlsEvent, { type: "handshake-complete" }>;

/** The connected state's record layer: TLS 1.3's ApplicationChannel (channel.ts) or TLS 1.2's (tls12/channel12.ts). */
export interface RecordChannel {
  receive(record: RawRecord, out: Buffer[]): ChannelInput;
  send(data: Uint8Array, out: Buffer[]): void;
  keyUpdate(requestUpdate: boolean, out: Buffer[]): void;
  sendHandshake(message: Uint8Array, out: Buffer[]): void;
  close(out: Buffer[]): void;
  alert(description: number): Buffer | null;
}

export abstract class TlsEndpoint {
  readonly #framer = new RecordFramer();
  #output: Buffer[] = [];
  readonly #events: TlsEvent[] = [];
  #channel: RecordChannel | null = null;
  #failed = false;
  /** Bytes received while handshaking, against MAX_HANDSHAKE_BUFFER_BYTES. */
  #handshakeBytes = 0;

  /** The role's handshake state's name. */
  protected abstract get handshakeState(): string;
  /** One record of the handshake (neither change_cipher_spec nor alert). */
  protected abstract onHandshakeRecord(record: RawRecord): void;
  /** A fatal alert as the record the current handshake state sends it in. */
  protected abstract handshakeAlert(description: number): Buffer;
  /**
   * A well-formed change_cipher_spec while handshaking; dropped unless the
   * role must know where it fell (after the peer's Finished it is refused,
   * RFC 8446 §5, and the client role learns where Finished ends only later).
   */
  protected onChangeCipherSpec(_record: RawRecord): void {}
  /** Whether the peer's alerts are already protected while handshaking (TLS 1.2 after its change_cipher_spec). */
  protected get alertsProtected(): boolean {
    return false;
  }

  /** The state's name, for logs and tests. */
  get state(): string {
    return this.#failed ? "Failed" : this.#channel ? "Connected" : this.handshakeState;
  }

  /**
   * Whether the peer's last record came in part: its header, not all of its
   * body. A stream that ends there is, to GnuTLS, a packet of unexpected
   * length rather than a connection cut short.
   */
  get partialRecord(): boolean {
    return this.#framer.buffered >= 5;
  }

  receive(data: Uint8Array): void {
    if (this.#failed || data.length === 0) return;
    try {
      if (!this.#channel) {
        this.#handshakeBytes += data.length;
        if (this.#handshakeBytes > MAX_HANDSHAKE_BUFFER_BYTES) {
          throw new TlsError("TLS_DECODE", `more than ${MAX_HANDSHAKE_BUFFER_BYTES} bytes before the handshake completed`);
        }
      }
      this.#framer.push(data);
      for (let rec = this.#framer.next(); rec; rec = this.#framer.next()) {
        this.receiveRecord(rec);
        if (this.#failed) return;
      }
    } catch (error) {
      this.fail(error);
    }
  }

  takeOutput(): Buffer | null {
    if (this.#output.length === 0) return null;
    const out = this.#output.length === 1 ? this.#output[0]! : Buffer.concat(this.#output);
    this.#output = [];
    return out;
  }

  nextEvent(): TlsEvent | null {
    return this.#events.shift() ?? null;
  }

  send(data: Uint8Array): void {
    if (this.#failed) return;
    if (!this.#channel) {
      this.fail(new TlsError("TLS_INTERNAL", "send before the handshake is complete"));
      return;
    }
    try {
      this.#channel.send(data, this.#output);
    } catch (error) {
      this.fail(error);
    }
  }

  /** Our close_notify (RFC 8446 §6.1); nothing before the handshake completes. */
  close(): void {
    if (!this.#failed) this.#channel?.close(this.#output);
  }

  /** Sends a KeyUpdate (RFC 8446 §4.6.3) and switches our write keys. */
  keyUpdate(requestUpdate: boolean): void {
    if (!this.#failed) this.#channel?.keyUpdate(requestUpdate, this.#output);
  }

  // ------------------------------------------------------ for the roles

  protected get failed(): boolean {
    return this.#failed;
  }

  protected output(bytes: Buffer): void {
    this.#output.push(bytes);
  }

  /** The handshake is done: records from now on go to `channel`. */
  protected connect(channel: RecordChannel, event: HandshakeCompleteEvent): void {
    this.#channel = channel;
    this.#events.push(event);
  }

  /** A post-handshake handshake message (RFC 8446 §4.6) under the application keys. */
  protected sendHandshakeMessage(message: Uint8Array): void {
    if (!this.#failed) this.#channel?.sendHandshake(message, this.#output);
  }

  /** One record, as if just received (the client role replays those that came with the server's flight). */
  protected receiveRecord(rec: RawRecord): void {
    if (rec.type === ContentType.ChangeCipherSpec) {
      // RFC 8446 §5: dropped while the handshake runs; forbidden afterwards.
      if (this.#channel || rec.body.length !== 1 || rec.body[0] !== 1) {
        throw new TlsError("TLS_UNEXPECTED_MESSAGE", "change_cipher_spec out of place");
      }
      this.onChangeCipherSpec(rec);
      return;
    }
    if (this.#channel) {
      const got = this.#channel.receive(rec, this.#output);
      if (got.kind === "data") this.#events.push({ type: "data", data: got.data });
      else if (got.kind === "closed") this.#events.push({ type: "closed" });
      return;
    }
    if (rec.type === ContentType.Alert && !this.alertsProtected) {
      if (rec.body.length !== 2) throw malformedAlertError();
      throw peerAlertError(rec.body[1]!, rec.body[0]);
    }
    this.onHandshakeRecord(rec);
  }

  /**
   * Ends the connection: the alert for `error` (unless already sent, or the
   * error is the peer's own alert), an error event, and the Failed state.
   */
  protected fail(error: unknown, alertSent = false): void {
    if (this.#failed) return;
    const tlsError = error instanceof TlsError ? error : new TlsError("TLS_INTERNAL", "internal error");
    if (!alertSent && tlsError.alert >= 0) {
      const rec = this.#channel ? this.#channel.alert(tlsError.alert) : this.handshakeAlert(tlsError.alert);
      if (rec) this.#output.push(rec);
    }
    this.#failed = true;
    this.#events.push({ type: "error", error: tlsError });
  }
}

/** A fatal alert in a plaintext record, for the states before any keys. */
export function plainAlert(description: number): Buffer {
  return plainRecord(ContentType.Alert, Buffer.of(2, description));
}

export { AlertDescription };
