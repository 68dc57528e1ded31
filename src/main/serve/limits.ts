// Every limit the server enforces on a peer, in one place, each with why
// that number (the engine's come from src/tls/limits.ts, at the end). A
// peer that crosses one is logged and closed; it never holds a worker and
// never gets a byte of any secret (docs/PROTOCOL.md, "Design rules").

/**
 * The version line. The real client sends `1\r\n` (3 bytes); the reference
 * reads a whole line without a bound. 64 bytes leave room for any future
 * "N extra words" form while refusing a 1 MiB line after its first packet.
 */
export const VERSION_LINE_MAX_BYTES = 64;

/**
 * Time from accept to a complete version line. The real client writes the
 * line right after connect(); 10 s covers a loaded initrd on a slow link.
 */
export const VERSION_LINE_TIMEOUT_MS = 10_000;

/**
 * Time from the version line to a finished TLS handshake. GnuTLS's own
 * default handshake timeout is 40 s; with a whole data centre rebooting,
 * a peer that has not finished in 20 s is more likely dead than slow, and
 * its slot is better given to the next one.
 */
export const HANDSHAKE_TIMEOUT_MS = 20_000;

/**
 * Time to hand the secret and close_notify to the peer once decided. The
 * payload is a few KiB; anything longer is a peer that stopped reading.
 */
export const SEND_TIMEOUT_MS = 10_000;

/**
 * Connections admitted into the handshake at once. Beyond this, accepted
 * sockets wait (unread) in a FIFO: one slow crowd must not make every
 * handshake slow together. 512 keeps the worker queues full on a 64-core
 * host while bounding memory to a few MiB of handshake state.
 */
export const MAX_HANDSHAKES_IN_FLIGHT = 512;

/**
 * How long an accepted connection may wait for a handshake slot before we
 * give up on it. The real client retries after its own timeouts.
 */
export const ADMISSION_WAIT_MS = 30_000;

/**
 * Open connections at most (handshaking, waiting for admission or for an
 * approval). Past this the kernel backlog holds them; Node closes any
 * accepted beyond it. 10,000 fits the RSS budget (issue 4: under 200 MiB).
 */
export const MAX_OPEN_CONNECTIONS = 10_000;

/**
 * listen(2) backlog. The reference's 5 makes a reboot burst wait out the
 * kernel's SYN retries (1, 3, 7, 15 s) while the server idles; the kernel
 * clamps this to net.core.somaxconn (4096 on current kernels).
 */
export const LISTEN_BACKLOG = 4096;

// The TLS engine's own limits (record sizes, handshake bytes, handshake
// message size, KeyUpdate flood) live beside the engine, which must not
// import from here; they are re-exported so that this file lists every
// bound a peer meets.
export {
  MAX_CIPHERTEXT,
  MAX_HANDSHAKE_BUFFER_BYTES,
  MAX_HANDSHAKE_MESSAGE,
  MAX_KEY_UPDATES,
  MAX_PLAINTEXT,
} from "../../tls/limits.js";
