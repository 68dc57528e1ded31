// Which server of a fleet runs each client's checker (docs/ETCD.md
// "Checkers"): every live server holds a key under PREFIX servers/ bound to
// an etcd lease it keeps alive; a client's checker runs on the live server
// whose hash with the client's name is highest (rendezvous hashing). So a
// fleet of 10,000 clients is checked once, not once per server, the share
// of each server is even, and when a server dies (its lease runs out,
// LEASE_TTL_S after a kill -9) only its clients move, to the survivors.
//
// While this server is not itself among the live servers (etcd unreachable,
// lease lost, not yet registered) it runs every checker: a client is then
// checked more often than needed rather than not at all.
//
// A server's key deleted while its lease lives (by someone else: `etcdctl
// del --prefix`) is put again at once, with the lease: before, it stayed
// away until the lease was lost, which it never was, and every other
// server took this one for dead. A deletion older than this server's last
// put of its key is not one: etcd revoked a lease this server had already
// replaced, and the watch, broken and made again (an etcd frozen past the
// lease's TTL), brought that from etcd's history after the new lease's put
// was answered.
//
// Servers whose clients.conf differ: a server's key holds the names of the
// fleet's clients it does not have ("" when it has them all, as every
// server of a fleet with one clients.conf), and a client's checker runs on
// the live server with the highest hash among those that have it. Before,
// a server without the client could win it, and then nobody checked it,
// nor timed it out: the others wait for the owner's decision.

import { createHash } from "node:crypto";
import type { Etcd3, IOptions, Lease } from "etcd3";
import { watchPrefixes, type PrefixWatch } from "./prefix-watch.js";
import { serversDir } from "./layout.js";
import { guardLease } from "./member-policy.js";

/**
 * Seconds a dead server keeps its share: short, so that its clients are
 * checked again soon, and several keep-alive rounds (TTL/3) long, so that a
 * slow etcd or a garbage-collection pause does not move checkers around.
 */
export const LEASE_TTL_S = 5;

/**
 * The most bytes of names a server's key says it lacks (etcd takes 1.5 MiB
 * a request): 25,000 names of 20 bytes. Beyond, the names that do not fit
 * are left out, and those clients may again go unchecked if this server
 * wins them (said at WARNING).
 */
export const LACKS_MAX_BYTES = 512 * 1024;

/** A server key's value: the client names that server lacks; "" for none (and from a release before this one). */
export function encodeLacks(names: readonly string[]): { readonly value: string; readonly left: number } {
  if (names.length === 0) return { value: "", left: 0 };
  const kept: string[] = [];
  let bytes = 0;
  for (const name of names) {
    bytes += Buffer.byteLength(name) + 4;
    if (bytes > LACKS_MAX_BYTES) break;
    kept.push(name);
  }
  return { value: JSON.stringify({ lacks: kept }), left: names.length - kept.length };
}

/** What a server key's value says that server lacks; anything else (a later release's field, junk) reads as nothing lacked. */
export function decodeLacks(text: string): ReadonlySet<string> {
  if (text === "") return NONE;
  try {
    const lacks = (JSON.parse(text) as { lacks?: unknown } | null)?.lacks;
    return Array.isArray(lacks) ? new Set(lacks.filter((n): n is string => typeof n === "string")) : NONE;
  } catch {
    return NONE;
  }
}

const NONE: ReadonlySet<string> = new Set();

export class CheckerShare {
  readonly #etcd: Etcd3;
  readonly #options: IOptions;
  readonly #dir: string;
  readonly #id: string;
  readonly #live = new Set<string>();
  /** What each live server's key says it lacks (only those that lack some). */
  readonly #lacking = new Map<string, ReadonlySet<string>>();
  /** What this server lacks, as its key says or is about to. */
  #lacks: ReadonlySet<string> = NONE;
  #value = "";
  /**
   * The revision of this server's newest put of its key that etcd answered
   * (registration, #publish, #putAgain): a deletion of the key the watch
   * brings at an older revision was followed by that put, and the key stands.
   */
  #putRevision = 0n;
  /** The revision at which the lease this server holds first put its key; 0n while it has none. */
  #registeredAt = 0n;
  /** The value etcd holds in this server's key, as far as it knows; null when a put of #value is due. */
  #published: string | null = null;
  #publishing = false;
  #lease: Lease | null = null;
  #watcher: PrefixWatch | null = null;
  #stopped = false;
  /** Aborted at stop(): a watch being made (etcd slow or gone) is given up. */
  readonly #stopping = new AbortController();
  readonly #onRegistered: () => void;
  readonly #onWatchLost: () => void;
  readonly #onLeaseLost: () => void;
  readonly #onPutAgain: () => void;

  /**
   * `onRegistered` runs each time this server's lease is new (keys bound to
   * a lost one are gone); `onLeaseLost` when etcd let the lease expire or
   * revoked it (this server then runs every checker, and registers again);
   * `onWatchLost` when etcd cancelled the watch of the servers, which
   * start() makes again; `onPutAgain` when this server's key, deleted by
   * someone else while its lease lived, is in etcd again. `options` are
   * `etcd`'s, for the watch's own connection.
   */
  constructor(
    etcd: Etcd3, options: IOptions, prefix: string, serverId: string,
    onRegistered: () => void = () => {}, onLeaseLost: () => void = () => {}, onWatchLost: () => void = () => {}, onPutAgain: () => void = () => {},
  ) {
    this.#etcd = etcd;
    this.#options = options;
    this.#dir = serversDir(prefix);
    this.#id = serverId;
    this.#onRegistered = onRegistered;
    this.#onLeaseLost = onLeaseLost;
    this.#onWatchLost = onWatchLost;
    this.#onPutAgain = onPutAgain;
  }

  /** The ID of this server's lease, for keys that must go when the server does; null while it has none. */
  async leaseId(): Promise<string | null> {
    return this.#lease ? this.#lease.grant() : null;
  }

  /**
   * The revision of this server's registration with the lease it holds (0n
   * while it has none): a key of its own deleted before it went with an
   * earlier lease, or was put again with this one since (fleet-state.ts's
   * pending/ keys).
   */
  registeredAt(): bigint {
    return this.#lease ? this.#registeredAt : 0n;
  }

  /** True while `server` holds its key under servers/ (its lease is alive), as far as this server has seen. */
  isLive(server: string): boolean {
    return this.#live.has(server);
  }

  /** True while another server than this one holds its key under servers/: the fleet runs checkers without this server. */
  othersLive(): boolean {
    return this.#live.size > (this.#live.has(this.#id) ? 1 : 0);
  }

  /** True when this server runs `name`'s scheduled checkers. */
  owns(name: string): boolean {
    if (!this.#live.has(this.#id)) return true;
    let best = "";
    let bestScore = -1;
    for (const id of this.#live) {
      if ((id === this.#id ? this.#lacks : this.#lacking.get(id))?.has(name)) continue;
      const score = createHash("sha256").update(id).update("\0").update(name).digest().readUIntBE(0, 6);
      if (score > bestScore || (score === bestScore && id < best)) [best, bestScore] = [id, score];
    }
    return best === this.#id;
  }

  /** Registers this server and follows the others; rejects if etcd cannot be reached (the caller retries). */
  async start(): Promise<void> {
    if (this.#stopped) return;
    if (!this.#watcher) {
      const res = await this.#etcd.getAll().prefix(this.#dir).strings();
      // Replaced at once, not emptied first: owns() never sees an empty fleet.
      const live = new Set(Object.keys(res).map((key) => key.slice(this.#dir.length)));
      if (this.#lease) live.add(this.#id);
      this.#live.clear();
      this.#lacking.clear();
      for (const id of live) this.#live.add(id);
      for (const [key, value] of Object.entries(res)) this.#noteLacks(key.slice(this.#dir.length), value);
      // Cancelled by etcd (prefix-watch.ts): read again and watched anew at
      // the fleet's next sync, which calls start().
      const watch = await watchPrefixes(this.#options, [this.#dir], () => {
        if (this.#watcher === watch) this.#watcher = null;
        this.#onWatchLost();
      }, undefined, this.#stopping.signal);
      watch.watchers[0]!.on("put", (kv) => {
        const id = kv.key.toString().slice(this.#dir.length);
        this.#live.add(id);
        this.#noteLacks(id, kv.value.toString());
      });
      watch.watchers[0]!.on("delete", (kv) => {
        const id = kv.key.toString().slice(this.#dir.length);
        // Before this server's last put of its key, which stands: the
        // lease this server lost, revoked by etcd, its new one put since.
        if (id === this.#id && BigInt(kv.mod_revision) < this.#putRevision) return;
        this.#live.delete(id);
        this.#lacking.delete(id);
        if (id === this.#id) void this.#putAgain();
      });
      this.#watcher = watch;
    }
    if (!this.#lease) await this.#register();
    else if (this.#published !== this.#value) await this.#publish();
  }

  /**
   * The fleet's client names this server does not have (sorted): said in
   * its key, so that no other server counts on it for their checkers. The
   * key is put again when they change; a put that fails is made again at
   * the next start() (the fleet's next sync) or registration.
   */
  setLacks(names: readonly string[]): { readonly left: number } {
    const { value, left } = encodeLacks(names);
    this.#lacks = new Set(names);
    if (value !== this.#value) {
      this.#value = value;
      if (this.#lease && !this.#stopped) void this.#publish();
    }
    return { left };
  }

  #noteLacks(id: string, value: string): void {
    if (id === this.#id) return;
    const lacks = decodeLacks(value);
    if (lacks.size > 0) this.#lacking.set(id, lacks);
    else this.#lacking.delete(id);
  }

  /**
   * Puts this server's key again with the names it lacks now, with its
   * lease; one put at a time, the last value last. One that fails (an
   * election) is tried again a second later, for as long as the lease
   * lives: a new lease puts the key with the value anyway.
   */
  async #publish(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#publishing || this.#stopped) return;
    this.#publishing = true;
    try {
      while (this.#published !== this.#value && this.#lease === lease && !this.#stopped) {
        const value = this.#value;
        this.#published = null;
        await this.#putKey(lease, value);
        this.#published = value;
      }
    } catch {
      setTimeout(() => void this.#publish(), (LEASE_TTL_S * 1_000) / 5).unref();
    } finally {
      this.#publishing = false;
    }
  }

  /**
   * Forgets the watch of the servers: etcd's history was replaced, and the
   * watch would resume after a revision the new one has not reached. The
   * next start() reads the servers and watches them anew.
   */
  async rewatch(): Promise<void> {
    const watch = this.#watcher;
    this.#watcher = null;
    await watch?.close();
  }

  async #register(): Promise<void> {
    const lease = this.#etcd.lease(LEASE_TTL_S);
    guardLease(lease);
    // etcd3's error says nothing worth a log line (it is built with a
    // sentence where a lease ID should be): the caller says it in its words.
    lease.on("lost", () => {
      if (this.#stopped || this.#lease !== lease) return;
      this.#live.delete(this.#id);
      this.#lease = null;
      this.#onLeaseLost();
      this.#retry();
    });
    const value = this.#value;
    let at: bigint;
    try {
      at = await this.#putKey(lease, value);
    } catch (error) {
      // Granted but unused, the lease would be kept alive for ever: one
      // more at every retry (each second while degraded).
      void lease.revoke().catch(() => undefined);
      throw error;
    }
    this.#registeredAt = at;
    this.#lease = lease;
    this.#published = value;
    this.#live.add(this.#id);
    this.#onRegistered();
    if (this.#value !== value) void this.#publish();
  }

  /** Puts this server's key with `value`, bound to `lease`; notes and returns the revision etcd answers. */
  async #putKey(lease: Lease, value: string): Promise<bigint> {
    const revision = BigInt((await lease.put(`${this.#dir}${this.#id}`).value(value).exec()).header.revision);
    if (revision > this.#putRevision) this.#putRevision = revision;
    return revision;
  }

  /**
   * This server's key is gone, after its last put. While its lease lives
   * that is someone else's doing, and the key is put again at once, bound
   * to the lease. A key etcd deleted because the lease expired cannot be
   * put with it: the put fails, and the lease's loss is handled as such
   * ("lost"). A deletion by etcd of a lease lost before (the watch late)
   * never comes here: it is older than the new lease's put.
   */
  async #putAgain(): Promise<void> {
    const lease = this.#lease;
    if (this.#stopped || !lease) return;
    const value = this.#value;
    try {
      await this.#putKey(lease, value);
    } catch {
      return;
    }
    this.#published = value;
    if (this.#stopped || this.#lease !== lease) return;
    this.#live.add(this.#id);
    this.#onPutAgain();
  }

  #retry(): void {
    setTimeout(() => {
      if (this.#stopped || this.#lease) return;
      this.#register().catch(() => this.#retry());
    }, (LEASE_TTL_S * 1_000) / 5).unref();
  }

  /**
   * Gives this server's share to the others at once (a kill -9 gives it
   * after LEASE_TTL_S); an etcd that does not answer within `waitMs` gets
   * the same as a kill -9.
   */
  async stop(waitMs: number): Promise<void> {
    this.#stopped = true;
    this.#stopping.abort();
    // At once, not one after the other: each may wait its whole time on an etcd that hangs.
    await Promise.all([this.#watcher?.close(), this.#lease?.revoke({ deadline: Date.now() + waitMs }).catch(() => undefined)]);
  }
}
