// Every limit the TLS engine enforces on a peer, in one place, each with why
// that number. src/main/serve/limits.ts re-exports them beside the daemon's
// own, so that one file lists every bound a Mandos client meets. A peer that
// crosses one gets the alert named here and the handshake ends.

/** RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14 (record_overflow). */
export const MAX_PLAINTEXT = 1 << 14;

/** RFC 8446 §5.2: TLSCiphertext.length MUST NOT exceed 2^14 + 256 (record_overflow). */
export const MAX_CIPHERTEXT = (1 << 14) + 256;

/**
 * Largest handshake message we accept (decode_error). Our peers' largest is
 * a Certificate with one raw public key (an RSA-8192 SPKI is about 1 KiB);
 * 64 KiB keeps a hostile peer from making us buffer megabytes. Before the
 * handshake completes MAX_HANDSHAKE_BUFFER_BYTES is the tighter bound; this
 * one bounds post-handshake messages (KeyUpdate, NewSessionTicket).
 */
export const MAX_HANDSHAKE_MESSAGE = 1 << 16;

/**
 * Bytes a peer may send us before its handshake is complete, whatever their
 * records hold (decode_error, as GnuTLS answers GNUTLS_E_HANDSHAKE_TOO_LARGE
 * in gnutls_error_to_alert). A whole server flight with an RSA-4096 key is
 * under 4 KiB and a ClientHello with a hybrid post-quantum share under
 * 2 KiB; TLS allows records of 16 KiB + 256, so two full records is
 * generous and still tiny beside thousands of connections in a reboot wave.
 */
export const MAX_HANDSHAKE_BUFFER_BYTES = 2 * (MAX_CIPHERTEXT + 5);

/**
 * KeyUpdates in a row without application data before we call it abuse
 * (unexpected_message). Each costs us a key derivation; an honest peer sends
 * one now and then, never dozens back to back.
 */
export const MAX_KEY_UPDATES_IN_A_ROW = 32;
