// A watch of key prefixes, on a connection to etcd of its own (docs/ETCD.md
// "Securing etcd"). etcd cancels a watch that comes back with an auth token
// it no longer knows: a restarted etcd forgets every token it gave, and a
// token unused for --auth-token-ttl expires. etcd3 then asks for no new
// token for its watch stream and creates no other watch on it, so the
// watch and its connection are thrown away together, and the owner reads
// the prefix again and makes a new one. A watch cancelled for any other
// reason (a compacted start revision) is handled the same way.
// Several prefixes (the fleet's directories, layout.ts FLEET_DIRS) are
// watched by a watcher each, on the one stream of that connection: etcd
// watches a range, and keys between the directories (not the fleet's) are
// never sent.

import { ClientRuntimeError, type Etcd3, type IOptions, type Watcher } from "etcd3";
import { openEtcd } from "./token-clients.js";
import { within } from "../within.js";

/** The part of etcd3 1.1.x's watch manager (not in its public types) that dispatches the stream's answers. */
interface WatchManagerInternals {
  handleResponse(res: unknown): void;
  handleCreatedResponse(res: unknown): void;
}

/**
 * etcd3 1.1.2 throws from its stream's 'data' handler when an answer names
 * a watcher it no longer holds, or a create answer finds none waiting: an
 * answer already under way on a stream it has just cancelled (the
 * connection broken or closed, a watcher being let go). The throw becomes
 * an unhandled rejection, which ends the process: a server of a fleet
 * whose etcd link broke at the wrong moment would have exited (seen once
 * in a test's teardown, 2026-12-07: "Failed to find watcher for
 * IWatchResponse"). Such an answer belongs to no watch: it is dropped.
 */
export function dropStrayWatchAnswers(etcd: Etcd3): void {
  const manager = (etcd as unknown as { readonly watchManager: WatchManagerInternals }).watchManager;
  for (const name of ["handleResponse", "handleCreatedResponse"] as const) {
    const dispatch = manager[name].bind(manager);
    manager[name] = (res: unknown): void => {
      try {
        dispatch(res);
      } catch (error) {
        if (!(error instanceof ClientRuntimeError)) throw error;
      }
    };
  }
}

/**
 * How long close() waits for etcd to confirm the cancel: etcd3 waits for
 * the answer with no deadline of its own, and an etcd that has hung (a
 * partition that drops packets) would hold a stopping server forever.
 * The connection is closed after it either way, which ends the watch.
 */
export const CANCEL_WAIT_MS = 1_000;

export interface PrefixWatch {
  /** A watcher a prefix, in the order asked; they share one stream, and break and come back together. */
  readonly watchers: readonly Watcher[];
  /** Cancels the watch and closes its connection. */
  close(): Promise<void>;
}

/**
 * Watches each of `prefixes` (from `fromRevision`, or from now);
 * `onCancelled` runs once if etcd cancels a watcher, after the connection
 * is closed (the others end with it). Rejects if the watch cannot be made,
 * or once `signal` aborts while it is being made (its owner stops: etcd
 * may not answer, and the watch would then try for ever).
 */
export async function watchPrefixes(
  options: IOptions, prefixes: readonly string[], onCancelled: (error: Error) => void, fromRevision?: bigint, signal?: AbortSignal,
): Promise<PrefixWatch> {
  const etcd = openEtcd(options);
  dropStrayWatchAnswers(etcd);
  const watchers = prefixes.map((prefix) => {
    const builder = etcd.watch().prefix(prefix);
    return (fromRevision === undefined ? builder : builder.startRevision(fromRevision.toString())).watcher();
  });
  /** Watchers etcd cancelled: etcd3 has let them go already. */
  const gone = new Set<Watcher>();
  let created = false;
  let closed = false;
  let failed: (error: Error) => void = () => {};
  /**
   * Cancels every watcher and closes the connection. etcd3 makes the
   * stream of a watcher it still holds again and again, on a closed
   * connection too, for ever (one whose cancel etcd did not confirm in
   * time, or one still being made): such a watcher is let go at its next
   * disconnection, when etcd3 drops it at once.
   */
  const end = async (): Promise<void> => {
    const held = watchers.filter((w) => !gone.has(w));
    for (const watcher of held) watcher.once("disconnected", () => void watcher.cancel().catch(() => undefined));
    await within(Promise.all(held.map((w) => w.cancel().catch(() => undefined))), CANCEL_WAIT_MS, undefined);
    etcd.close();
  };
  for (const watcher of watchers) {
    watcher.on("error", (error: Error) => {
      gone.add(watcher);
      if (closed) return;
      if (!created) {
        failed(error);
        return;
      }
      closed = true;
      void end().then(() => onCancelled(error));
    });
  }
  const stopped = (): void => failed(new Error("the watch was given up while it was being made"));
  try {
    if (signal?.aborted) throw new Error("the watch was given up before it was made");
    await new Promise<void>((resolve, reject) => {
      failed = reject;
      signal?.addEventListener("abort", stopped, { once: true });
      let connecting = watchers.length;
      for (const watcher of watchers) {
        watcher.once("connected", () => {
          if (--connecting === 0) resolve();
        });
      }
    });
  } catch (error) {
    closed = true;
    await end();
    throw error;
  } finally {
    signal?.removeEventListener("abort", stopped);
  }
  created = true;
  return {
    watchers,
    async close() {
      if (closed) return;
      closed = true;
      await end();
    },
  };
}
