// A watch of a key prefix, on a connection to etcd of its own (docs/ETCD.md
// "Securing etcd"). etcd cancels a watch that comes back with an auth token
// it no longer knows: a restarted etcd forgets every token it gave, and a
// token unused for --auth-token-ttl expires. etcd3 then asks for no new
// token for its watch stream and creates no other watch on it, so the
// watch and its connection are thrown away together, and the owner reads
// the prefix again and makes a new one. A watch cancelled for any other
// reason (a compacted start revision) is handled the same way.

import type { IOptions, Watcher } from "etcd3";
import { openEtcd } from "./token-clients.js";
import { within } from "../within.js";

/**
 * How long close() waits for etcd to confirm the cancel: etcd3 waits for
 * the answer with no deadline of its own, and an etcd that has hung (a
 * partition that drops packets) would hold a stopping server forever.
 * The connection is closed after it either way, which ends the watch.
 */
export const CANCEL_WAIT_MS = 1_000;

export interface PrefixWatch {
  readonly watcher: Watcher;
  /** Cancels the watch and closes its connection. */
  close(): Promise<void>;
}

/**
 * Watches `prefix` (from `fromRevision`, or from now); `onCancelled` runs
 * once if etcd cancels the watch, after its connection is closed. Rejects
 * if the watch cannot be made.
 */
export async function watchPrefix(options: IOptions, prefix: string, onCancelled: (error: Error) => void, fromRevision?: bigint): Promise<PrefixWatch> {
  const etcd = openEtcd(options);
  let watcher: Watcher;
  try {
    const builder = etcd.watch().prefix(prefix);
    watcher = await (fromRevision === undefined ? builder : builder.startRevision(fromRevision.toString())).create();
  } catch (error) {
    etcd.close();
    throw error;
  }
  let closed = false;
  watcher.on("error", (error: Error) => {
    if (closed) return;
    closed = true;
    etcd.close();
    onCancelled(error);
  });
  return {
    watcher,
    async close() {
      if (closed) return;
      closed = true;
      await within(watcher.cancel(), CANCEL_WAIT_MS, undefined);
      etcd.close();
    },
  };
}
