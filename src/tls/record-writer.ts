// The sending half both record channels share (channel.ts for TLS 1.3,
// tls12/channel12.ts for TLS 1.2): handshake messages, close_notify and a
// fatal alert, and the rule that nothing is sealed once close_notify or a
// fatal alert has gone out. Each channel seals with its own version's keys.

import { AlertDescription, ContentType } from "./constants.js";

/** A close_notify alert's two bytes (RFC 8446 §6.1): warning, close_notify. */
export const CLOSE_NOTIFY_ALERT: Uint8Array = Buffer.of(1, AlertDescription.CloseNotify);

export abstract class ClosingRecordWriter {
  #writeClosed = false;

  /** Protects one record under the current write keys (and counts its sequence number). */
  protected abstract seal(type: number, content: Uint8Array): Buffer;

  get writeClosed(): boolean {
    return this.#writeClosed;
  }

  /** A handshake message under the connection's keys (TLS 1.3's post-handshake messages, the TLS 1.2 test server's HelloRequest). */
  sendHandshake(message: Uint8Array, out: Buffer[]): void {
    if (!this.#writeClosed) out.push(this.seal(ContentType.Handshake, message));
  }

  /** Our close_notify. */
  close(out: Buffer[]): void {
    if (this.#writeClosed) return;
    out.push(this.sealCloseNotify());
    this.#writeClosed = true;
  }

  /** Our close_notify, protected; a channel that holds it sealed already gives that. */
  protected sealCloseNotify(): Buffer {
    return this.seal(ContentType.Alert, CLOSE_NOTIFY_ALERT);
  }

  /** A fatal alert, protected, as the last thing we send. */
  alert(description: number): Buffer | null {
    if (this.#writeClosed) return null;
    this.#writeClosed = true;
    return this.seal(ContentType.Alert, Buffer.of(2, description));
  }
}
