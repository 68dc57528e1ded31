// The log lines of the serving core (serve/ and the state saver), written
// from the facts they publish on events.ts's channels. The text and levels
// are the ones the reference server writes (or, where it has none, the ones
// this server always wrote): operators grep for them, and the syslog bytes
// must not change.
//
// A peer must not be able to write the log (issue 16): every line a
// stranger can cause is charged to its source (serve/source.ts) against a
// budget (PeerLineBudget below), and what it sent is escaped to printable
// ASCII before it reaches a line. A connection that is served gets back
// what its lines cost its source, and `Sending secret to` is never held
// back. The lines only a known key can cause (disabled, not approved,
// needs approval) are charged to the client instead, with room for a
// machine that retries (CLIENT_LINES_BURST): a stolen or decommissioned
// key replayed in a loop must not write the log either.

import { systemClock, type Clock, type TimerHandle } from "../clock.js";
import { events, type Channel, type ConnectionClosed } from "../events.js";
import { sourceOf } from "../serve/source.js";
import { SummedLines, type Logger, type LogLevel } from "./log.js";
import { printableAscii, pyAscii, pyTextLine } from "../python/repr.js";
import { strerror } from "../config/os-error.js";
import { MAX_OPEN_CONNECTIONS } from "../serve/limits.js";
import { referenceWarning } from "../../tls/index.js";
import { MAX_APPROVAL_WAITS } from "../clients/approval.js";
import { dirname } from "node:path";

/**
 * Lines one source may cause in a burst, and how fast its budget comes
 * back. A client unknown to us that retries every 10 s (mandos-client(8),
 * --retry) causes about 5 lines per try, 0.5 a second: it never runs out.
 * A rack rebooting behind one NAT address is served, so its lines cost
 * nothing (PeerLineBudget.refund).
 */
export const PEER_LINES_BURST = 100;
export const PEER_LINES_PER_SECOND = 2;
/**
 * Lines all sources together may cause, in a burst and a second. Sources
 * cost an attacker little: a machine on the link claims IPv6 link-local
 * addresses at will (each its own source, serve/source.ts), a routed /48
 * holds 65,536 /64s. Without a ceiling each new source brings a fresh
 * burst, and the log is the attacker's. The burst lets every connection the
 * server holds open (MAX_OPEN_CONNECTIONS) write its two first lines
 * before it is served and refunded; the rate is 400 unknown machines
 * retrying every 10 s, and stays under journald's default limit of 10,000
 * lines in 30 s for one service, past which it would drop the lines that
 * matter (`Sending secret to`) with the rest.
 */
export const ALL_PEER_LINES_BURST = 2 * MAX_OPEN_CONNECTIONS;
export const ALL_PEER_LINES_PER_SECOND = 200;
/**
 * Lines kept for quiet sources once the ceiling above is reached: a source
 * that has spent fewer than QUIET_SOURCE_LINES of its own budget lately (a
 * machine that has just come: its `TCP connection from`, or the `Client
 * not found` an operator needs to enroll it) may still write from this
 * reserve, RESERVE_LINES_BURST in a burst and RESERVE_LINES_PER_SECOND. A
 * flood from a few hundred addresses spends each one's quiet lines within
 * a second or two and writes no more of it; sources that are each new (a
 * machine claiming link-local addresses) empty the reserve as well, and
 * then the ceiling holds again: 20 lines a second more at most.
 */
export const QUIET_SOURCE_LINES = 10;
export const RESERVE_LINES_BURST = 200;
export const RESERVE_LINES_PER_SECOND = 20;
/**
 * Lines one client's key may cause (disabled, not approved, timed out, needs
 * approval, a wait closed for a newer one), in a burst and a second. A
 * machine that is refused retries every 10 s and causes one or two a try;
 * a few sharing one section a few times that. A key replayed in a loop
 * wrote ~245 a second from one address before (docs/OPERATION.md,
 * "Hostile peers").
 */
export const CLIENT_LINES_BURST = 20;
export const CLIENT_LINES_PER_SECOND = 1;
/** How often the count of held-back lines is written, per source at most. */
export const SUMMARY_INTERVAL_MS = 10_000;
/** Sources named in one round of summaries, the most held back first; the others are summed in one line. */
export const SUMMARY_SOURCES_MAX = 20;

/** A budget's sizes: for each key (a source, or a client) and for all keys together. */
export interface LineLimits {
  readonly burst: number;
  readonly perSecond: number;
  readonly allBurst: number;
  readonly allPerSecond: number;
  /** The reserve for quiet keys past the ceiling: none if 0. */
  readonly reserveBurst: number;
  readonly reservePerSecond: number;
  /** A key is quiet while it has spent fewer than this of its own budget. */
  readonly quietLines: number;
  /** What the keys past SUMMARY_SOURCES_MAX are, summed in one summary ("N other sources"). */
  readonly others: string;
}

/** The lines a stranger can cause, per source. */
export const PEER_LINE_LIMITS: LineLimits = {
  burst: PEER_LINES_BURST,
  perSecond: PEER_LINES_PER_SECOND,
  allBurst: ALL_PEER_LINES_BURST,
  allPerSecond: ALL_PEER_LINES_PER_SECOND,
  reserveBurst: RESERVE_LINES_BURST,
  reservePerSecond: RESERVE_LINES_PER_SECOND,
  quietLines: QUIET_SOURCE_LINES,
  others: "sources",
};

/** The lines only a known key can cause, per client ("client NAME"). */
export const CLIENT_LINE_LIMITS: LineLimits = {
  burst: CLIENT_LINES_BURST,
  perSecond: CLIENT_LINES_PER_SECOND,
  allBurst: ALL_PEER_LINES_BURST,
  allPerSecond: ALL_PEER_LINES_PER_SECOND,
  // A client's lines come from a key we know: no reserve beside its own.
  reserveBurst: 0,
  reservePerSecond: 0,
  quietLines: 0,
  others: "clients",
};

/** Token buckets for log lines, per key (a source, or a client) under one for all, and the summaries of what they held back. */
export class PeerLineBudget {
  readonly #clock: Clock;
  readonly #limits: LineLimits;
  /** `who` is a key, or "N other sources" (LineLimits.others) past SUMMARY_SOURCES_MAX. */
  readonly #write: (who: string, suppressed: number, seconds: number) => void;
  readonly #keys = new Map<string, { tokens: number; at: number; suppressed: number; since: number }>();
  readonly #all: { tokens: number; at: number };
  /** For quiet keys once #all is spent (LineLimits.reserveBurst). */
  readonly #reserve: { tokens: number; at: number };
  /** Lines charged to each open connection, refunded if it is served. */
  readonly #charged = new Map<number, { source: string; lines: number; held: number }>();
  #timer: TimerHandle | null = null;

  constructor(clock: Clock, write: (who: string, suppressed: number, seconds: number) => void, limits: LineLimits = PEER_LINE_LIMITS) {
    this.#clock = clock;
    this.#limits = limits;
    this.#write = write;
    this.#all = { tokens: limits.allBurst, at: clock.elapsed() };
    this.#reserve = { tokens: limits.reserveBurst, at: clock.elapsed() };
  }

  /** Whether a line charged to `key` (a source, or "client NAME"; for `connection`, if any) may be written now; if not, it is counted for the summary. */
  allow(key: string, connection?: number): boolean {
    const now = this.#clock.elapsed();
    const limits = this.#limits;
    let entry = this.#keys.get(key);
    if (!entry) {
      entry = { tokens: limits.burst, at: now, suppressed: 0, since: now };
      this.#keys.set(key, entry);
      // Forgotten at a flush once its budget is whole: before 2026-12 the
      // flush came only after a line was held back, so a server that never
      // held one back kept every source that ever had a line, for good.
      this.#timer ??= this.#clock.setTimeout(() => this.flush(), SUMMARY_INTERVAL_MS);
    }
    refilled(entry, now, limits.burst, limits.perSecond);
    const all = refilled(this.#all, now, limits.allBurst, limits.allPerSecond);
    // Past the ceiling, a quiet key's line comes from the reserve.
    const shared = all.tokens >= 1 || entry.tokens <= limits.burst - limits.quietLines ? all : refilled(this.#reserve, now, limits.reserveBurst, limits.reservePerSecond);
    const allowed = entry.tokens >= 1 && shared.tokens >= 1;
    // Held back by the ceiling, a line still costs its key's own budget
    // (given back with the others if its connection is served): otherwise
    // a flood's sources, held back a while, refilled to quiet and took the
    // reserve (gone ~30 s into a 300-source flood).
    if (entry.tokens >= 1) {
      entry.tokens -= 1;
      if (allowed) shared.tokens -= 1;
      if (connection !== undefined) {
        const charged = this.#charged.get(connection);
        if (!charged) this.#charged.set(connection, { source: key, lines: allowed ? 1 : 0, held: allowed ? 0 : 1 });
        else if (allowed) charged.lines++;
        else charged.held++;
      }
    }
    if (allowed) return true;
    if (entry.suppressed === 0) entry.since = now;
    entry.suppressed++;
    this.#timer ??= this.#clock.setTimeout(() => this.flush(), SUMMARY_INTERVAL_MS);
    return false;
  }

  /**
   * `connection` was served a secret: its lines go back to its source, so
   * that a fleet behind one address, served, leaves its budget whole for
   * the lines that matter (a machine not found, a failed handshake).
   */
  refund(connection: number): void {
    const charged = this.#charged.get(connection);
    this.#charged.delete(connection);
    if (!charged) return;
    const entry = this.#keys.get(charged.source);
    if (entry) entry.tokens = Math.min(this.#limits.burst, entry.tokens + charged.lines + charged.held);
    this.#all.tokens = Math.min(this.#limits.allBurst, this.#all.tokens + charged.lines);
  }

  /** Sources and clients whose budget is kept (whole ones are forgotten at the next flush). */
  get tracked(): number {
    return this.#keys.size;
  }

  /** `connection` has ended; nothing more is refunded. */
  forget(connection: number): void {
    this.#charged.delete(connection);
  }

  /** Writes the summaries due and forgets the sources whose budget is whole again. */
  flush(): void {
    this.#timer?.cancel();
    this.#timer = null;
    const now = this.#clock.elapsed();
    const seconds = (since: number): number => Math.max(1, Math.round((now - since) / 1000));
    // The summaries are lines too: the sources that were held back most
    // are named, the rest (a flood from many sources) summed in one.
    const held = [...this.#keys].filter(([, entry]) => entry.suppressed > 0);
    if (held.length > SUMMARY_SOURCES_MAX) held.sort(([, a], [, b]) => b.suppressed - a.suppressed);
    let others = 0;
    let othersSuppressed = 0;
    let othersSince = now;
    for (const [i, [key, entry]] of held.entries()) {
      if (i < SUMMARY_SOURCES_MAX) {
        this.#write(key, entry.suppressed, seconds(entry.since));
      } else {
        others++;
        othersSuppressed += entry.suppressed;
        othersSince = Math.min(othersSince, entry.since);
      }
      entry.suppressed = 0;
    }
    const { burst, perSecond } = this.#limits;
    if (others > 0) this.#write(`${others} other ${this.#limits.others}`, othersSuppressed, seconds(othersSince));
    let pending = false;
    for (const [key, entry] of this.#keys) {
      const tokens = entry.tokens + ((now - entry.at) * perSecond) / 1000;
      if (tokens >= burst) this.#keys.delete(key);
      else pending = true;
    }
    // Sources still short of budget may be held back again; keep watching
    // until every one has recovered, so the map empties.
    if (pending) this.#timer = this.#clock.setTimeout(() => this.flush(), SUMMARY_INTERVAL_MS);
  }

  stop(): void {
    this.flush();
    this.#timer?.cancel();
    this.#timer = null;
  }
}

/** A token bucket brought up to `now` at its rate, up to its burst; returns it. */
function refilled(bucket: { tokens: number; at: number }, now: number, burst: number, perSecond: number): { tokens: number; at: number } {
  bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) * perSecond) / 1000);
  bucket.at = now;
  return bucket;
}

/** How often a state file written by another process is said again while it lasts. */
export const STATE_REPLACED_LINE_MS = 600_000;

/** Subscribes `logger` to the serving core's channels; returns the unsubscribe (which writes the pending summaries). */
export function logServeEvents(logger: Logger, clock: Clock = systemClock): () => void {
  const subscribed: Array<() => void> = [];
  const wants = (level: LogLevel): boolean => logger.enabledFor?.(level) ?? true;
  /**
   * Subscribes `handler`; with `writes`, the most severe level its lines
   * have, only if the logger writes that level: a channel nobody subscribes
   * to costs its publisher nothing (a serve thread does not even forward it).
   */
  const on = <T>(channel: Channel<T>, handler: (message: T) => void, writes?: LogLevel): void => {
    if (writes !== undefined && !wants(writes)) return;
    channel.subscribe(handler);
    subscribed.push(() => channel.unsubscribe(handler));
  };
  const budget = new PeerLineBudget(clock, (who, suppressed, seconds) =>
    logger.warning(`Suppressed ${suppressed} log lines caused by ${who} in the last ${seconds} s`));
  // Connections refused at the open-files cap (serve/limits.ts): a wave
  // against a low limit refuses thousands, from as many sources.
  const openLimit = new SummedLines(
    clock, SUMMARY_INTERVAL_MS,
    (address) => logger.warning(`Refusing connection from ${address}: as many connections open as the server allows`),
    (count, seconds) => logger.warning(`Refused ${count} more connections in the last ${seconds} s: as many open as the server allows`),
  );
  // Connections that reached another interface than --interface's
  // (serve/interface-filter.ts): a client that found us by another link
  // retries every few seconds, for as long as nobody looks.
  const notOnInterface = new SummedLines(
    clock, SUMMARY_INTERVAL_MS,
    (local) => logger.warning(`Refusing connection to ${local}: not on the served interface`),
    (count, seconds) => logger.warning(`Refused ${count} more connections in the last ${seconds} s: not on the served interface`),
  );
  /**
   * Writes a line a peer caused, charged to its source; built only when
   * its level is written at all (a line not written costs no budget).
   */
  const peerLine = (level: LogLevel, source: string, connection: number | undefined, text: () => string): void => {
    if (wants(level) && budget.allow(source, connection)) write(logger, level, text());
  };

  on(events.connectionAccepted, ({ connection }) =>
    peerLine("INFO", connection.source, connection.id, () => `TCP connection from: ${connection.label}`), "INFO");
  on(events.connectionNotAdmitted, ({ address, localAddress, why }) => {
    const source = sourceOf(address);
    switch (why) {
      case "source-limit":
        return peerLine("INFO", source, undefined, () => `Refusing connection from ${address}: too many connections from ${source}`);
      case "throttled":
        return peerLine("INFO", source, undefined, () => `Refusing connection from ${address}: too many failures from ${source}`);
      case "not-on-interface":
        return notOnInterface.note(localAddress);
      case "open-limit":
        return openLimit.note(address);
    }
  }, "WARNING");
  on(events.versionLine, ({ connection, line, accepted, reason, maxBytes }) => {
    const { source, id } = connection;
    if (line === null) {
      peerLine("ERROR", source, id, () => `Unknown protocol version: line from ${connection.label} longer than ${maxBytes} bytes`);
      return;
    }
    // The reference's `%r` of the line as its text mode reads it: '1\n'.
    peerLine("DEBUG", source, id, () => `Protocol version: ${pyAscii(pyTextLine(line))}`);
    // The reference's line names no address; the budget above keeps a flood of them bounded.
    if (!accepted) peerLine("ERROR", source, id, () => `Unknown protocol version: ${printableAscii(reason ?? "")}`);
  }, "ERROR");
  on(events.handshakeDone, ({ connection, keyId, fingerprint }) => {
    if (!wants("DEBUG")) return;
    // One charge for the pair: the second line is never written without the first.
    peerLine("DEBUG", connection.source, connection.id, () => "Handshake succeeded");
    // The reference in its OpenPGP mode logs the fingerprint's bytes object.
    if (fingerprint !== undefined) logger.debug(`Fingerprint: b'${fingerprint}'`);
    else logger.debug(`Key ID: ${keyId}`);
  }, "DEBUG");
  on(events.clientNotFound, ({ connection, keyId, fingerprint, proven }) => {
    // Refused before the signature check: the reference's "Key ID:" line
    // still names the key (it writes it after every handshake); there was
    // no "Handshake succeeded".
    if (!proven) peerLine("DEBUG", connection.source, connection.id, () => (fingerprint !== undefined ? `Fingerprint: b'${fingerprint}'` : `Key ID: ${keyId}`));
    // The reference names a legacy peer's fingerprint in the same line ("key_id or fpr").
    peerLine("INFO", connection.source, undefined, () => `Client not found for key ID: ${keyId || fingerprint || ""}, address: ${connection.label}`);
  }, "INFO");
  const clientBudget = new PeerLineBudget(clock, (who, suppressed, seconds) =>
    logger.warning(`Suppressed ${suppressed} log lines about ${who} in the last ${seconds} s`), CLIENT_LINE_LIMITS);
  /** Writes a line only a known key can cause, charged to its client. */
  const clientLine = (level: LogLevel, client: string, text: () => string): void => {
    if (wants(level) && clientBudget.allow(`client ${client}`)) write(logger, level, text());
  };
  on(events.approvalNeeded, ({ client }) => clientLine("INFO", client.name, () => `Client ${client.name} needs approval`), "INFO");
  on(events.clientRejected, ({ connection, client, reason }) => {
    switch (reason) {
      case "disabled":
        return clientLine("INFO", client, () => `Client ${client} is disabled`);
      case "denied":
        return clientLine("WARNING", client, () => `Client ${client} was not approved`);
      case "approval_timeout":
        return clientLine("WARNING", client, () => `Client ${client} timed out while waiting for approval`);
      case "removed":
        return clientLine("INFO", client, () => `Client ${client} was refused: Removed`);
      case "superseded":
        return clientLine("WARNING", client, () =>
          `Client ${client}: closed its connection ${connection.label} waiting for approval, for a newer one (at most ${MAX_APPROVAL_WAITS} of a client wait at once)`);
    }
  }, "WARNING");
  on(events.secretSent, ({ connection, client }) => {
    budget.refund(connection.id);
    if (wants("INFO")) logger.info(`Sending secret to ${client}`);
  });
  on(events.connectionClosed, (closed) => {
    budget.forget(closed.connection.id);
    logClosed(logger, peerLine, closed);
  });
  // A failing save is tried again every SAVE_RETRY_MS: said when it starts
  // failing or its reason changes, and once when a save succeeds again.
  let failedSaves = 0;
  let failingFor: string | null = null;
  on(events.stateSaveFailed, ({ path, reason }) => {
    failedSaves++;
    if (reason === failingFor) return;
    failingFor = reason;
    // The reference's line, strerror's words ("Permission denied"), not
    // the code; then the file, which the reference's line leaves out.
    logger.warning(`Could not save persistent state: ${strerror(reason)} (${path})`);
  });
  // Two servers saving to one file each replace the other's state: said at
  // the first save that finds it, then at most once every 10 minutes.
  let replacedSaidAt = -Infinity;
  let replacedSince = 0;
  on(events.stateSaved, ({ path, replacedOther }) => {
    if (replacedOther) {
      replacedSince++;
      const now = clock.elapsed();
      if (now - replacedSaidAt >= STATE_REPLACED_LINE_MS) {
        const times = replacedSince === 1 ? "" : ` (${replacedSince} saves found it so since this was last said)`;
        logger.warning(`${path} was written by another process since this server's last save${times}: is a second server using the state directory ${dirname(path)}? Each replaces the other's state`);
        replacedSaidAt = now;
        replacedSince = 0;
      }
    }
    if (failedSaves === 0) return;
    logger.info(`Saved persistent state to ${path} again, after ${failedSaves} failed ${failedSaves === 1 ? "save" : "saves"}`);
    failedSaves = 0;
    failingFor = null;
  });
  return () => {
    for (const unsubscribe of subscribed.splice(0)) unsubscribe();
    budget.stop();
    clientBudget.stop();
    openLimit.stop();
    notOnInterface.stop();
  };
}

type PeerLine = (level: LogLevel, source: string, connection: number | undefined, text: () => string) => void;

function write(logger: Logger, level: LogLevel, message: string): void {
  switch (level) {
    case "DEBUG": return logger.debug(message);
    case "INFO": return logger.info(message);
    case "WARNING": return logger.warning(message);
    case "ERROR": return logger.error(message);
    case "CRITICAL": return logger.critical(message);
  }
}

/** The line, if any, for how a connection ended; the other outcomes were logged by their own fact. */
/**
 * Whether a connection closed at `stage` was in its TLS handshake as the
 * reference sees it: it starts the handshake as soon as it has the line, so
 * our wait for a handshake slot is part of it.
 */
const inHandshake = (stage: ConnectionClosed["stage"]): boolean => stage === "Handshaking" || stage === "AwaitingSlot";

function logClosed(logger: Logger, peerLine: PeerLine, { connection, outcome, stage, detail, gnutls, legacy }: ConnectionClosed): void {
  const { label, source } = connection;
  const what = (): string => printableAscii(detail ?? "");
  // A handshake that failed: the reference's line, in its GnuTLS's words
  // (GnuTLS 3.5's for a legacy client; no address: the "TCP connection from"
  // line before it names the peer), or its "Bad certificate" for a legacy
  // key that verify_self refuses; our own reason, in more detail, at DEBUG.
  if (gnutls !== undefined && inHandshake(stage)) {
    // A key the reference would serve and our key policy refuses: GnuTLS has
    // no words for it, and "not supported" would hide the bound it crossed.
    if (gnutls === "KEY_POLICY") return peerLine("WARNING", source, undefined, () => `Handshake failed: ${what()}`);
    peerLine("WARNING", source, undefined, () => referenceWarning(gnutls, legacy === true));
    if (outcome === "tls-error") peerLine("DEBUG", source, undefined, () => `TLS error from ${label} in the handshake: ${what()}`);
    return;
  }
  switch (outcome) {
    case "timeout":
      // Waiting for a slot is our doing, not the peer's: never held back.
      if (stage === "AwaitingSlot") return logger.info(`Connection ${label} timed out ${what()}`);
      return peerLine("INFO", source, undefined, () => `Connection ${label} timed out ${what()}`);
    case "tls-error":
      return peerLine("WARNING", source, undefined, () => `TLS error from ${label}: ${what()}`);
    case "evicted":
      return peerLine("INFO", source, undefined, () => `Connection ${label} closed ${what()}`);
    case "socket-error":
      return peerLine("DEBUG", source, undefined, () => `Socket error from ${label}: ${what()}`);
    case "peer-closed":
      if (detail === undefined) return; // a bare close (no FIN first) was never logged
      peerLine("DEBUG", source, undefined, () => `Peer ${label} ${what()}`);
      return;
    default:
      return;
  }
}
