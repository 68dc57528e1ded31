// The shared registry's link to etcd (docs/ETCD.md): several servers act as
// one fleet. Changes this server's registry announces (D-Bus, checkers,
// expiry, a delivered secret, an approval) go to etcd; changes the other
// servers made come back through a watch and are adopted by the registry.
// The state file stays this server's local copy of the last known shared
// state: it is what the server serves from while etcd cannot be reached.
//
// Theory of operation:
//   - Writes are batched: a changed property marks its key dirty; within
//     FLUSH_MS every dirty key goes out in transactions of at most
//     MAX_TXN_OPS puts, one flush in flight at a time. A reboot wave thus
//     costs a handful of transactions a second, not a round trip a secret.
//   - The journal: etcd's cost goes by the transaction, not by the key
//     (docs/ETCD.md "What a wave costs etcd"). A flush of at least
//     JOURNAL_MIN_CHANGES client changes (a reboot wave: an Expires a
//     secret) goes out as one journal record, one put, and while such
//     flushes follow each other they are STORM_FLUSH_MS apart. Readers
//     take each change of a record as a put of its key. FOLD_QUIET_MS
//     after its last record a server folds its records into the clients/
//     keys and deletes them; records of a server no longer live (killed,
//     or stopped) are folded by the others, and any record older than
//     ORPHAN_MS by whoever sees it. A fold writes a change only while it
//     is still the newest this server knows of its key. A record of a
//     later format (layout.ts's JOURNAL_VERSION) is read, never folded.
//   - Rule 1: a value is applied here only if it is not older (`at`, then
//     the server name) than the newest this server has of the same key,
//     written or not; so a server that comes back from an outage keeps the
//     newer of its change and etcd's, and an older value that lands late
//     (a write retried across an outage) is answered by the newer one.
//   - Rule 2: values this server wrote (`by`) are not applied again.
//   - Rule 3: changes made while applying another server's state are not
//     written back (they are that server's, already in etcd).
//   - A connection waiting here for approval is a key of this server's,
//     pending/NAME/SERVER, bound to its lease: put with the batch on
//     NeedApproval, deleted when no connection of NAME waits here, and gone
//     by itself when the server dies. Every server shows the fleet's
//     pending requests as ApprovalPending and NeedApproval.
//   - Servers whose clients.conf differ: each knows the client names etcd
//     holds, and its servers/ key says which of them it lacks
//     (checker-share.ts): a client's checker runs on a server that has it.
//   - A client added at run time (SIGHUP) takes the fleet's state at the
//     next sync (at once), as every client does at start-up; what etcd
//     lacks of it is seeded.
//   - A failed flush or sync marks the link degraded; a sync retries every
//     RETRY_MS until etcd answers again. The server says so loudly, once,
//     at a failure DEGRADED_AFTER_MS after the first: not for an election.
//     A sync that failed after etcd had answered part of its read (the
//     read itself costs etcd) is retried later each time, up to
//     SYNC_RETRY_MAX_MS.
//   - Only the fleet's directories are read and watched (layout.ts
//     FLEET_DIRS), each its own range, a page bounded in keys and in bytes
//     (READ_PAGE_BYTES): 70 MB planted elsewhere under the prefix kept
//     every server DEGRADED, its whole-prefix read failing each second.
//     Keys elsewhere are counted, said at WARNING, and never read. The
//     fold reads the journal in such pages too, each folded before the next.
//   - A client's key deleted by someone else (nothing of this release
//     deletes one: `etcdctl del --prefix` by hand or by a script) is
//     written back at once, as this server has it (its stamp kept, or a
//     seed), as after an etcd whose data was lost; an approval is not
//     (it was for the connections that waited then). Said in one WARNING
//     line, with how many, once a minute at most. A server's own servers/
//     key is put again by checker-share.ts, and its pending/ keys with it;
//     a pending/ key of its own deleted alone, while a connection waits
//     here, is put again too (the others would stop showing it waiting).
//     A journal record deleted with changes no clients/ key was seen to
//     take (a fold puts them before or with its delete) has those read
//     back, and written back where etcd's value is older.

import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { Etcd3, GRPCDeadlineExceededError, type IKeyValue, type IOptions, type IRangeResponse, type IRequestOp, type IResponseHeader } from "etcd3";
import type { Clock, TimerHandle } from "../clock.js";
import type { ClientProperty, ClientView, PendingRequest, RegistryEvent } from "../clients/contract.js";
import { checkerHoldsSecret } from "../clients/settings.js";
import { secretToOpen } from "../clients/secret-to-open.js";
import type { ClientRegistry } from "../clients/registry.js";
import type { Logger } from "../daemon/log.js";
import {
  approvalKey, clientKey, decodeJournal, decodePending, decodeValue, encodeJournal, encodePending, encodeValue, FLEET_DIRS, fleetDirOf, isScalar, isShared, journalKey, parseKey,
  pendingKey, PresentKeys, readJournal, readProperty, SHARED_PROPERTIES, StateBuilder, validValue, type JournalChange, type ParsedKey, type Stamped,
} from "./layout.js";
import type { EtcdSettings } from "./settings.js";
import type { FleetUnsentChange } from "../state/state-file.js";
import { readEtcdCredentials } from "./credentials.js";
import { explainEtcdTls } from "./tls-diagnosis.js";
import { CANCEL_WAIT_MS, watchPrefixes, type PrefixWatch } from "./prefix-watch.js";
import { attemptOptions, isAnswerTooLarge, KEEPALIVE_OPTIONS, memberPolicy, RECONNECT_OPTIONS, requestPolicy } from "./member-policy.js";
import { openEtcd } from "./token-clients.js";
import { CheckerShare } from "./checker-share.js";
import { RUNTIME_SETTINGS } from "../clients/runtime-settings.js";
import { within } from "../within.js";

/** Long enough to gather a burst of secrets into one transaction, short enough for the one-second promise. */
export const FLUSH_MS = 50;
/** etcd's default --max-txn-ops. */
export const MAX_TXN_OPS = 128;
/** A flush with at least this many client changes goes out as one journal record. */
export const JOURNAL_MIN_CHANGES = 16;
/** The most a journal record holds, encoded, about. */
export const JOURNAL_MAX_BYTES = 256 * 1024;
/** The most journal bytes in one transaction: well under etcd's default --max-request-bytes (1.5 MiB). */
export const TXN_MAX_JOURNAL_BYTES = 4 * JOURNAL_MAX_BYTES;
/** Between flushes while they journal (a wave): four transactions a second, still within the fleet's one-second promise. */
export const STORM_FLUSH_MS = 250;
/** A server folds its journal records this long after writing its last one; also how often a server with records to fold looks again. */
export const FOLD_QUIET_MS = 3_000;
/** A record still unfolded after this long is folded by whichever server sees it, live writer or not. */
export const ORPHAN_MS = 60_000;
/** How often a degraded server asks etcd again. */
export const RETRY_MS = 1_000;
/**
 * The longest wait before a sync that failed is tried again, when etcd had
 * answered part of its read: such a try costs etcd the read, and one
 * that fails again and again (a read too slow for its deadline) is made
 * 1, 2, 4, then every 8 s. A sync that etcd did not answer at all (etcd
 * out of reach) costs it nothing, and is tried every RETRY_MS.
 */
export const SYNC_RETRY_MAX_MS = 8_000;
/** A decision written this long after it was given was late (an outage, a slow etcd): one not applied is logged. */
const LATE_DECISION_MS = 1_000;
/**
 * How far ahead of this server's clock a value's `at` may be. The fleet's
 * servers keep their clocks in step (NTP: milliseconds apart); a value
 * stamped further ahead would win over every change made until its time
 * comes (Rule 1), silently undoing operators' changes on every server, so
 * it is refused with a warning that names the server whose clock is off.
 */
export const MAX_AHEAD_MS = 10_000;
/** The same warning about etcd's values (a clock ahead, a value out of range) is logged once a minute at most. */
const WARN_EVERY_MS = 60_000;
/**
 * How long etcd may fail before the server logs that it is DEGRADED: a
 * failure after this long without an answer is an outage. When etcd's
 * leader is lost (its host hangs, or is cut off from the others), every
 * member refuses or times out requests until the others have elected a
 * new one: up to twice etcd's election timeout (1 s by default), then an
 * attempt's deadline (ATTEMPT_TIMEOUT_MS) and a retry (RETRY_MS) before a
 * sync comes through. Failures shorter than this are logged at debug
 * level only; the server meanwhile behaves as degraded all the same
 * (retries every RETRY_MS, runs every checker it must).
 */
export const DEGRADED_AFTER_MS = 5_000;
/**
 * The most a stopping server gives its last writes, and --check's TLS
 * diagnosis its handshake (a request's own attempts each have
 * ATTEMPT_TIMEOUT_MS: member-policy.ts).
 */
export const REQUEST_TIMEOUT_MS = 3_000;
/**
 * Keys read per request when reading the whole fleet: about 1 MB of
 * answer, well under gRPC's default 4 MiB message limit (10,000 clients
 * are 140,000 keys, 14 MB: one request could not carry them).
 */
export const READ_PAGE_KEYS = 10_000;
/**
 * About the most bytes (keys and values) a page of that read should carry:
 * the keys of the next page are as many as the last page's bytes a key
 * say fit (READ_PAGE_KEYS at most). A fleet's own keys (about 100 bytes)
 * never make it shorter than READ_PAGE_KEYS; values of 100 KB (not the
 * fleet's: planted by hand in a directory it reads) make it 20 keys, each
 * page an answer of milliseconds, where 10,000 of them could not be
 * answered at all.
 */
export const READ_PAGE_BYTES = 2 * 2 ** 20;
/** The directories a server reads and watches: every one of the fleet's but servers/ (checker-share.ts's). */
const READ_DIRS = FLEET_DIRS.filter((dir) => dir !== "servers/");
/** The most directories outside the fleet's that a warning names. */
const UNKNOWN_DIRS_NAMED = 5;
/** Keys deleted by someone else are gathered this long (a script's several `etcdctl del`) before the line that says how many. */
const DELETIONS_GATHER_MS = 1_000;
/**
 * Clients seeded a batch (14 keys each: 55 transactions of MAX_TXN_OPS):
 * a new fleet's seed of 10,000 clients is written in 20 batches, so that
 * its unwritten changes never all wait in memory at once.
 */
export const SEED_CLIENTS = 500;
/**
 * The largest answer from etcd we accept (gRPC's default is 4 MiB). A
 * watcher catching up (after an outage, or started before another
 * server's seed lands) gets up to 1,000 revisions in one answer (etcd's
 * watchBatchMaxRevs), each of our transactions MAX_TXN_OPS puts of about
 * 110 bytes: 14 MB; this leaves room for longer values.
 */
export const MAX_ANSWER_BYTES = 64 * 2 ** 20;
/**
 * The longest wait between two attempts of the watch stream to come back.
 * etcd3's default backoff grows to 30 s: after an outage of ten seconds
 * the stream could stay away for as long again while reads and writes
 * already work, and changes made elsewhere would not arrive within the
 * second the fleet promises.
 */
export const WATCH_RETRY_MAX_MS = 1_000;

/** The watch stream's wait before its next attempt: 100 ms, doubling up to WATCH_RETRY_MAX_MS. */
class WatchBackoff {
  constructor(readonly duration = 0) {}

  next(): WatchBackoff {
    return new WatchBackoff(Math.min(WATCH_RETRY_MAX_MS, Math.max(100, this.duration * 2)));
  }
}

/** How a server's link to etcd fares (the metrics' mandos_etcd_*). */
export interface EtcdLink {
  /** The server has said DEGRADED (etcd failed for DEGRADED_AFTER_MS or more) and etcd has not answered since. */
  readonly degraded: boolean;
  /** Syncs, flushes and folds that failed since the server started, short failures (an election) included. */
  readonly failures: number;
}

interface Dirty {
  readonly key: string;
  readonly value: Stamped;
  /** When this server made the change, on its monotonic clock: an approval's `held` (#outgoing). */
  readonly markedAt?: number;
}

/** A value coming in from etcd: a key's put or delete, or one change of a journal record (taken as a put). */
interface Incoming {
  readonly type: "Put" | "Delete";
  readonly key: string;
  readonly text: string;
  /** The event's revision, as the watch brings it (a read's keys have none here). */
  readonly revision?: bigint;
}

/** One request of a write, made only when its transaction is sent, and what to do once etcd has it. */
interface WriteItem {
  request(lease: string | null): IRequestOp;
  done(): void;
  /** About how many bytes the request carries, when that may be many (a journal record). */
  readonly bytes?: number;
}

export interface FleetStateDeps {
  readonly registry: ClientRegistry;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Names this server in the values it writes; unique per process. */
  readonly serverId?: string;
  /**
   * Per client, the settings (ClientSettings fields) whose clients.conf
   * value was edited since this server's last save (state-file.ts
   * restoreState): they win over the fleet's, as a change made at start-up.
   */
  readonly editedInFile?: ReadonlyMap<string, readonly string[]>;
  /** Keys per request when reading the whole fleet (default READ_PAGE_KEYS; tests make it small). */
  readonly readPageKeys?: number;
  /**
   * The changes this server had not yet written to etcd when its state
   * file was last saved (StateFile.fleetUnsent): they go out at the first
   * sync, with the time they were made, so a server restarted while etcd
   * was down loses none of them and overwrites nothing newer.
   */
  readonly unsent?: readonly unknown[];
}

export class FleetState {
  readonly #etcd: Etcd3;
  /** Kept for the watches' own connections (prefix-watch.ts): the files they name are read once, as root. */
  readonly #options: IOptions;
  readonly #prefix: string;
  readonly #registry: ClientRegistry;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #id: string;
  readonly #dirty = new Map<string, Dirty>();
  /** The newest value of each key this server wrote or applied (Rule 1 holds for them too). */
  readonly #known = new Map<string, Stamped>();
  /** This server's pending/ keys to write: the encoded request, or null to delete. */
  readonly #pendingOut = new Map<string, string | null>();
  /** Clients with a connection waiting here: what their last NeedApproval said, and since when one has waited. */
  /**
   * The clients with a connection waiting here, and since when: `since` on
   * the wall clock (weighed against other servers' stamps), `sinceElapsed`
   * on the monotonic one (for local durations, which a clock step must not move).
   */
  readonly #waitingHere = new Map<string, { readonly request: PendingRequest; readonly since: number; readonly sinceElapsed: number }>();
  /**
   * Revisions of our transactions whose events the watch has not yet
   * brought back, each with the directories it wrote in: a watcher of one
   * directory sees only its own, and leaves the others to theirs.
   */
  readonly #ownRevisions = new Map<string, Set<string>>();
  /** Clients added at run time (SIGHUP) since the last sync: they take the fleet's state, not clients.conf's fresh one. */
  readonly #added = new Set<string>();
  /** Other servers' pending/ keys this server shows. */
  readonly #pendingIn = new Map<string, { readonly name: string; readonly server: string }>();
  /** Journal records in etcd for this server to fold, as far as it knows: who wrote each, and when (none of a later format). */
  readonly #journal = new Map<string, { readonly by: string; readonly at: number }>();
  #journalSeq = 0;
  /** When this server last wrote a journal record (its fold waits FOLD_QUIET_MS after it). */
  #lastJournalAt = -Infinity;
  /** The last flush wrote a journal record: the next waits STORM_FLUSH_MS. */
  #storm = false;
  #foldTimer: TimerHandle | null = null;
  readonly #unsubscribe: () => void;
  #applying = false;
  /** The last sync or flush failed; etcd has not answered since. */
  #degraded = false;
  /** When the first failure since etcd last answered happened. */
  #failingSince = 0;
  /** The CRITICAL line is logged: etcd failed after DEGRADED_AFTER_MS without an answer. */
  #announced = false;
  /** Syncs, flushes and folds that failed since the server started. */
  #failures = 0;
  /** The watch stream broke while the cluster still answered (one member gone): read the fleet again. */
  #resync = false;
  /**
   * The newest revision of etcd this server has seen, and its cluster's ID:
   * a whole read of an older revision, or of another cluster, means etcd's
   * history was replaced (restored from a snapshot, or its data wiped), and
   * the watch, resuming after a revision the new history has not reached,
   * would miss every change until it does.
   */
  #revision = 0n;
  #cluster: string | null = null;
  /** Client keys this server seeded (absent from etcd when it read it): where another server's seed landing after its own is weighed against it. */
  readonly #seeded: PresentKeys;
  /** When each warning about etcd's values was last logged, and how many were held back since (WARN_EVERY_MS). */
  readonly #warned = new Map<string, { at: number; held: number }>();
  /** When this server's lease was lost (monotonic clock), until it registers again; null while registered. */
  #leaseLostAt: number | null = null;
  /** The lease's loss is said at WARNING (it lasted DEGRADED_AFTER_MS): so is its end. */
  #leaseLostSaid = false;
  #leaseTimer: TimerHandle | null = null;
  /** The warning that etcd has authentication off though etcd_user is set is logged (once). */
  #authOffSaid = false;
  #synced = false;
  #flushing = false;
  #timer: TimerHandle | null = null;
  #watcher: PrefixWatch | null = null;
  #stopped = false;
  /** Aborted at stop(): a watch being made (etcd slow or gone) is given up. */
  readonly #stopping = new AbortController();
  readonly #checkers: CheckerShare;
  readonly #pageKeys: number;
  /** Keys a page of the next read of the fleet (#readAll): READ_PAGE_KEYS, fewer after pages of large values. */
  #pageLimit: number;
  /** Syncs in a row that failed after etcd had answered part of their read (SYNC_RETRY_MAX_MS). */
  #costlyFailures = 0;
  /** When keys outside the fleet's directories were last counted (#sayUnknown), and the directories last said. */
  #unknownCheckedAt = -Infinity;
  #unknownSaid = "";
  /** Clients', approvals' and this server's pending/ keys deleted by someone else since they were last said (#sayDeletions), and since when. */
  readonly #deletions = { clients: 0, approvals: 0, pending: 0, journal: 0, since: 0 };
  /** The changes of each journal record this server holds, until it is folded or found gone (#recordGone). */
  readonly #recordChanges = new Map<string, readonly JournalChange[]>();
  /** For each clients/ key a held record changes: how many records, and the newest value etcd's key was seen to hold since. */
  readonly #carried = new Map<string, { count: number; held: Stamped | null }>();
  /**
   * While a read of the whole fleet goes on: each key the watch brought an
   * event of since the read began, with the last one's revision and
   * whether it was a put. The read's value of such a key, of the read's
   * revision, is older than what etcd holds and this server took: not
   * taken again; and a key put since is there, though the read did not
   * hold it (#sync).
   */
  #movedInRead: Map<string, { readonly revision: bigint; readonly put: boolean }> | null = null;
  /** Records another server's delete took away, to look at once the fold's puts (with or before it) have come. */
  readonly #gone = new Set<string>();
  #goneTimer: TimerHandle | null = null;
  #deletionsSaidAt = -Infinity;
  #deletionsTimer: TimerHandle | null = null;
  /** Every client name seen in etcd (a clients/ key, or a journal change of one): what this server lacks of them goes into its servers/ key. */
  readonly #names = new Set<string>();
  /** Names too many to say in the servers/ key were said at WARNING (once). */
  #lacksCutSaid = false;
  /** What this server lacks is to be said again, once the change under way is over (#lacksChanged). */
  #lacksDue = false;

  constructor(settings: EtcdSettings, deps: FleetStateDeps) {
    this.#options = etcdOptions(settings);
    this.#prefix = settings.prefix;
    this.#registry = deps.registry;
    this.#logger = deps.logger;
    this.#etcd = openEtcd(this.#options, () => {
      if (this.#authOffSaid) return;
      this.#authOffSaid = true;
      this.#logger.warning(`etcd_user is ${settings.user ?? "set"}, but etcd has authentication off: going on without logging in (anyone who reaches etcd can change the fleet: docs/ETCD.md "Securing etcd")`);
    });
    this.#clock = deps.clock;
    this.#id = deps.serverId ?? `${hostname()}/${process.pid}/${randomBytes(4).toString("hex")}`;
    this.#pageKeys = deps.readPageKeys ?? READ_PAGE_KEYS;
    this.#pageLimit = this.#pageKeys;
    this.#seeded = new PresentKeys(this.#prefix);
    this.#unsubscribe = this.#registry.subscribe((event) => this.#onEvent(event));
    this.#checkers = new CheckerShare(
      this.#etcd, this.#options, this.#prefix, this.#id, () => this.#registered(), () => this.#leaseLost(), () => this.#watchCancelled(), () => this.#putAgain(),
    );
    this.#registry.setCheckerOwnership((name) => this.#checkers.owns(name));
    this.#restoreUnsent(deps.unsent ?? []);
    this.#markEdited(deps.editedInFile ?? new Map());
  }

  /**
   * This server's changes that etcd has not acknowledged, for the state
   * file: what a restart must not lose. Seeds (at 0) are not changes, and
   * approval decisions belong to the connection that waited: neither is kept.
   */
  unsent(): FleetUnsentChange[] {
    this.#restampAhead();
    const out: FleetUnsentChange[] = [];
    for (const { key, value } of this.#dirty.values()) {
      if (value.at <= 0 || parseKey(this.#prefix, key)?.kind !== "client") continue;
      out.push({ key: key.slice(this.#prefix.length), value: value.value, at: value.at, by: value.by });
    }
    return out;
  }

  /** Takes back the unsent changes of the state file; anything malformed or of a client no longer configured is dropped. */
  #restoreUnsent(unsent: readonly unknown[]): void {
    let restored = 0;
    for (const entry of unsent) {
      if (typeof entry !== "object" || entry === null) continue;
      const { key, value, at, by } = entry as Partial<FleetUnsentChange>;
      if (typeof key !== "string" || typeof at !== "number" || !Number.isFinite(at) || at <= 0 || typeof by !== "string") continue;
      if (!isScalar(value)) continue;
      // Made while this server's clock was ahead, put right since: nothing
      // tells when it was made, and written as it is it would win over
      // every change made until its time came.
      const ahead = at - this.#clock.now();
      if (ahead > MAX_AHEAD_MS) {
        this.#warn("own ahead", `the state file's unsent ${key} is stamped ${seconds(ahead)} ahead of this server's clock (was the clock ahead?): dropped, the fleet's value stands`);
        continue;
      }
      const full = this.#prefix + key;
      const parsed = parseKey(this.#prefix, full);
      if (parsed?.kind !== "client" || !this.#registry.get(parsed.name)) continue;
      this.#dirty.set(full, { key: full, value: { value, at, by } });
      restored++;
    }
    if (restored > 0) this.#logger.info(`${restored} change(s) made before the restart are not yet in etcd; they go out when it answers`);
  }

  /**
   * clients.conf values edited since the last save are changes of this
   * server, made now: newer than the fleet's, so they win everywhere, as
   * they win over the state file's (docs/ETCD.md "Start-up").
   */
  #markEdited(edited: ReadonlyMap<string, readonly string[]>): void {
    const now = this.#clock.now();
    for (const [name, fields] of edited) {
      const client = this.#registry.get(name);
      if (!client) continue;
      for (const row of RUNTIME_SETTINGS) {
        if (!fields.includes(row.field) || !this.#shareable(client, row.property)) continue;
        const key = clientKey(this.#prefix, name, row.property);
        this.#dirty.set(key, { key, value: { value: readProperty(client, row.property), at: now, by: this.#id } });
        this.#logger.info(`${name}: ${row.property} edited in clients.conf since the last save; it replaces the fleet's`);
      }
    }
  }

  /**
   * True from etcd's first failure until it answers again: the server
   * serves from its local copy. It says DEGRADED only later (link()).
   */
  get degraded(): boolean {
    return this.#degraded;
  }

  /** How the link to etcd fares, for the metrics. */
  link(): EtcdLink {
    return { degraded: this.#announced, failures: this.#failures };
  }

  /** Reads the fleet's state, adopts it, seeds what etcd lacks, and watches. Never throws: without etcd it serves degraded and retries. */
  async start(): Promise<void> {
    await this.#sync();
  }

  /**
   * Writes what is left (best effort) and closes the link. Bounded: an
   * etcd that does not answer (hung, or partitioned away) holds it
   * REQUEST_TIMEOUT_MS at most for the writes, then two CANCEL_WAIT_MS for
   * the watches and the lease; what was not written stays in unsent(), for
   * the state file the caller saves.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopping.abort();
    this.#unsubscribe();
    this.#timer?.cancel();
    this.#foldTimer?.cancel();
    this.#leaseTimer?.cancel();
    this.#deletionsTimer?.cancel();
    this.#goneTimer?.cancel();
    if (!this.#degraded && this.#hasWork()) await this.#write(Date.now() + REQUEST_TIMEOUT_MS).catch(() => undefined);
    await Promise.all([this.#watcher?.close(), this.#checkers.stop(CANCEL_WAIT_MS)]);
    this.#registry.setCheckerOwnership(null);
    this.#etcd.close();
  }

  // ------------------------------------------------------- our changes out

  #onEvent(event: RegistryEvent): void {
    if (event.type === "client-added" || event.type === "client-removed") this.#lacksChanged();
    if (this.#applying) return; // Rule 3
    const now = this.#clock.now();
    if (event.type === "client-added") {
      this.#added.add(event.client.name);
      this.#schedule(0);
    } else if (event.type === "property-changed" && this.#shareable(event.client, event.property)) {
      // A client leaving this server (a reload without its section, or
      // with a new key for it; `mandos-ctl --remove`) is disabled as it
      // goes, as the reference's RemoveClient disables it: this server's
      // leaving, not an operator's disable. Shared, it disabled the client
      // on every server, and for good: put back (or given its new key) it
      // took the fleet's newer Enabled false, and never booted unattended.
      if (!this.#registry.has(event.client.name)) return;
      if (event.scheduleStart && this.#keepsFleetExpires(event.client)) return;
      this.#mark(clientKey(this.#prefix, event.client.name, event.property), readProperty(event.client, event.property), now);
    } else if (event.type === "approval-given") {
      this.#mark(approvalKey(this.#prefix, event.client.name), event.approved, now);
    } else if (event.type === "need-approval") {
      const request = { timeout: event.timeout, approvedByDefault: event.approvedByDefault };
      const was = this.#waitingHere.get(event.client.name);
      this.#waitingHere.set(event.client.name, { request, since: was?.since ?? now, sinceElapsed: was?.sinceElapsed ?? this.#clock.elapsed() });
      this.#pendingOut.set(pendingKey(this.#prefix, event.client.name, this.#id), encodePending(request));
      this.#schedule(FLUSH_MS);
    } else if (event.type === "approval-wait-ended") {
      this.#waitingHere.delete(event.client.name);
      this.#pendingOut.set(pendingKey(this.#prefix, event.client.name, this.#id), null);
      this.#schedule(FLUSH_MS);
    }
  }

  /**
   * Whether the Expires a checker schedule's start gave `c` here (this
   * server's start, or `c` added by a reload: the reference's init_checker)
   * gives way to the fleet's, taken back here: so when another server is
   * live (it ran the checkers while this one was away) and the fleet's
   * Expires is still ahead. A restart of one server then moves no client's
   * Expires on the others (it once cut every client's extended timeout
   * short, fleet-wide). Otherwise (no other server live: the whole fleet
   * restarts, or etcd is out of reach; or the fleet's Expires has passed,
   * or is this server's own seed) nobody checked the client meanwhile, and
   * the start's Expires is the reference's grace, shared as any change.
   */
  #keepsFleetExpires(c: ClientView): boolean {
    // Added by a reload: the next sync (at once) takes the fleet's state, its Expires among it, or seeds etcd with this one.
    if (this.#added.has(c.name) && this.#checkers.othersLive()) return true;
    const fleet = this.#known.get(clientKey(this.#prefix, c.name, "Expires"));
    if (!fleet || fleet.by === this.#id || typeof fleet.value !== "number" || fleet.value <= this.#clock.now() || !this.#checkers.othersLive()) return false;
    const expires = fleet.value;
    // After the registry's announcement of its own has reached every subscriber.
    queueMicrotask(() => {
      if (this.#stopped) return;
      this.#applying = true;
      try {
        this.#registry.adopt(c.name, { runtime: { expires }, settings: {} });
      } finally {
        this.#applying = false;
      }
    });
    return true;
  }

  /**
   * etcd let this server's lease expire (etcd out of reach for its TTL, a
   * frozen host) or revoked it: every checker runs here until it registers
   * again (checker-share.ts). Said as an outage is (#goDegraded): at debug
   * level, and at WARNING only once it has lasted DEGRADED_AFTER_MS.
   */
  #leaseLost(): void {
    if (this.#stopped) return;
    const lostAt = this.#clock.elapsed();
    this.#leaseLostAt = lostAt;
    this.#logger.debug("etcd lease lost (expired or revoked): running every client's checker until registered again");
    this.#leaseTimer?.cancel();
    this.#leaseTimer = this.#clock.setTimeout(() => {
      this.#leaseTimer = null;
      if (this.#stopped || this.#leaseLostAt !== lostAt) return;
      this.#leaseLostSaid = true;
      this.#logger.warning(
        `etcd lease lost ${seconds(this.#clock.elapsed() - lostAt)} ago, not registered again yet: running every client's checker until registered again`,
      );
    }, DEGRADED_AFTER_MS);
  }

  /** A new lease: said if an old one was lost; the pending/ keys bound to the old one are gone, so they go out again. */
  #registered(): void {
    if (this.#leaseLostAt !== null) {
      const line = `registered with etcd again, ${seconds(this.#clock.elapsed() - this.#leaseLostAt)} after the lease was lost: checkers shared with the fleet again`;
      if (this.#leaseLostSaid || this.#clock.elapsed() - this.#leaseLostAt >= DEGRADED_AFTER_MS) this.#logger.warning(line);
      else this.#logger.debug(line);
      this.#leaseLostAt = null;
      this.#leaseLostSaid = false;
      this.#leaseTimer?.cancel();
      this.#leaseTimer = null;
    }
    this.#putWaiting();
  }

  /**
   * This server's servers/ key was deleted by someone else while its lease
   * lived, and checker-share.ts has put it again: said, and the pending/
   * keys bound to the lease, gone with it most likely, go out again.
   */
  #putAgain(): void {
    this.#warn("own servers key", `this server's key servers/${this.#id} was deleted in etcd by someone else while its lease lived (etcdctl del?): put again`);
    this.#putWaiting();
  }

  /** A new lease: the pending/ keys bound to the old one are gone, so they go out again. */
  #putWaiting(): void {
    for (const [name, { request }] of this.#waitingHere) this.#pendingOut.set(pendingKey(this.#prefix, name, this.#id), encodePending(request));
    if (this.#waitingHere.size > 0) this.#schedule(FLUSH_MS);
  }

  /**
   * A client a reload added, its clients.conf section enabled, that the
   * fleet has disabled (an operator, its checker, a timeout: on any
   * server, long ago maybe) stays refused, as docs/ETCD.md "Start-up"
   * says: said, with when and through which server, so that an operator
   * who added it (a machine reinstalled under an old name) sees why.
   * Before, each of its requests logged only that it was disabled.
   */
  #sayDisabledInFleet(name: string): void {
    const entry = this.#registry.entry(name);
    if (!entry?.settings.enabled || entry.runtime.enabled) return;
    const disabled = this.#newest(clientKey(this.#prefix, name, "Enabled"));
    if (disabled?.value !== false) return;
    const when = disabled.at > 0 ? `since ${new Date(disabled.at).toISOString()}, through ${disabled.by}` : `as the fleet was seeded, by ${disabled.by}`;
    this.#logger.warning(`${name}, added by the reload, is disabled in the fleet (${when}): refused on every server until enabled (mandos-ctl --enable ${name})`);
  }

  /**
   * The fleet's clients this server does not have (its clients.conf lacks
   * them, or it removed them) go into its servers/ key, so that their
   * checkers run on a server that has them (checker-share.ts).
   */
  #lacksChanged(): void {
    if (this.#lacksDue) return;
    this.#lacksDue = true;
    // Once for a whole reload or page of the fleet (a reload that adds
    // 10,000 clients is as many events): after it, not at each of them.
    queueMicrotask(() => {
      this.#lacksDue = false;
      if (!this.#stopped) this.#sayLacks();
    });
  }

  #sayLacks(): void {
    const lacks = [...this.#names].filter((name) => !this.#registry.has(name)).sort();
    const { left } = this.#checkers.setLacks(lacks);
    if (left > 0 && !this.#lacksCutSaid) {
      this.#lacksCutSaid = true;
      this.#logger.warning(`this server lacks ${lacks.length} of the fleet's clients, too many to say in etcd: ${left} of them may go unchecked (docs/ETCD.md "Checkers")`);
    }
  }

  /**
   * Whether `c`'s `property` goes to etcd: a shared one, but never a
   * Checker that holds the client's secret (an expanded `%(secret)s`:
   * docs/ETCD.md, no secret in etcd in any form).
   */
  #shareable(c: ClientView, property: ClientProperty): boolean {
    if (!isShared(property)) return false;
    if (property !== "Checker") return true;
    const secret = this.#registry.entry(c.name)?.settings.secret;
    if (secret === undefined) return true;
    // A Python server's sealed secret, not yet opened, stands for clients.conf's.
    return !checkerHoldsSecret(String(readProperty(c, "Checker")), secretToOpen(secret)?.configSecret ?? secret);
  }

  #hasWork(): boolean {
    return this.#dirty.size > 0 || this.#pendingOut.size > 0 || this.#added.size > 0;
  }

  #mark(key: string, value: Stamped["value"], at: number): void {
    this.#dirty.set(key, { key, value: { value, at, by: this.#id }, markedAt: this.#clock.elapsed() });
    this.#schedule(FLUSH_MS);
  }

  /** Schedules a flush or sync `ms` from now; FLUSH_MS stretches to STORM_FLUSH_MS while flushes journal. */
  #schedule(ms: number): void {
    if (this.#timer || this.#stopped) return;
    if (ms === FLUSH_MS && this.#storm) ms = STORM_FLUSH_MS;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      void (this.#degraded || this.#resync || !this.#synced || this.#added.size > 0 ? this.#sync() : this.#flush());
    }, ms);
  }

  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      await this.#write();
    } catch (error) {
      this.#goDegraded(error);
    } finally {
      this.#flushing = false;
    }
    if (this.#hasWork()) this.#schedule(this.#degraded ? RETRY_MS : FLUSH_MS);
  }

  /**
   * Puts every dirty key and this server's pending/ changes, MAX_TXN_OPS
   * to a transaction; a key changed again meanwhile stays dirty. At least
   * JOURNAL_MIN_CHANGES client changes go as journal records instead, one
   * put each. A pending request waits for the lease it is bound to.
   */
  async #write(deadline?: number): Promise<void> {
    // The lease too within the deadline: a stopping server's lease asked of
    // a hung etcd held its stop for four attempts before the writes' 3 s.
    const granted = this.#pendingOut.size > 0 ? this.#checkers.leaseId() : null;
    this.#restampAhead();
    const lease = granted === null ? null : deadline === undefined ? await granted : await within(granted, deadline - Date.now(), null);
    // What to write, as it stands now; each transaction's requests are made
    // only when it is sent (a first server's seed is 14 keys a client).
    const items: WriteItem[] = [];
    const journaled = [...this.#dirty.values()].filter((d) => d.value.at > 0 && parseKey(this.#prefix, d.key)?.kind === "client");
    const journal = journaled.length >= JOURNAL_MIN_CHANGES;
    const inJournal = new Set<Dirty>(journal ? journaled : []);
    if (journal) items.push(...this.#journalItems(journaled));
    for (const d of this.#dirty.values()) {
      if (inJournal.has(d)) continue;
      items.push({
        request: () => putStamped(d.key, this.#outgoing(d)),
        done: () => {
          this.#heldInEtcd(d.key, d.value);
          this.#written(d);
        },
      });
    }
    for (const [key, pending] of this.#pendingOut) {
      if (pending !== null && lease === null) continue;
      items.push({
        request: (l) => (pending === null ? { request_delete_range: { key: Buffer.from(key) } } : { request_put: { key: Buffer.from(key), value: Buffer.from(pending), lease: l! } }),
        done: () => {
          if (this.#pendingOut.get(key) === pending) this.#pendingOut.delete(key);
        },
      });
    }
    this.#storm = journal;
    await this.#send(items, lease, deadline);
  }

  /**
   * Sends `items` in order, MAX_TXN_OPS and TXN_MAX_JOURNAL_BYTES at most
   * to a transaction, each attempt of each within ATTEMPT_TIMEOUT_MS
   * (member-policy.ts), or all by `deadline` if one is given.
   */
  async #send(items: readonly WriteItem[], lease: string | null, deadline?: number): Promise<void> {
    for (let i = 0; i < items.length; ) {
      let end = i;
      for (let bytes = 0; end < items.length && end - i < MAX_TXN_OPS; end++) {
        bytes += items[end]!.bytes ?? 0;
        if (bytes > TXN_MAX_JOURNAL_BYTES && end > i) break;
      }
      const chunk = items.slice(i, end);
      i = end;
      const requests = chunk.map((item) => item.request(lease));
      const res = await this.#etcd.kv.txn({ success: requests }, deadline === undefined ? undefined : { deadline });
      const dirs = new Set<string>();
      for (const r of requests) {
        const dir = fleetDirOf(this.#prefix, (r.request_put?.key ?? r.request_delete_range?.key ?? "").toString());
        if (dir !== null && dir !== "servers/") dirs.add(dir);
      }
      if (dirs.size > 0) this.#ownRevisions.set(res.header.revision, dirs);
      this.#saw(res.header.revision);
      for (const item of chunk) item.done();
    }
  }

  /**
   * etcd has `d`. It is the newest this server knows of its key unless a
   * newer value came in while it was on its way (another server's change,
   * taken meanwhile): that one stays known. Remembered instead, the older
   * value was what this server wrote back when the key was next deleted,
   * and the newer one's server wrote its own over it again, warning of a
   * clock behind.
   */
  #written(d: Dirty): void {
    const known = this.#known.get(d.key);
    if (!known || !newer(known, d.value)) this.#remember(d.key, d.value);
    if (this.#dirty.get(d.key) === d) this.#dirty.delete(d.key);
  }

  /**
   * `d`'s value as it goes out now: an approval or denial given here
   * carries how long it has waited to be written (`held`: an outage keeps
   * it), so that the others can tell whether it still holds (#inForce).
   */
  #outgoing(d: Dirty): Stamped {
    if (d.value.by !== this.#id || parseKey(this.#prefix, d.key)?.kind !== "approval") return d.value;
    const held = d.markedAt === undefined ? this.#clock.now() - d.value.at : this.#clock.elapsed() - d.markedAt;
    return { ...d.value, held: Math.max(0, held) };
  }

  /** `changes` as journal records of at most JOURNAL_MAX_BYTES each. */
  #journalItems(changes: readonly Dirty[]): WriteItem[] {
    const items: WriteItem[] = [];
    let record: Dirty[] = [];
    let bytes = 0;
    const close = (): void => {
      if (record.length === 0) return;
      const these = record;
      const key = journalKey(this.#prefix, this.#id, this.#journalSeq++);
      const at = this.#clock.now();
      items.push({
        bytes,
        request: () => ({ request_put: { key: Buffer.from(key), value: Buffer.from(encodeJournal(this.#prefix, { at, by: this.#id, changes: these })) } }),
        done: () => {
          for (const d of these) this.#written(d);
          this.#journal.set(key, { by: this.#id, at });
          this.#carry(key, these.map((d) => ({ key: d.key, value: d.value })));
          this.#lastJournalAt = this.#clock.elapsed();
          this.#armFold();
        },
      });
      record = [];
      bytes = 0;
    };
    for (const d of changes) {
      // The change's share of the record, near enough: its key, its value, its stamp.
      const size = d.key.length + JSON.stringify(d.value.value).length + d.value.by.length + 32;
      if (bytes + size > JOURNAL_MAX_BYTES) close();
      record.push(d);
      bytes += size;
    }
    close();
    return items;
  }

  // ------------------------------------------------------------- the fold

  /** Looks at the journal FOLD_QUIET_MS from now, if nothing is set to. */
  #armFold(): void {
    if (this.#foldTimer || this.#stopped) return;
    this.#foldTimer = this.#clock.setTimeout(() => {
      this.#foldTimer = null;
      void this.#fold();
    }, FOLD_QUIET_MS);
  }

  /** The records this server should fold now: its own after FOLD_QUIET_MS of quiet, a dead server's, any older than ORPHAN_MS. */
  #foldable(): string[] {
    const now = this.#clock.now();
    const registered = this.#checkers.isLive(this.#id);
    const out: string[] = [];
    for (const [key, { by, at }] of this.#journal) {
      if (by === this.#id ? this.#clock.elapsed() - this.#lastJournalAt >= FOLD_QUIET_MS : (registered && !this.#checkers.isLive(by)) || now - at >= ORPHAN_MS) out.push(key);
    }
    return out;
  }

  /**
   * Writes the changes of the foldable records into their clients/ keys,
   * each only while no newer value of its key is known here, and deletes
   * each record in the transaction of its last change or after it.
   */
  async #fold(): Promise<void> {
    if (this.#stopped) return;
    const keys = this.#synced && !this.#degraded && !this.#flushing ? this.#foldable() : [];
    if (keys.length > 0) {
      this.#flushing = true;
      try {
        // Taken off the list as found; what is left is gone from etcd already (folded by another server).
        const unfound = new Set(keys);
        // A page at a time, each folded before the next is read: the whole
        // journal in one answer could exceed what the server takes (gRPC's
        // 64 MiB: large records, or a great many), as the fleet's read could.
        await this.#readPages("journal/", {}, async (kvs) => {
          const items: WriteItem[] = [];
          for (const kv of kvs) {
            const key = kv.key.toString();
            if (!unfound.delete(key)) continue;
            for (const change of decodeJournal(this.#prefix, kv.value.toString())?.changes ?? []) {
              const newest = this.#newest(change.key);
              if (newest && newer(newest, change.value)) continue;
              // Its size, for #send's bytes a transaction: a change may carry a large value.
              const bytes = change.key.length + JSON.stringify(change.value.value).length + change.value.by.length + 32;
              items.push({ bytes, request: () => putStamped(change.key, change.value), done: () => this.#heldInEtcd(change.key, change.value) });
            }
            items.push({
              request: () => ({ request_delete_range: { key: kv.key } }),
              done: () => {
                this.#journal.delete(key);
                this.#carry(key, null);
              },
            });
          }
          await this.#send(items, null);
        });
        for (const key of unfound) {
          this.#journal.delete(key);
          this.#carry(key, null);
        }
      } catch (error) {
        this.#goDegraded(error);
        this.#schedule(RETRY_MS);
      } finally {
        this.#flushing = false;
      }
      // A flush or sync that came due meanwhile found the link busy: it goes now.
      if (this.#hasWork() || this.#resync) this.#schedule(FLUSH_MS);
    }
    if (this.#journal.size > 0) this.#armFold();
  }

  /** The newest value of `key` this server has, written or not (Rule 1). */
  #newest(key: string): Stamped | undefined {
    return this.#dirty.get(key)?.value ?? this.#known.get(key);
  }

  /**
   * Keeps the newest value of `key` for Rule 1. A seed (at 0) is older
   * than anything and need not be kept: 140,000 of them, for 10,000
   * clients, would only weigh on every garbage collection.
   */
  #remember(key: string, value: Stamped): void {
    if (value.at > 0) this.#known.set(key, value);
  }

  // ---------------------------------------------------- theirs coming in

  /** Reads everything under the prefix, adopts what is newer, seeds what is missing, then writes and watches. */
  async #sync(): Promise<void> {
    if (this.#flushing || this.#stopped) return;
    this.#flushing = true;
    // What this server held for etcd, written by this sync: said at the end of an outage.
    const held = this.#dirty.size;
    const answered = { pages: 0 };
    try {
      // Each page is adopted as it comes (values of one revision; Rule 1
      // holds across pages): a fleet's 140,000 keys are never in memory at once.
      const present = new PresentKeys(this.#prefix);
      this.#journal.clear();
      for (const key of [...this.#recordChanges.keys()]) this.#carry(key, null);
      // A linearizable read is of a revision at or after every one seen
      // before it is sent: weighed against those alone. The watch, still
      // open, brings later ones while a large fleet is read (seconds, for
      // tens of MB): weighed against those, the read looked older than
      // etcd's history.
      const seenBefore = this.#revision;
      // Nor is a key's value taken from the read once the watch brought a
      // later one: weighed against it, the read's was older, and written
      // back over etcd's with the value etcd held already.
      const moved = (this.#movedInRead = new Map<string, { readonly revision: bigint; readonly put: boolean }>());
      const { revision, header } = await this.#readAll(answered, (kvs, at) => {
        const incoming: Incoming[] = kvs.map((kv) => ({ type: "Put", key: kv.key.toString(), text: kv.value.toString() }));
        this.#apply(moved.size === 0 ? incoming : incoming.filter((i) => !((moved.get(i.key)?.revision ?? 0n) > at)), true);
        for (const i of incoming) {
          const parsed = parseKey(this.#prefix, i.key);
          present.add(i.key, parsed);
          // A key whose value is only in a journal record so far is there all the same.
          if (parsed?.kind === "journal") for (const c of decodeJournal(this.#prefix, i.text)?.changes ?? []) present.add(c.key);
        }
      });
      // A key put since the read's revision is in etcd all the same: not
      // seeded over, and another server's request (pending/) put then is
      // still shown (it was forgotten, though its connection waited on).
      for (const [key, last] of moved) if (last.put && last.revision > revision) present.add(key);
      this.#movedInRead = null;
      this.#forgetPending(present);
      if (this.#historyReplaced(header, seenBefore)) {
        // Watched anew from this read; the servers' watch too.
        await Promise.all([this.#watcher?.close(), this.#checkers.rewatch()]);
        this.#watcher = null;
        this.#ownRevisions.clear();
      }
      this.#cluster = header.cluster_id;
      this.#saw(header.revision);
      await this.#sayUnknown(header.revision);
      // Watch before writing: a watch begun after a new fleet's seed
      // (140,000 puts for 10,000 clients) was sent every one of them back
      // at once, decoded in one burst; begun first, each comes back with
      // its transaction (ours are skipped by revision, or by Rule 2 when
      // one comes back before its answer), and other servers' changes
      // made meanwhile are adopted at once.
      if (!this.#watcher) await this.#watch(revision + 1n);
      const added = [...this.#added];
      // Every client, at every sync: what etcd lacks is written again
      // (a new fleet, a client added, a history replaced, a key deleted by hand).
      const unseeded = this.#registry.list();
      await this.#checkers.start();
      // What etcd lacks, SEED_CLIENTS clients at a time (each batch written
      // before the next is made): a new fleet's whole seed held at once
      // was 140,000 unwritten changes and their requests.
      let i = 0;
      do {
        this.#seed(present, unseeded.slice(i, (i += SEED_CLIENTS)));
        await this.#write();
      } while (i < unseeded.length && !this.#stopped);
      this.#synced = true;
      for (const name of added) {
        this.#added.delete(name);
        this.#sayDisabledInFleet(name);
      }
      this.#recovered(held);
      this.#resync = false;
      this.#costlyFailures = 0;
    } catch (error) {
      this.#goDegraded(error);
      this.#schedule(answered.pages > 0 ? Math.min(SYNC_RETRY_MAX_MS, RETRY_MS * 2 ** this.#costlyFailures++) : RETRY_MS);
    } finally {
      this.#movedInRead = null;
      this.#flushing = false;
    }
    if (this.#hasWork()) this.#schedule(FLUSH_MS);
  }

  /**
   * Every key of the fleet's directories (READ_DIRS, each its own range:
   * nothing else under the prefix), as of one revision, a page at a time
   * to `onPage` with that revision, counting the pages in `answered`;
   * resolves to that revision and the first page's header (a linearizable
   * read: its revision is at least any this server had seen of the same
   * history when the first page was asked for); pages as #readPages makes
   * them.
   */
  async #readAll(answered: { pages: number }, onPage: (kvs: readonly IKeyValue[], revision: bigint) => void): Promise<{ readonly revision: bigint; readonly header: IResponseHeader }> {
    const at: { first?: IResponseHeader } = {};
    for (const dir of READ_DIRS) {
      await this.#readPages(dir, at, (kvs) => {
        answered.pages++;
        onPage(kvs, BigInt(at.first!.revision));
      });
    }
    return { revision: BigInt(at.first!.revision), header: at.first! };
  }

  /**
   * Every key of `dir` (under the prefix), a page at a time to `onPage`,
   * each page taken before the next is asked for; all at the revision of
   * `at.first`, the first page's header (set here when it is not yet).
   * A page asks for #pageLimit keys, which follows the bytes a key of the
   * pages read so far (READ_PAGE_BYTES); an answer too large for gRPC is
   * asked again at once for a tenth of the keys, and a page that timed out
   * makes the next read's pages a quarter as long.
   */
  async #readPages(dir: string, at: { first?: IResponseHeader }, onPage: (kvs: readonly IKeyValue[]) => void | Promise<void>): Promise<void> {
    const end = prefixEnd(this.#prefix + dir);
    let key = Buffer.from(this.#prefix + dir);
    for (;;) {
      const limit = this.#pageLimit;
      let res: IRangeResponse;
      try {
        res = await this.#etcd.kv.range({ key, range_end: end, limit, ...(at.first ? { revision: at.first.revision } : {}) });
      } catch (error) {
        if (isAnswerTooLarge(error) && limit > 1) {
          this.#pageLimit = Math.max(1, Math.floor(limit / 10));
          continue;
        }
        if (error instanceof GRPCDeadlineExceededError) this.#pageLimit = Math.max(1, Math.floor(limit / 4));
        throw error;
      }
      at.first ??= res.header;
      let bytes = 0;
      for (const kv of res.kvs) bytes += kv.key.length + kv.value.length;
      // At most four times as many keys as this page: the next keys may be larger.
      if (res.kvs.length > 0) this.#pageLimit = Math.max(1, Math.min(this.#pageKeys, 4 * limit, Math.floor((READ_PAGE_BYTES * res.kvs.length) / Math.max(1, bytes))));
      await onPage(res.kvs);
      const last = res.kvs.at(-1);
      if (!res.more || !last) break;
      key = Buffer.concat([last.key, Buffer.from([0])]);
    }
  }

  /**
   * Counts the keys under the prefix outside the fleet's directories (a
   * later release's directory, or not the fleet's at all: this server
   * neither reads nor watches them), at `revision`, once a minute at most;
   * says at WARNING how many there are, and in which directories, when
   * those differ from what it last said. Never fails the sync: counting
   * is asking etcd for numbers and key names, never values.
   */
  async #sayUnknown(revision: string): Promise<void> {
    const now = this.#clock.elapsed();
    if (now - this.#unknownCheckedAt < WARN_EVERY_MS) return;
    this.#unknownCheckedAt = now;
    try {
      const count = async (from: Buffer, to: Buffer): Promise<number> =>
        Number((await this.#etcd.kv.range({ key: from, range_end: to, count_only: true, revision })).count);
      let unknown = await count(Buffer.from(this.#prefix), prefixEnd(this.#prefix));
      for (const dir of FLEET_DIRS) unknown -= await count(Buffer.from(this.#prefix + dir), prefixEnd(this.#prefix + dir));
      if (unknown <= 0) {
        this.#unknownSaid = "";
        return;
      }
      // Which directories: in each gap between the fleet's, the first key's, then past it.
      const named: string[] = [];
      const bounds = [Buffer.from(this.#prefix), ...FLEET_DIRS.flatMap((dir) => [Buffer.from(this.#prefix + dir), prefixEnd(this.#prefix + dir)]), prefixEnd(this.#prefix)];
      gaps: for (let g = 0; g < bounds.length; g += 2) {
        const to = bounds[g + 1]!;
        for (let from = bounds[g]!; Buffer.compare(from, to) < 0;) {
          const [kv] = (await this.#etcd.kv.range({ key: from, range_end: to, limit: 1, keys_only: true, revision })).kvs;
          if (!kv) break;
          if (named.length === UNKNOWN_DIRS_NAMED) {
            named.push("...");
            break gaps;
          }
          const name = kv.key.toString().slice(this.#prefix.length);
          const slash = name.indexOf("/");
          if (slash < 0) {
            named.push(`${name}: 1`);
            from = Buffer.concat([kv.key, Buffer.from([0])]);
            continue;
          }
          const dir = Buffer.from(this.#prefix + name.slice(0, slash + 1));
          const end = Buffer.compare(prefixEnd(dir.toString()), to) < 0 ? prefixEnd(dir.toString()) : to;
          named.push(`${name.slice(0, slash + 1)}: ${await count(dir, end)}`);
          from = end;
        }
      }
      const said = named.join(", ");
      if (said === this.#unknownSaid) return;
      this.#unknownSaid = said;
      this.#logger.warning(
        `etcd holds ${unknown} key${unknown === 1 ? "" : "s"} under ${this.#prefix} outside the fleet's directories (${said}): ignored, and never read (a later release's, or not the fleet's?)`,
      );
    } catch (error) {
      this.#logger.debug(`counting the keys outside the fleet's directories failed (${oneLine(error)})`);
    }
  }

  /** Notes a revision etcd has reached. */
  #saw(revision: string): void {
    const r = BigInt(revision);
    if (r > this.#revision) this.#revision = r;
  }

  /**
   * Whether a whole read's `header` shows a history other than the one this
   * server followed: another cluster, or a revision older than `seenBefore`,
   * the newest this server had seen when the read was sent (not one seen
   * since: the read is of the revision it started at, and the watch goes
   * on meanwhile). Said once, loudly: changes made meanwhile may be lost
   * with it, and what this server knows of them goes back (#seed).
   */
  #historyReplaced(header: IResponseHeader, seenBefore: bigint): boolean {
    const revision = BigInt(header.revision);
    const other = this.#cluster !== null && header.cluster_id !== this.#cluster;
    if (!other && revision >= seenBefore) return false;
    this.#logger.warning(
      other
        ? `etcd answers as another cluster (ID ${header.cluster_id}, was ${this.#cluster}): reading the fleet anew and writing back what it lacks`
        : `etcd's history went back (revision ${revision}, this server had seen ${seenBefore}): etcd was restored or its data lost; reading the fleet anew and writing back what it lacks`,
    );
    this.#revision = revision;
    return true;
  }

  /** Stops showing other servers' pending requests that etcd no longer holds (their server died, or they ended, while we were away). */
  #forgetPending(present: PresentKeys): void {
    this.#applying = true;
    try {
      for (const [key, { name, server }] of this.#pendingIn) {
        if (present.has(key)) continue;
        this.#pendingIn.delete(key);
        this.#registry.approvalPendingElsewhere(name, server, null);
      }
    } finally {
      this.#applying = false;
    }
  }

  /**
   * Every shared property of `clients` that etcd lacks: the newest value
   * this server knows of it, with its stamp (etcd lost it: restored from an
   * older snapshot, or a key deleted by hand), or else a seed (at 0: any
   * fleet value wins over it).
   */
  #seed(present: PresentKeys, clients: readonly ClientView[]): void {
    for (const listed of clients) {
      // As it is now: it may have taken another server's values since it was listed.
      const c = this.#registry.get(listed.name);
      if (!c) continue;
      for (const property of SHARED_PROPERTIES) if (!present.hasClient(c.name, property)) this.#writeBack(c, property);
    }
  }

  /**
   * Marks `c`'s `property`, which etcd lacks, to be written: the newest
   * value this server knows of it, with its stamp, or else a seed (at 0:
   * any fleet value wins over it). Nothing for a property that is not
   * shared, or a change already on its way. True if marked.
   */
  #writeBack(c: ClientView, property: ClientProperty): boolean {
    if (!this.#shareable(c, property)) return false;
    const key = clientKey(this.#prefix, c.name, property);
    if (this.#dirty.has(key)) return false;
    const known = this.#known.get(key);
    if (known) {
      this.#dirty.set(key, { key, value: known });
    } else {
      this.#dirty.set(key, { key, value: { value: readProperty(c, property), at: 0, by: this.#id } });
      this.#seeded.add(key, { kind: "client", name: c.name, property });
    }
    return true;
  }

  /**
   * A client's or an approval's key was deleted, which nothing of this
   * release does: someone else did (`etcdctl del`). A client's value is
   * written back as this server has it (#writeBack); an approval is not,
   * as after a history replaced: every server has applied it, and written
   * back it would be applied again, to connections that came after it.
   * Counted for #sayDeletions. True if a value is to be written.
   */
  #deletedElsewhere(parsed: Extract<ParsedKey, { kind: "client" | "approval" }>): boolean {
    this.#countDeletion(parsed.kind === "client" ? "clients" : "approvals");
    const c = parsed.kind === "client" ? this.#registry.get(parsed.name) : undefined;
    return c !== undefined && parsed.kind === "client" && this.#writeBack(c, parsed.property);
  }

  /**
   * This server's pending/ key of `name` was deleted while a connection of
   * `name` still waits here, and no delete of ours is on its way: someone
   * else's doing (`etcdctl del`; this server deletes its key only once no
   * connection waits). The other servers stopped showing the client as
   * waiting (ApprovalPending false through them, no countdown in
   * mandos-monitor), though it waits: the key is put again, bound to the
   * lease, and counted for #sayDeletions. Not while this server's servers/
   * key is away: that key is put again first (#putAgain), and its pending/
   * keys with it; nor with no lease (lost: #registered puts them); nor
   * at a `revision` before this server's registration with the lease it
   * holds: etcd's revocation of a lease lost before (a frozen etcd), which
   * the watch, made again after the outage, may bring from etcd's history
   * after the new lease's put, and after #registered put the key again.
   * True if the key is to be put.
   */
  #ownPendingDeleted(key: string, name: string, revision: bigint): boolean {
    const waiting = this.#waitingHere.get(name);
    if (!waiting || this.#pendingOut.has(key) || !this.#checkers.isLive(this.#id) || revision < this.#checkers.registeredAt()) return false;
    this.#countDeletion("pending");
    this.#pendingOut.set(key, encodePending(waiting.request));
    return true;
  }

  /** A key deleted by someone else, counted for #sayDeletions, which is set to say it (DELETIONS_GATHER_MS from the first, once a minute at most). */
  #countDeletion(kind: "clients" | "approvals" | "pending" | "journal"): void {
    if (this.#deletions.clients + this.#deletions.approvals + this.#deletions.pending + this.#deletions.journal === 0) this.#deletions.since = this.#clock.elapsed();
    this.#deletions[kind]++;
    if (!this.#deletionsTimer && !this.#stopped) {
      const wait = Math.max(DELETIONS_GATHER_MS, this.#deletionsSaidAt + WARN_EVERY_MS - this.#clock.elapsed());
      this.#deletionsTimer = this.#clock.setTimeout(() => {
        this.#deletionsTimer = null;
        this.#sayDeletions();
      }, wait);
    }
  }

  /** Holds `changes` as record `key`'s (null: forgets the record). */
  #carry(key: string, changes: readonly JournalChange[] | null): void {
    for (const c of this.#recordChanges.get(key) ?? []) {
      const e = this.#carried.get(c.key);
      if (e && --e.count === 0) this.#carried.delete(c.key);
    }
    this.#recordChanges.delete(key);
    if (!changes || changes.length === 0) return;
    this.#recordChanges.set(key, changes);
    for (const c of changes) {
      const e = this.#carried.get(c.key);
      if (e) e.count++;
      else this.#carried.set(c.key, { count: 1, held: null });
    }
  }

  /** etcd's clients/ key `key` holds `value` (its put came, or this server wrote it): noted while a record changes it. */
  #heldInEtcd(key: string, value: Stamped): void {
    const e = this.#carried.get(key);
    if (e && (!e.held || newer(value, e.held))) e.held = value;
  }

  /**
   * Another server's delete took journal record `key` away. A fold puts
   * each change of a record (or leaves it, its key holding a newer value)
   * before or with its delete; a delete by someone else (`etcdctl del`)
   * leaves the changes in no key, and the fleet's keys older than what the
   * servers hold. Looked at DELETIONS_GATHER_MS later (the watch brings
   * each directory on its own): #lostChanges.
   */
  #recordGone(key: string): void {
    this.#gone.add(key);
    if (this.#goneTimer || this.#stopped) return;
    this.#goneTimer = this.#clock.setTimeout(() => {
      this.#goneTimer = null;
      void this.#lostChanges();
    }, DELETIONS_GATHER_MS);
  }

  /**
   * The changes of the records gone (#recordGone) that no key was seen to
   * hold since are read back from etcd; each key whose value there is older
   * than the newest this server has (or absent) is written back with it, as
   * a client's key deleted by hand is (#writeBack).
   */
  async #lostChanges(): Promise<void> {
    const unseen: JournalChange[] = [];
    let records = 0;
    for (const key of this.#gone) {
      const changes = this.#recordChanges.get(key) ?? [];
      const these = changes.filter((c) => {
        const held = this.#carried.get(c.key)?.held;
        return !held || newer(c.value, held);
      });
      if (these.length > 0) records++;
      unseen.push(...these);
      this.#carry(key, null);
    }
    this.#gone.clear();
    if (unseen.length === 0 || this.#stopped) return;
    let written = 0;
    try {
      for (let i = 0; i < unseen.length; i += MAX_TXN_OPS) {
        const chunk = unseen.slice(i, i + MAX_TXN_OPS);
        const res = await this.#etcd.kv.txn({ success: chunk.map((c) => ({ request_range: { key: Buffer.from(c.key) } })) });
        for (const [j, c] of chunk.entries()) {
          const kv = res.responses[j]?.response_range?.kvs[0];
          const there = kv ? decodeValue(kv.value.toString()) : null;
          const newest = this.#newest(c.key);
          if (!newest || this.#dirty.has(c.key) || (there && !newer(newest, there))) continue;
          this.#dirty.set(c.key, { key: c.key, value: newest });
          written++;
        }
      }
    } catch (error) {
      this.#goDegraded(error);
    }
    if (written === 0) return;
    for (let r = 0; r < records; r++) this.#countDeletion("journal");
    this.#schedule(FLUSH_MS);
  }

  /** One WARNING line for the keys deleted by someone else since the last (once a minute at most), not one a key. */
  #sayDeletions(): void {
    const { clients, approvals, pending, journal, since } = this.#deletions;
    if (this.#stopped || clients + approvals + pending + journal === 0) return;
    const now = this.#clock.elapsed();
    this.#logger.warning(
      `${clients + approvals + pending + journal} of the fleet's keys were deleted in etcd by someone else in the last ${seconds(now - since)} (etcdctl del?): ` +
        `clients/: ${clients}, written back as this server has them; approvals/: ${approvals}, not written back (they were for the connections that waited then)` +
        (pending > 0 ? `; pending/: ${pending} of this server's, put again (a connection waits here)` : "") +
        (journal > 0 ? `; journal/: ${journal} record(s) before their fold, their changes written back as this server has them` : ""),
    );
    this.#deletions.clients = 0;
    this.#deletions.approvals = 0;
    this.#deletions.pending = 0;
    this.#deletions.journal = 0;
    this.#deletionsSaidAt = now;
  }

  /** Watches the fleet's directories (READ_DIRS: nothing else under the prefix reaches this server) from `fromRevision`. */
  async #watch(fromRevision: bigint): Promise<void> {
    const watch = await watchPrefixes(this.#options, READ_DIRS.map((dir) => this.#prefix + dir), () => {
      if (this.#watcher !== watch) return;
      this.#watcher = null;
      this.#watchCancelled();
    }, fromRevision, this.#stopping.signal);
    // Our transactions before it will not come back through it.
    for (const r of this.#ownRevisions.keys()) if (BigInt(r) < fromRevision) this.#ownRevisions.delete(r);
    for (const [i, watcher] of watch.watchers.entries()) {
      const dir = READ_DIRS[i]!;
      watcher.on("data", (res) => {
        if (this.#watcher !== null && this.#watcher !== watch) return; // replaced (#historyReplaced)
        this.#saw(res.header.revision);
        const moved = this.#movedInRead;
        if (moved) for (const e of res.events) moved.set(e.kv.key.toString(), { revision: BigInt(e.kv.mod_revision), put: e.type === "Put" });
        // Our own transactions come back too: skipped here by revision, unread
        // (one a secret in a wave); one that comes back before its answer
        // did is skipped by Rule 2 instead.
        const theirs = this.#ownRevisions.size === 0 ? res.events : res.events.filter((e) => !this.#ownRevisions.get(e.kv.mod_revision)?.has(dir));
        const last = res.events.at(-1)?.kv.mod_revision;
        if (last !== undefined) {
          for (const [r, dirs] of this.#ownRevisions) {
            if (BigInt(r) > BigInt(last)) continue;
            dirs.delete(dir);
            if (dirs.size === 0) this.#ownRevisions.delete(r);
          }
        }
        this.#apply(theirs.map((e) => ({ type: e.type === "Put" ? "Put" : "Delete", key: e.kv.key.toString(), text: e.type === "Put" ? e.kv.value.toString() : "", revision: BigInt(e.kv.mod_revision) })), false);
      });
    }
    // The watchers share one stream: they break and come back together,
    // and reconnect by themselves, each resuming where it stopped, unless
    // etcd cancels one (prefix-watch.ts).
    const watcher = watch.watchers[0]!;
    watcher.on("disconnected", (error) => void this.#watchLost(error));
    watcher.on("connected", () => {
      if (!this.#degraded && !this.#resync) return;
      // etcd answers again: sync now, not at a retry set for later.
      this.#timer?.cancel();
      this.#timer = null;
      this.#schedule(0);
    });
    this.#watcher = watch;
  }

  /** etcd cancelled a watch (prefix-watch.ts): read the fleet again, now, and watch anew. */
  #watchCancelled(): void {
    this.#resync = true;
    this.#schedule(0);
  }

  /**
   * Adopts the values of `events` that are not ours (Rule 2) and not older
   * than our unwritten change (Rule 1), a client at a time, each change of
   * a journal record as a put of its key; and the other servers' pending
   * requests, put or deleted.
   */
  #apply(events: readonly Incoming[], includeOwn: boolean): void {
    const states = new Map<string, StateBuilder>();
    const approvals: Array<{ name: string; approved: boolean }> = [];
    const pending: Array<{ name: string; server: string; request: PendingRequest | null }> = [];
    /** Values this server writes again, as a result: the newer one (Rule 1), or its own seed (#losesToOwnSeed). */
    let rewrites = 0;
    const namesBefore = this.#names.size;
    const take = (key: string, parsed: ParsedKey, value: Stamped, journaled: boolean): void => {
      if (parsed.kind === "client") this.#names.add(parsed.name);
      if (!journaled) this.#heldInEtcd(key, value);
      if (value.by === this.#id && !includeOwn) return;
      if (!this.#acceptable(key, parsed, value)) return;
      const mine = this.#dirty.get(key);
      const newest = this.#newest(key);
      if (!newest && value.at === 0 && parsed.kind === "client" && this.#losesToOwnSeed(key, parsed, value)) {
        rewrites++;
        return;
      }
      // One of ours written while our clock was ahead gives way to a change the watch brings (#ownAhead).
      if (newest && newer(newest, value) && !(!includeOwn && !mine && parsed.kind === "client" && this.#ownAhead(key, newest))) {
        // An older value landed after a newer one (a write retried across
        // an outage): write the newer one again, so that etcd converges too.
        // Ours too when it is still unwritten here: its write may be in
        // flight and have landed before this one (two seeds racing), so it
        // goes again (a new entry: the one in flight no longer clears it).
        // A journal's change is older when its key was changed since: the
        // key already holds the newer value.
        if (!journaled) {
          this.#dirty.set(key, { key, value: newest });
          rewrites++;
          // Just made by its server, as far as the watch tells, yet older:
          // a write held up by an outage, or a server whose clock is behind,
          // whose every change the fleet undoes so. Said, not decided here.
          // Not for a seed (at 0: no clock made it), which two servers write
          // at once when they seed a new fleet or write back deleted keys.
          if (!includeOwn && value.by !== this.#id && value.at > 0) {
            this.#warn(
              `behind ${value.by}`,
              `etcd's ${key.slice(this.#prefix.length)} from ${value.by} is stamped ${seconds(newest.at - value.at)} before the value this server has (by ${newest.by}), and came after it: written back over it (a write held up by an outage; or is ${value.by}'s clock behind?)`,
            );
          }
        }
        return;
      }
      if (mine) this.#dirty.delete(key);
      this.#remember(key, value);
      // Another server's seed of a key this one seeded too, taken: later seeds are weighed against it.
      if (value.at === 0 && parsed.kind === "client" && this.#seeded.hasClient(parsed.name, parsed.property)) this.#known.set(key, value);
      if (parsed.kind === "approval") {
        // A live decision releases the client's waiting connections while
        // it holds (#inForce). One a sync reads (at start-up, or after etcd
        // cancelled the watch: a compacted history, an expired login) is
        // history, unless another server gave it while it holds for a
        // connection of that client waiting here (#givenWhileWaiting): the
        // watch missed it, and it is this wait's.
        if (typeof value.value === "boolean" && (includeOwn ? this.#givenWhileWaiting(parsed.name, value) : this.#inForce(parsed.name, value))) {
          approvals.push({ name: parsed.name, approved: value.value });
        }
        return;
      }
      if (parsed.kind !== "client") return;
      let state = states.get(parsed.name);
      if (!state) states.set(parsed.name, (state = new StateBuilder()));
      state.add(parsed.property, value.value);
    };
    for (const { type, key, text, revision } of events) {
      const parsed = parseKey(this.#prefix, key);
      if (parsed?.kind === "pending") {
        if (parsed.server === this.#id) {
          if (type !== "Put" && this.#ownPendingDeleted(key, parsed.name, revision ?? 0n)) rewrites++;
          continue;
        }
        const request = type === "Put" ? decodePending(text) : null;
        if (request) this.#pendingIn.set(key, parsed);
        else this.#pendingIn.delete(key);
        pending.push({ ...parsed, request });
        continue;
      }
      if (parsed?.kind === "journal") {
        if (type !== "Put") {
          this.#journal.delete(key);
          if (this.#recordChanges.has(key)) this.#recordGone(key);
          continue;
        }
        // A record that is not one (not ours: written by hand, or damaged) is folded away at once: nothing to take, only the delete.
        // One of a later format: what of it reads is taken, and it is left for a later server to fold (not noted here).
        const { record, later } = readJournal(this.#prefix, text);
        if (!later) {
          this.#journal.set(key, { by: record?.by ?? "", at: record?.at ?? 0 });
          this.#armFold();
        }
        this.#carry(key, record?.changes ?? null);
        for (const change of record?.changes ?? []) take(change.key, parseKey(this.#prefix, change.key)!, change.value, true);
        continue;
      }
      if (type !== "Put") {
        if ((parsed?.kind === "client" || parsed?.kind === "approval") && this.#deletedElsewhere(parsed)) rewrites++;
        continue;
      }
      const value = parsed && decodeValue(text);
      if (parsed && value) take(key, parsed, value, false);
      // A client's or an approval's key that holds no stamped value (a hand-made put, a hostile writer): ignored, and said.
      else if (parsed) this.#warn(`unreadable ${parsed.kind}`, `etcd's ${key.slice(this.#prefix.length)} holds no value this server can read (JSON with value, at and by): ignored`);
    }
    if (rewrites > 0) this.#schedule(FLUSH_MS);
    if (this.#names.size > namesBefore) this.#lacksChanged();
    this.#applying = true;
    try {
      for (const [name, state] of states) if (this.#registry.get(name)) this.#registry.adopt(name, state.build());
      for (const { name, approved } of approvals) if (this.#registry.get(name)) this.#registry.approve(name, approved);
      for (const { name, server, request } of pending) this.#registry.approvalPendingElsewhere(name, server, request);
    } finally {
      this.#applying = false;
    }
  }

  /**
   * Whether a value read from etcd may be taken at all: one a property
   * cannot hold (of the wrong type, or out of range: a time past any date
   * the state file and D-Bus can write) or stamped more than MAX_AHEAD_MS
   * ahead of this server's clock is ignored, with a warning. Nothing of it
   * is kept; the key keeps it until a server changes that property.
   */
  #acceptable(key: string, parsed: ParsedKey, value: Stamped): boolean {
    const name = key.slice(this.#prefix.length);
    const ok = parsed.kind === "client" ? validValue(parsed.property, value.value) : parsed.kind === "approval" ? typeof value.value === "boolean" : true;
    if (!ok) {
      this.#warn(`value ${name}`, `etcd's ${name} holds ${shown(value.value)}, not a value it may hold: ignored`);
      return false;
    }
    const ahead = value.at - this.#clock.now();
    if (!(ahead <= MAX_AHEAD_MS)) {
      this.#warn(
        `ahead ${value.by}`,
        `etcd's ${name} is stamped ${Number.isFinite(ahead) ? seconds(ahead) : "for ever"} ahead of this server's clock by ${value.by}: ignored (is that server's clock right?)`,
      );
      return false;
    }
    return true;
  }

  /**
   * Whether `newest`, the value of `key` this server has written, is its
   * own and stamped more than MAX_AHEAD_MS ahead of its clock: made while
   * the clock was ahead, put right since. It is not written again over a
   * value the watch brings, written after it (a change made since: the
   * operator's enable after a disable made through this server), which is
   * taken instead; as the others refused it, it would otherwise win over
   * every change until its time came, and they would then take it. An
   * unwritten one, or one weighed against etcd's value at a sync, is
   * written again as Rule 1 says, stamped now (#restampAhead).
   */
  #ownAhead(key: string, newest: Stamped): boolean {
    const ahead = newest.at - this.#clock.now();
    if (newest.by !== this.#id || !(ahead > MAX_AHEAD_MS)) return false;
    this.#warn("own ahead", `this server's ${key.slice(this.#prefix.length)} is stamped ${seconds(ahead)} ahead of its clock (was the clock ahead?): the value that came in since is taken over it`);
    return true;
  }

  /**
   * This server's unwritten changes stamped more than MAX_AHEAD_MS ahead
   * of its clock (made while it was ahead, put right since) are stamped
   * now, before they go to etcd or into the state file: as they were, the
   * others would refuse them, and then take them when their time came,
   * over every change made meanwhile. Clients' values only: an approval
   * says how long it waited (`held`, on the monotonic clock) and is weighed
   * by it, and a clock stepped back while it waited must not make it older
   * than the decisions it came after (fleet-approval-resync's test).
   */
  #restampAhead(): void {
    const now = this.#clock.now();
    for (const d of this.#dirty.values()) {
      const ahead = d.value.at - now;
      if (d.value.by !== this.#id || !(ahead > MAX_AHEAD_MS) || parseKey(this.#prefix, d.key)?.kind !== "client") continue;
      this.#warn("own ahead", `this server's change of ${d.key.slice(this.#prefix.length)} is stamped ${seconds(ahead)} ahead of its clock (was the clock ahead?): stamped now instead`);
      this.#dirty.set(d.key, { ...d, value: { ...d.value, at: now } });
    }
  }

  /**
   * Another server's seed of a key this one seeded too (two servers started
   * at once on an empty prefix): etcd keeps whichever landed last, so each
   * server weighs the other's against its own, and the one whose seed wins
   * (newer(): the server names) writes its own again if etcd lost it.
   * Returns true when this server's seed wins.
   */
  #losesToOwnSeed(key: string, parsed: Extract<ParsedKey, { kind: "client" }>, value: Stamped): boolean {
    const client = this.#registry.get(parsed.name);
    if (!client || !this.#seeded.hasClient(parsed.name, parsed.property)) return false;
    const own: Stamped = { value: readProperty(client, parsed.property), at: 0, by: this.#id };
    if (own.value === value.value || !newer(own, value)) return false;
    this.#dirty.set(key, { key, value: own });
    return true;
  }

  /** Logs `line` at most once every WARN_EVERY_MS for `topic`, saying how many like it were held back. */
  #warn(topic: string, line: string): void {
    const now = this.#clock.elapsed();
    const last = this.#warned.get(topic);
    if (last && now - last.at < WARN_EVERY_MS) {
      last.held++;
      return;
    }
    if (this.#warned.size >= 1_000) this.#warned.clear();
    this.#warned.set(topic, { at: now, held: 0 });
    this.#logger.warning(last?.held ? `${line} (and ${last.held} like it in the last ${seconds(now - last.at)})` : line);
  }

  /**
   * Whether a decision the watch brought still holds here, as it would on
   * one server: an approval or denial lasts approval_duration after it is
   * given, for the connections waiting then and those that come within it.
   * Its server says how long it kept it before etcd had it (`held`: long
   * when that server was cut off from etcd). Past approval_duration it
   * holds here only if a connection has waited since before it lapsed;
   * otherwise it would release (or deny) a later boot of the client. Only
   * durations, each measured on one server's clock: no skew between the
   * servers' clocks moves this rule. The time in transit is not counted,
   * in the waiting connection's favour (at most a request's deadline).
   */
  #inForce(name: string, decision: Stamped): boolean {
    const duration = this.#registry.get(name)?.approvalDuration;
    if (duration === undefined) return false;
    const held = typeof decision.held === "number" && Number.isFinite(decision.held) ? Math.max(0, decision.held) : 0;
    if (held < duration) return true;
    const since = this.#waitingHere.get(name)?.sinceElapsed;
    if (since !== undefined && this.#clock.elapsed() - since >= held - duration) return true;
    // Said when the write was late: one in time that lapsed first (an
    // approval_duration shorter than a flush) did nothing on one server either.
    if (held >= LATE_DECISION_MS) {
      this.#logger.info(
        `${name}: the ${decision.value === true ? "approval" : "denial"} given through ${decision.by} reached etcd ${seconds(held)} after it was given` +
          ` (etcd was slow or out of reach there), past its approval_duration of ${seconds(duration)}, and no connection of ${name} here waits since before then: not applied`,
      );
    }
    return false;
  }

  /**
   * Whether another server gave `decision` while it holds for the
   * connection of `name` waiting here: since that wait began, or within
   * approval_duration before it (on one server that connection would have
   * found it and been served at once).
   */
  #givenWhileWaiting(name: string, decision: Stamped): boolean {
    const since = this.#waitingHere.get(name)?.since;
    const duration = this.#registry.get(name)?.approvalDuration ?? 0;
    return since !== undefined && decision.by !== this.#id && decision.at + duration >= since;
  }

  /**
   * The watch stream broke. One member of the cluster going away breaks it
   * too, and the client then goes on with another member: only a cluster
   * that does not answer at all is an outage (issue 15: losing one member
   * of three changes nothing visible).
   */
  async #watchLost(error: unknown): Promise<void> {
    try {
      await this.#etcd.kv.range({ key: Buffer.from(this.#prefix), limit: "1" });
    } catch {
      this.#goDegraded(error);
      this.#schedule(RETRY_MS);
      return;
    }
    // Read the fleet again now and when the stream is back, as after an
    // outage, so that nothing changed meanwhile is missed; but say nothing:
    // the fleet is still reachable.
    this.#resync = true;
    this.#schedule(0);
  }

  /**
   * etcd failed: degraded from now on; said loudly, once, at a failure
   * DEGRADED_AFTER_MS or more after the first (an election's refusals and
   * timeouts are not an outage).
   */
  #goDegraded(error: unknown): void {
    if (this.#stopped) return;
    this.#failures++;
    const now = this.#clock.elapsed();
    if (!this.#degraded) {
      this.#failingSince = now;
      this.#logger.debug(`etcd failed (${oneLine(error)}): asking again; DEGRADED if it still fails after ${DEGRADED_AFTER_MS / 1_000} s`);
    } else if (!this.#announced && now - this.#failingSince >= DEGRADED_AFTER_MS) {
      this.#announced = true;
      this.#logger.critical(
        // One line: gRPC's messages may carry OpenSSL's, newline and all.
        `etcd unreachable (${oneLine(error)}): DEGRADED, serving from the local copy of the shared state; changes made elsewhere are not seen until etcd returns`,
      );
    }
    this.#degraded = true;
  }

  /**
   * etcd answered a whole sync, which wrote the `held` changes this server
   * had for it: no longer degraded, said loudly if the outage was.
   */
  #recovered(held: number): void {
    if (this.#announced) this.#logger.warning(`etcd is reachable again: client state shared with the fleet (${held} change${held === 1 ? "" : "s"} held for it written)`);
    else if (this.#degraded) this.#logger.debug(`etcd answers again after ${Math.round(this.#clock.elapsed() - this.#failingSince)} ms`);
    this.#degraded = false;
    this.#announced = false;
  }
}


/** A value from etcd for a log line: JSON, cut short. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** `ms` for a log line: "1.5 s", "42 s". */
function seconds(ms: number): string {
  return `${ms < 10_000 ? (ms / 1_000).toFixed(1) : Math.round(ms / 1_000)} s`;
}

/** An error's message on one line (a log line, a line of --check). */
function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, " ").trim();
}

/** The put of a shared key's stamped value. */
function putStamped(key: string, value: Stamped): IRequestOp {
  return { request_put: { key: Buffer.from(key), value: Buffer.from(encodeValue(value)) } };
}

/** `a` was changed after `b`; the server names break a tie, so that every server picks the same one. */
function newer(a: Stamped, b: Stamped): boolean {
  return a.at > b.at || (a.at === b.at && a.by > b.by);
}

/** The end of etcd's range for every key starting with `prefix`. */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** The etcd3 options of a server's link to etcd: its members, TLS and login, and how it deals with a failing member (member-policy.ts). */
export function etcdOptions(s: EtcdSettings): IOptions {
  const options: IOptions = {
    hosts: [...s.endpoints],
    grpcOptions: { "grpc.max_receive_message_length": MAX_ANSWER_BYTES, ...KEEPALIVE_OPTIONS, ...RECONNECT_OPTIONS },
    defaultCallOptions: attemptOptions,
    faultHandling: { watchBackoff: new WatchBackoff(), host: () => memberPolicy(s.endpoints.length), global: requestPolicy() },
  };
  const { tls, auth } = readEtcdCredentials(s);
  if (tls) {
    options.credentials = {
      // etcd3 types the CA as required; gRPC's createSsl takes none as "my default CAs".
      rootCertificate: tls.ca ?? (undefined as unknown as Buffer),
      ...(tls.key ? { privateKey: tls.key } : {}),
      ...(tls.cert ? { certChain: tls.cert } : {}),
    };
  }
  // etcd3 asks for a token ahead of the request that needs it, each member
  // in turn, with the deadline of an attempt (defaultCallOptions): a token
  // asked of an etcd that does not answer would hold every request queued
  // behind it.
  if (auth) options.auth = auth;
  return options;
}

/** For --check: resolves to null when etcd answers, else why not. */
export async function probeEtcd(settings: EtcdSettings): Promise<string | null> {
  let etcd: Etcd3;
  try {
    etcd = openEtcd(etcdOptions(settings));
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  try {
    await etcd.kv.range({ key: Buffer.from(settings.prefix), limit: "1" });
    // The servers write too. A transaction whose comparison is never true
    // writes nothing, yet etcd checks the permission of every operation in
    // it: a role that only reads is told apart here, not at the first write.
    const probe = Buffer.from(`${settings.prefix}servers/`);
    await etcd.kv.txn({ compare: [{ key: probe, target: "Version", result: "Less", version: "0" }], success: [{ request_put: { key: probe, value: Buffer.alloc(0) } }] });
    return null;
  } catch (error) {
    const why = oneLine(error);
    const tls = await explainEtcdTls(settings, REQUEST_TIMEOUT_MS);
    return tls ? `${why}; ${tls}` : why;
  } finally {
    etcd.close();
  }
}
