// The audit log: one JSON line per secret released, per refusal of a known
// client and per known client's request cut short (its peer gone while it
// waited for approval or while its secret was written), for security's
// "which machine got its secret, when, from where" (docs/OBSERVABILITY.md
// has the record). Written from the facts on
// events.ts's channels; the payloads carry no secret and no key material,
// and neither does a record.
//
// Durability: each record is one write(2) on an O_APPEND descriptor, so it
// is in the kernel (safe from a crash of this process) when the event's
// subscriber returns, and lines from two writers never interleave. A short
// write (the disk filled mid-record) is finished by more writes; if the rest
// cannot be written the cut line is left, and the next record written starts
// with a newline, so that a JSON-lines reader loses the cut record alone
// rather than it and the next one glued onto it. fdatasync
// runs at most once per AUDIT_SYNC_MS, and at reopen and close: a power
// loss may lose the last second of records, a reboot storm does not pay a
// disk flush per secret.
//
// Reopening: at SIGHUP (logrotate moved the file), and when the file is
// found deleted (st_nlink 0 on the open descriptor, looked at before each
// record: a record written there would be lost without a word). A reopen
// that fails is said and tried again every AUDIT_REOPEN_RETRY_MS until one
// succeeds, which is said too; meanwhile records go on to the file still
// open, or, where it was deleted, are counted lost. An open that fails at
// start is the same: the server serves (a /var/log remounted read-only
// must not keep every machine locked; the reference has no audit log at
// all), its records counted lost until the file opens.

import { closeSync, constants, fdatasync, fdatasyncSync, fstatSync, openSync, statSync, writeSync } from "node:fs";
import { events, type ConnectionRef, type RefusalReason, type SecretAbandoned } from "../events.js";
import { datagramSocketOrSay } from "../daemon/unix-datagram.js";
import { Subscriptions } from "./subscriptions.js";
import { reasonWithCode } from "../config/os-error.js";
import { RepeatedFailure } from "../daemon/log.js";
import { notARegularFile } from "../config/read-file.js";

/** The longest a written record waits for fdatasync. */
export const AUDIT_SYNC_MS = 1_000;
/** How often a reopen that failed is tried again. */
export const AUDIT_REOPEN_RETRY_MS = 10_000;
/** Owner and group (adm, for log readers) only: peers' addresses are personal data. */
const AUDIT_FILE_MODE = 0o640;
/** LOG_AUTHPRIV | LOG_INFO: syslog's facility for security records, kept apart from daemon.* */
const SYSLOG_PRI = 10 * 8 + 6;
export const AUDIT_SYSLOG_TAG = "mandos-audit";

/** One audit record, as written (keys in this order). */
export interface AuditRecord {
  /** ISO 8601, UTC, milliseconds. */
  readonly time: string;
  /**
   * "abandoned": the connection ended while it waited for its secret
   * (approval), nothing of it sent; "unconfirmed": it ended while the secret
   * was being written, so the peer may have it.
   */
  readonly outcome: "released" | "refused" | "abandoned" | "unconfirmed";
  /** Why it was refused, or how an abandoned or unconfirmed one ended (`peer_closed`, `shutdown`...); null when released. */
  readonly reason: Exclude<RefusalReason, "unknown_key" | "bad_version" | "tls_error"> | CutShort | null;
  readonly client: string;
  readonly key_id: string;
  /** A legacy (TLS 1.2, OpenPGP) peer's fingerprint; only in its records (key_id is then ""). */
  readonly fingerprint?: string;
  readonly address: string;
  readonly port: number;
  /** Which server: host name, process id, --servicename. */
  readonly server: { readonly host: string; readonly pid: number; readonly name: string };
}

/** How a known client's request was cut short: its connection's outcome, as the metrics label it. */
export type CutShort = "peer_closed" | "socket_error" | "tls_error" | "shutdown" | "timeout" | "internal_error";

/** SecretAbandoned's outcomes, named as CutShort (and the metrics' labels). */
function cutShort(outcome: SecretAbandoned["outcome"]): CutShort {
  return outcome.replace(/-/g, "_") as CutShort;
}

export interface AuditOptions {
  /** The file to append to; undefined: none. */
  readonly path?: string;
  /** Also send each record to syslog (/dev/log unless `syslogPath`). */
  readonly syslog?: boolean;
  readonly syslogPath?: string;
  readonly server: AuditRecord["server"];
  readonly now?: () => Date;
  /** A record could not be written (ENOSPC, EIO...): said once per failure run, never thrown into the core. */
  readonly onError?: (message: string) => void;
  /** Records are written again after `lost` could not be: said once at the end of each failure run. */
  readonly onWritingAgain?: (lost: number) => void;
  /** The file was opened again after a reopen failed (`failures` attempts): said once. */
  readonly onNote?: (message: string) => void;
  /** How often a failed reopen is tried again; AUDIT_REOPEN_RETRY_MS unless a test says. */
  readonly reopenRetryMs?: number;
  /** writeSync's stand-in, for tests: a disk that fills mid-record. */
  readonly write?: (fd: number, bytes: Uint8Array, offset: number, length: number) => number;
}

export interface AuditLog {
  /**
   * Closes and reopens the file (SIGHUP, after logrotate moved it). A
   * failure is said (onError), not thrown, and tried again every
   * AUDIT_REOPEN_RETRY_MS until a reopen succeeds.
   */
  reopen(): void;
  /**
   * Whether records reach the file now: it is open and still under its
   * name (not moved by a logrotate whose SIGHUP never came, not deleted),
   * no reopen is being tried again, and the last record was written. False
   * without a file (`audit_syslog` alone).
   */
  readonly writing: boolean;
  close(): void;
}

/**
 * Opens the file and subscribes. A file that cannot be opened is said
 * (onError), not thrown: it is tried again every AUDIT_REOPEN_RETRY_MS, and
 * the records until then are counted lost.
 */
export function openAuditLog(options: AuditOptions): AuditLog {
  const now = options.now ?? (() => new Date());
  // Without blocking, and only a regular file (or /dev/null): a FIFO in its
  // place would hold the main thread for ever, at start or at a SIGHUP.
  const open = (path: string): number => {
    const opened = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK, AUDIT_FILE_MODE);
    const wrong = notARegularFile(path, fstatSync(opened));
    if (wrong === null) return opened;
    closeSync(opened);
    throw wrong;
  };
  let fd: number | undefined;
  let unsynced = false;
  let syncTimer: NodeJS.Timeout | undefined;
  const syncNow = (): void => {
    if (syncTimer !== undefined) clearTimeout(syncTimer);
    syncTimer = undefined;
    try {
      if (fd !== undefined && unsynced) fdatasyncSync(fd);
    } catch (error) {
      options.onError?.(`cannot sync the audit log: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
    unsynced = false;
  };
  // A lost copy is only a copy: the file is the record.
  const socket = options.syslog ? datagramSocketOrSay("audit records to syslog") : null;
  /** Records lost in the current failure run; 0 while writing. */
  let lost = 0;
  // The file ends in a cut record (as far as this writer knows): the next
  // record goes after a newline.
  let midLine = false;
  const writeBytes = options.write ?? ((f: number, b: Uint8Array, o: number, l: number): number => writeSync(f, b, o, l));
  /** Writes all of `bytes`, or throws; either way `midLine` says where the file now ends. */
  const writeRecord = (target: number, bytes: Uint8Array): void => {
    let done = 0;
    try {
      while (done < bytes.length) {
        const n = writeBytes(target, bytes, done, bytes.length - done);
        // write(2) returns 0 only when it can write nothing; it would again.
        if (n <= 0) throw Object.assign(new Error("short write"), { code: "ENOSPC" });
        done += n;
      }
    } finally {
      if (done > 0) midLine = bytes[done - 1] !== 0x0a;
    }
  };
  const syslogPath = options.syslogPath ?? "/dev/log";
  /** Whether the file open on `target` has been deleted (no name left: st_nlink 0). */
  const deleted = (target: number): boolean => {
    try {
      return fstatSync(target).nlink === 0;
    } catch {
      return false;
    }
  };

  const write = (outcome: AuditRecord["outcome"], reason: AuditRecord["reason"], client: string, keyId: string, c: ConnectionRef, fingerprint?: string): void => {
    const record: AuditRecord = {
      time: now().toISOString(), outcome, reason, client, key_id: keyId, ...(fingerprint === undefined ? {} : { fingerprint }),
      address: c.address, port: c.port, server: options.server,
    };
    const line = JSON.stringify(record);
    if (fd !== undefined && !retrying && deleted(fd)) {
      // Found deleted: opened anew now, or, failing that, tried every AUDIT_REOPEN_RETRY_MS.
      options.onError?.(`the audit log ${options.path ?? ""} was deleted while open: opening it anew`);
      reopenNow();
    }
    if (options.path !== undefined && fd === undefined) {
      // Not opened yet (the open at start failed): said with the open's failure; counted here.
      lost++;
      if (events.auditFailed.hasSubscribers) events.auditFailed.publish({ what: "write", reason: notOpenReason });
    } else if (fd !== undefined) {
      try {
        // Where the file is gone and no new one could be opened, a record written would be lost unseen.
        if (retrying && deleted(fd)) throw Object.assign(new Error("the audit file was deleted"), { code: "ENOENT" });
        writeRecord(fd, Buffer.from(`${midLine ? "\n" : ""}${line}\n`));
        if (lost > 0) options.onWritingAgain?.(lost);
        lost = 0;
      } catch (error) {
        const reason = (error as NodeJS.ErrnoException).code ?? String(error);
        if (lost === 0) options.onError?.(`cannot write the audit log: ${reason}`);
        lost++;
        if (events.auditFailed.hasSubscribers) events.auditFailed.publish({ what: "write", reason });
      }
      unsynced = true;
      if (syncTimer === undefined) {
        const target = fd;
        syncTimer = setTimeout(() => {
          syncTimer = undefined;
          unsynced = false;
          fdatasync(target, () => {});
        }, AUDIT_SYNC_MS);
        syncTimer.unref();
      }
    }
    socket?.send(`<${SYSLOG_PRI}>${AUDIT_SYSLOG_TAG}[${options.server.pid}]: ${line}`, syslogPath);
  };

  /** A reopen failed: tried again every AUDIT_REOPEN_RETRY_MS; how many attempts failed in this run. */
  let retrying = false;
  let failedReopens = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  const failure = new RepeatedFailure(() => now().getTime());
  const stopRetrying = (): void => {
    if (retryTimer !== undefined) clearInterval(retryTimer);
    retryTimer = undefined;
    retrying = false;
    failedReopens = 0;
    failure.reset();
  };
  /** Why records are lost while the file has never been opened: the last open's errno. */
  let notOpenReason = "";
  /**
   * Opens the file (anew in place of `fd`, or for the first time); a failure
   * is published each time and tried again; it is said as RepeatedFailure
   * says (its reason changed: the directory made, but by root; `asked`: an
   * operator's SIGHUP).
   */
  function reopenNow(asked = false): void {
    if (options.path === undefined) return;
    const first = fd === undefined;
    syncNow();
    let next: number;
    try {
      next = open(options.path);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? String(error);
      notOpenReason = reason;
      if (events.auditFailed.hasSubscribers) events.auditFailed.publish({ what: first ? "open" : "reopen", reason });
      failedReopens++;
      if (failure.shouldSay(reason, asked)) {
        const meanwhile = fd === undefined || deleted(fd) ? `records are lost meanwhile${fd === undefined ? "" : " (the file open was deleted)"}` : "records go on to the file open until then";
        options.onError?.(`cannot ${first ? "open" : "reopen"} the audit log ${options.path}: ${reasonWithCode(error)}; tried again every ${(options.reopenRetryMs ?? AUDIT_REOPEN_RETRY_MS) / 1000} s, ${meanwhile}`);
      }
      if (!retrying) {
        retrying = true;
        retryTimer = setInterval(() => reopenNow(), options.reopenRetryMs ?? AUDIT_REOPEN_RETRY_MS);
        retryTimer.unref();
      }
      return;
    }
    if (fd !== undefined) closeSync(fd);
    fd = next;
    // logrotate's new, empty file needs no newline before its first record.
    if (fstatSync(next).size === 0) midLine = false;
    if (retrying) {
      // The records lost meanwhile said now, not at the next record (which may be days away, after a reboot wave).
      const unwritten = lost === 0 ? "" : `; ${lost} ${lost === 1 ? "record" : "records"} could not be written meanwhile`;
      options.onNote?.(`${first ? "Opened" : "Reopened"} the audit log ${options.path}, after ${failedReopens} failed ${failedReopens === 1 ? "attempt" : "attempts"}${unwritten}`);
      lost = 0;
    }
    stopRetrying();
  }
  reopenNow();

  const subs = new Subscriptions();
  subs.on(events.secretSent, ({ connection, client, keyId, fingerprint }) => write("released", null, client, keyId, connection, fingerprint));
  subs.on(events.clientRejected, ({ connection, client, keyId, fingerprint, reason }) => write("refused", reason, client, keyId, connection, fingerprint));
  subs.on(events.secretAbandoned, ({ connection, client, keyId, fingerprint, outcome, stage }) =>
    write(stage === "Sending" ? "unconfirmed" : "abandoned", cutShort(outcome), client, keyId, connection, fingerprint));
  return {
    reopen: () => reopenNow(true),
    get writing() {
      if (fd === undefined || retrying || lost > 0 || options.path === undefined) return false;
      // Still the file under that name: not moved by a logrotate whose SIGHUP never came, nor deleted.
      try {
        const held = fstatSync(fd);
        const named = statSync(options.path);
        return held.ino === named.ino && held.dev === named.dev;
      } catch {
        return false;
      }
    },
    close() {
      subs.close();
      stopRetrying();
      syncNow();
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      socket?.close();
    },
  };
}
