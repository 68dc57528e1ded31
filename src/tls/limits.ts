// Every limit the TLS engine enforces on a peer, in one place, each with why
// that number. src/main/serve/limits.ts re-exports them beside the daemon's
// own, so that one file lists every bound a Mandos client meets. A peer that
// crosses one gets the alert named here and the handshake ends.

/** RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14 (record_overflow). */
export const MAX_PLAINTEXT = 1 << 14;

/**
 * RFC 8446 §5.4: the whole TLSInnerPlaintext (content, content type and
 * zero padding) MUST NOT exceed 2^14 + 1 bytes (record_overflow), so that
 * padding cannot stretch a record past what MAX_PLAINTEXT allows.
 */
export const MAX_INNER_PLAINTEXT = MAX_PLAINTEXT + 1;

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
 * Records in the server's encrypted flight, change_cipher_spec included
 * (decode_error, like the byte bound above: a flight too large in pieces).
 * GnuTLS sends the flight in one to four records; a peer that fragments to
 * the bone (our tests cut it into 7-byte records: ~50 for an ECDSA key) stays
 * far below. Each record costs an AEAD open (~2 µs), once (flight.ts); a
 * flight task goes out only when the records since the last could finish a
 * message (client.ts), so however they are cut they cost a few tasks.
 * MAX_HANDSHAKE_BUFFER_BYTES alone would allow ~3,000 one-byte records.
 */
export const MAX_FLIGHT_RECORDS = 256;

/**
 * KeyUpdates per connection before we call it abuse (unexpected_message).
 * Each costs us a key derivation; a Mandos connection lives for one secret,
 * and an honest peer sends one now and then. Counted over the whole
 * connection: a count that application data reset would let a peer that
 * interleaves one byte of data make us derive keys without end.
 */
export const MAX_KEY_UPDATES = 32;

/**
 * RSA moduli we accept in the peer's raw public key, rsaEncryption or
 * RSASSA-PSS (unsupported_certificate outside; the WARNING says which
 * bound). The reference's GnuTLS takes any key that can make a PSS
 * signature (RSA-768 was served; RSA-512 is too short for PSS with
 * SHA-256). Below 1,024 bits we refuse: RSA-768 was factored in 2009, so
 * such a key identifies no one; 1,024 (GnuTLS's LOW security level) is
 * not publicly factored, and the reference serves it, so a fleet moved
 * over keeps working. Small keys cost us less, not more. Up to 16,384 bits, GnuTLS's own
 * ceiling: one verification with a 16,384-bit key is ~3-5 ms on a
 * handshake worker (docs/BENCHMARK.md, "RSA raw keys up to 16,384 bits"),
 * and only a key some client in clients.conf has reaches it (a stranger's
 * key is refused before its signature is checked, known-keys.ts).
 */
export const MIN_RSA_MODULUS_BITS = 1024;
export const MAX_RSA_MODULUS_BITS = 16384;

/**
 * RSA moduli of a legacy client's OpenPGP key (unsupported_certificate
 * outside). The floor is the raw keys' (above): the reference on GnuTLS
 * 3.5 serves an RSA-1,024 key, and Debian's old mandos-keygen takes
 * `--length` down to 512, so a machine moved over must keep unlocking
 * (seen refused, with the real legacy client, when this was 2,048). The
 * ceiling stays 8,192: OpenPGP.js verifies up to MAX_SELF_SIGNATURES
 * self-signatures in JavaScript, and GnuPG 2.2 makes no larger key.
 */
export const MIN_OPENPGP_RSA_MODULUS_BITS = MIN_RSA_MODULUS_BITS;
export const MAX_OPENPGP_RSA_MODULUS_BITS = 8192;

/**
 * Largest RSA public exponent, in bits (unsupported_certificate above). Key
 * generators use 65537 (17 bits); verification cost grows with the
 * exponent's length, and a 3,072-bit exponent made each verification cost
 * ~12 ms (issue 16). 32 bits is far more than any real key needs.
 */
export const MAX_RSA_EXPONENT_BITS = 32;
