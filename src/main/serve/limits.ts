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
 * Time from accept to a complete version line. The real mandos-client
 * writes "1\r\n" in the same breath as connect() returns, before any TLS
 * work (it arrives within a millisecond of accept on loopback, see
 * test/server-fair-admission.test.ts). 3 s leaves room for that segment to
 * be lost and retransmitted twice (Linux's minimum RTO is 200 ms, its
 * initial one 1 s, RFC 6298 §2) on a loaded initrd, while a socket that
 * sends nothing gives its source's quota back quickly. A connection waiting
 * for its line holds no handshake slot (admission.ts).
 */
export const VERSION_LINE_TIMEOUT_MS = 3_000;

/**
 * Time from the version line to a finished TLS handshake. GnuTLS's own
 * default handshake timeout is 40 s; with a whole data centre rebooting,
 * a peer that has not finished in 20 s is more likely dead than slow, and
 * its slot is better given to the next one.
 */
export const HANDSHAKE_TIMEOUT_MS = 20_000;

/**
 * Reads of the socket (data events) from the handshake slot to a finished
 * handshake; one more is a hostile peer, closed as a TLS error of its
 * source. Each read costs us ~50-70 µs whatever it holds (the record
 * framer, the engine, a look for tasks): a peer that sent a stranger's
 * flight behind 2,500 change_cipher_spec records, a byte a segment a
 * millisecond apart, cost 770 ms of CPU over 17.8 s, 225 times a stranger
 * that sends its flight whole (an audit, F3), all under
 * MAX_HANDSHAKE_BUFFER_BYTES and HANDSHAKE_TIMEOUT_MS. A real mandos-client
 * (GnuTLS) writes its flight at once, one to four records of at most ~5 KB
 * with an RSA-16,384 key: four segments at Ethernet's MSS of 1,460 bytes,
 * ten at IPv4's smallest (536, RFC 1122 §4.2.2.6); even the whole
 * MAX_HANDSHAKE_BUFFER_BYTES (33,290) is 23 segments at 1,460 and 63 at
 * 536, and a read never holds less than a segment. 128 is twice that last
 * figure, and keeps a peer that trickles to ~128 × 60 µs, about twice a
 * stranger's whole handshake. A legacy (TLS 1.2) peer's two flights are
 * as small.
 */
export const MAX_HANDSHAKE_READS = 128;

/**
 * How long a handshake worker may take to answer one request (a batch of
 * up to 16 handshake tasks, or a key-share refill) before it is taken for
 * wedged, ended, and its work sent elsewhere (handshake-runner.ts). A real
 * batch takes ~5 ms (16 TLS 1.3 flights); the slowest seen are a batch of
 * TLS 1.2 flights that each sign with a 4096-bit RSA key, the first of
 * them importing OpenPGP.js (under 1 s on a loaded machine), plus a wait
 * behind a refill: so over 5 times the worst a working worker takes, and
 * still leaving the batch run again 15 s of HANDSHAKE_TIMEOUT_MS.
 */
export const WORKER_ANSWER_MS = 5_000;

/**
 * How long our Finished may wait, corked, for the registry's decision, so
 * that Finished, secret and close_notify leave in one segment: inline the
 * decision comes at once; from a serve thread it is a message round trip
 * to the main thread. A longer wait (an approval) sends the Finished alone.
 */
export const DECISION_CORK_MS = 50;

/**
 * Time to hand the secret and close_notify to the peer once decided. The
 * payload is a few KiB; anything longer is a peer that stopped reading.
 */
export const SEND_TIMEOUT_MS = 10_000;

/**
 * Handshakes under way at once, not counting those moved to the slow pool
 * (PEER_SLOW_MS), when the thread that reads the sockets also does their
 * handshakes' work: the main thread with `--workers 0`, shared out among
 * serve threads. Beyond this, connections that sent a good version line
 * wait (unread) for a slot, round-robin across sources (admission.ts): one
 * crowd must not make every handshake slow together. Fewer did not pay
 * here (alternated 10,000-client waves, 64 against 512): inline, the same
 * CPU a secret or up to 15% more and a longer p99 (six pairs over two
 * sessions); serve threads, 20% more in two pairs of three
 * (docs/BENCHMARK.md, session 13).
 */
export const MAX_HANDSHAKES_IN_FLIGHT = 512;

/**
 * Handshakes under way at once for each worker of the pool (`--workers N`:
 * 64 × N), not counting those in the slow pool. With one worker, 64 against
 * 512 in all: CPU a secret lower in 20 of 23 alternated 10,000-client
 * waves (256 at once), median 0.88 ×, the main thread and the worker
 * alike, with the collections unchanged; 128 did as well as 64; p99
 * lower in 5 of 6 (docs/BENCHMARK.md, session 13). A batch to a worker
 * holds 16 handshakes: 64 keep a worker's next batches full.
 */
export const HANDSHAKE_SLOTS_PER_WORKER = 64;

/**
 * A handshake whose peer has not answered (its flight, our ClientHello
 * long sent) within this long gives its slot to the next connection and
 * moves to the slow pool. The peer's answer costs it one key agreement and
 * one signature and costs us nothing while we wait: on a LAN it comes
 * within a few ms (a wave of 10,000 loopback clients on this 2-core
 * machine, the load generator sharing the cores: p50 6 ms, p99 37, max 63
 * from slot to answer). A slot held through a 100 ms wait would cap a
 * thread at 640 handshakes a second with slow peers; a stalled one would
 * hold it until HANDSHAKE_TIMEOUT_MS.
 */
export const PEER_SLOW_MS = 100;

/**
 * Handshakes in the slow pool at most, all serve threads' together
 * (shared-limit.ts), besides SLOW_RESERVE_PER_THREAD a serve thread. They
 * cost memory only (a socket and a few KiB of handshake state each); when
 * the pool is full a slow handshake keeps its slot, unless a connection
 * waits for one and the pool's oldest has waited SLOW_EVICT_AFTER_MS.
 * 512 bounds that memory to a few MiB.
 */
export const MAX_SLOW_HANDSHAKES = 512;

/**
 * Once the slow pool is full and a connection waits for a slot, a
 * handshake that has waited in the pool this long on a peer that still
 * has not answered is closed, and its place goes to a handshake that
 * holds a slot and waits on its peer, whose slot goes to the connection
 * that waits (admission.ts, Rule 2). The close counts against its source
 * (Rule 3). Without it, 1,024 stalled peers (the slots and the pool) held
 * every real client back for their 20 s, and 8 sources of 128 each failed
 * 6.4 times a second, under the bucket's refill: never throttled. A peer
 * that answers later than 1 s (after our flight, since PEER_SLOW_MS more)
 * is later than a round trip across a continent and a segment sent again
 * at Linux's shortest retransmission timeout (200 ms); it is closed only
 * while others wait for a slot, or a newcomer at MAX_OPEN_CONNECTIONS
 * (listener.ts), and its client retries (mandos-client(8), --retry).
 * For waiting connections, at most the pool's places a second are closed.
 */
export const SLOW_EVICT_AFTER_MS = 1_000;

/**
 * Places in the slow pool each serve thread may take beyond the shared
 * MAX_SLOW_HANDSHAKES when that is full, so that every thread has
 * handshakes of its own there to close for its waiting connections
 * (SLOW_EVICT_AFTER_MS; a thread can close only its own). Without them,
 * a thread whose slots all held stalled peers, after the other threads had
 * filled the pool, could not move one out. 32 let it free 32 slots a
 * second at least, and add 32 handshakes a thread at most to the pool.
 */
export const SLOW_RESERVE_PER_THREAD = 32;

/**
 * How long a connection that sent its version line may wait for a
 * handshake slot before we give up on it. The real client retries after
 * its own timeouts.
 */
export const ADMISSION_WAIT_MS = 30_000;

/**
 * Default open connections per source (an IPv4 address or an IPv6 /64;
 * mandos.conf `max_per_source`, `--max-per-source`; 0: no limit). A
 * mandos-client holds one connection to a server at a time, two while it
 * also tries the server's other address; a 48-unit rack behind one NAT
 * address then needs at most 96. 128 boots such a rack with a third to
 * spare, and caps what one hostile host can hold at 128 sockets of a few
 * KiB each, none of them holding a handshake slot until it sent a version
 * line.
 */
export const DEFAULT_MAX_PER_SOURCE = 128;

/**
 * Failures a source may cause in a burst (bad version line, a handshake
 * that fails, times out or ends with an unknown key, or a client refused
 * its secret: disabled, denied, approval timed out); then it is refused
 * at accept until its bucket refills at FAILURE_REFILL_PER_SECOND.
 * mandos-client retries every 10 s (mandos-client(8), --retry), so even a
 * rack of 48 machines behind one address that are all unknown to us, or
 * all disabled, fails 4.8 times a second: it never empties a bucket that
 * refills at 10 a second. An attacker gets at most 10 failed handshakes a second per
 * source after its first 100: ~1 ms of CPU each with Ed25519 sent whole,
 * ~10-15 ms at most trickled a byte a segment (MAX_HANDSHAKE_READS; 150
 * such from one source in 5 s took ~20% of a core, docs/OPERATION.md,
 * "Hostile peers").
 */
export const FAILURE_BURST = 100;
export const FAILURE_REFILL_PER_SECOND = 10;

/**
 * Sources that fail often wait behind those that do not (admission.ts,
 * Rule 2): each failure (as FAILURE_BURST counts them) adds one to a
 * source's score, which decays by e every FAILING_DECAY_MS; at
 * FAILING_SCORE or more the source waits in the failing ring. A source
 * failing every T seconds peaks at 1 / (1 - e^(-T/10)): held back when it
 * fails more often than every ~2.9 s (a flood builds a queue only when it
 * comes faster than the server refuses it, far above that). A machine
 * that mandos-client retries every 10 s, unknown or disabled, peaks at
 * ~1.6, and two such behind one address at ~3.1 when they fail at the
 * same moment (booted by one power event): neither is held back; three
 * together are. Once the ring and the failing ring both wait, one slot in
 * FAILING_TURN_EVERY goes to the failing ring, and the handshake runner
 * gives as large a share of its batches and key shares to the work of a
 * source held back (handshake-runner.ts): never starved.
 */
export const FAILING_DECAY_MS = 10_000;
export const FAILING_SCORE = 4;
export const FAILING_TURN_EVERY = 4;

/**
 * Open connections at most (handshaking, waiting for admission or for an
 * approval), all serve threads' together (shared-limit.ts). The listener
 * closes any accepted beyond it before reading a byte. 10,000 fits the RSS budget (issue 4: under 200 MiB).
 */
export const MAX_OPEN_CONNECTIONS = 10_000;

/**
 * At MAX_OPEN_CONNECTIONS (or openConnectionsAllowed), a new connection
 * takes the place of the oldest one that has waited this long without
 * its version line, instead of being closed at accept; that one is closed
 * as timed out, a failure of its source. The real client writes its line
 * as soon as it is connected: a socket silent for a second is a scanner,
 * a crashed peer or one of a flood of idle sockets. Without it, sockets
 * that say nothing from enough sources (each under its cap, each failing
 * under its bucket's refill: 10,000 from 1,000 link-local addresses, each
 * closed after VERSION_LINE_TIMEOUT_MS and opened again) kept the server
 * at its cap, and every real client was closed at accept.
 */
export const IDLE_EVICT_AFTER_MS = 1_000;

/**
 * Descriptors kept for everything but connections: the listening
 * sockets, the state file and its temporary copy, the checkers (or the
 * checker host's pipes), D-Bus, etcd's channels, syslog, the audit log,
 * the metrics listener and its scrapes (64 at most). Measured with every
 * one of them on (etcd, D-Bus, audit log to file and syslog, 32 checkers
 * running, 64 idle scrapes): 103 descriptors with two serve threads, 102
 * with two workers and the checker host.
 */
export const FD_RESERVE = 256;

/**
 * Descriptors each handshake worker or serve thread adds (its event loop's
 * epoll and eventfds, its message ports' pipes): measured 5 (two serve
 * threads 103, eight 133); a host of 64 cores runs 63.
 */
export const FDS_PER_THREAD = 8;

/**
 * The open connections a process whose open-files limit (RLIMIT_NOFILE;
 * null: none) is `openFiles` and that runs `threads` workers or serve
 * threads may hold: MAX_OPEN_CONNECTIONS, or what the limit leaves after
 * FD_RESERVE and FDS_PER_THREAD a thread (half the limit at least). Past
 * the limit accept(2) fails with EMFILE, and libuv then closes every
 * connection waiting in the backlog without a word; at this cap the
 * listener closes each one past it, and we log it.
 */
export function openConnectionsAllowed(openFiles: number | null, threads = 0): number {
  if (openFiles === null) return MAX_OPEN_CONNECTIONS;
  const reserve = FD_RESERVE + FDS_PER_THREAD * threads;
  return Math.min(MAX_OPEN_CONNECTIONS, Math.max(openFiles - reserve, Math.floor(openFiles / 2)));
}

/**
 * listen(2) backlog. The reference's 5 makes a reboot burst wait out the
 * kernel's SYN retries (1, 3, 7, 15 s) while the server idles; the kernel
 * clamps this to net.core.somaxconn (4096 on current kernels).
 */
export const LISTEN_BACKLOG = 4096;

// The TLS engine's own limits (record sizes, handshake bytes, records in
// the server's flight, handshake message size, KeyUpdate flood) live beside
// the engine, which must not import from here; they are re-exported so that
// this file lists every bound a peer meets.
export {
  MAX_CIPHERTEXT,
  MAX_FLIGHT_RECORDS,
  MAX_HANDSHAKE_BUFFER_BYTES,
  MAX_HANDSHAKE_MESSAGE,
  MAX_KEY_UPDATES,
  MAX_PLAINTEXT,
} from "../../tls/limits.js";
