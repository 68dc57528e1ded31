// An answer on etcd's watch stream that names no watcher etcd3 still holds
// (one under way on a stream just cancelled: the link broke, a watcher
// was being let go) must not end the process. etcd3 1.1.2 throws from
// the stream's 'data' handler, which becomes an unhandled rejection; seen
// once in a full run, at a test's teardown (fleet-approval-resync,
// 2026-12-07). The race itself is a matter of microseconds: here the
// stray answers are handed to the watch manager as the stream would hand
// them, on a real etcd, beside a watch that must go on working.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import { dropStrayWatchAnswers } from "../src/main/fleet/prefix-watch.js";
import { etcdForFile, etcdMissing } from "./helpers/etcd.js";

const skip = etcdMissing();
const cluster = etcdForFile(1);

/** What the watch stream hands etcd3 (etcdserverpb.WatchResponse, as grpc-js decodes it). */
function answer(watchId: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return { header: { revision: "1" }, watch_id: watchId, created: false, canceled: false, compact_revision: "0", cancel_reason: "", events: [], ...fields };
}

interface Dispatch {
  handleResponse(res: unknown): void;
  handleCreatedResponse(res: unknown): void;
}

test("a stray watch answer is dropped, and the watch beside it goes on", { skip }, async () => {
  const etcd = new Etcd3({ hosts: cluster().members[0]!.clientUrl });
  try {
    const manager = (etcd as unknown as { readonly watchManager: Dispatch }).watchManager;
    // etcd3 as it is: what made the process exit.
    assert.throws(() => manager.handleResponse(answer("987654")), /Failed to find watcher for IWatchResponse/);

    dropStrayWatchAnswers(etcd);
    const watcher = await etcd.watch().prefix("/strays/").create();
    const seen: string[] = [];
    watcher.on("put", (kv) => void seen.push(kv.key.toString()));
    await etcd.put("/strays/a").value("1");
    await waitUntil(() => seen.length === 1);

    // An answer for a watcher it does not hold, a create answer none waits for, a cancel for a watcher long gone.
    manager.handleResponse(answer("987654"));
    manager.handleCreatedResponse(answer("987655", { created: true }));
    manager.handleResponse(answer("987656", { canceled: true, cancel_reason: "gone" }));

    await etcd.put("/strays/b").value("2");
    await waitUntil(() => seen.length === 2);
    assert.deepEqual(seen, ["/strays/a", "/strays/b"]);
    await watcher.cancel();
  } finally {
    etcd.close();
  }
});

async function waitUntil(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done()) {
    assert.ok(Date.now() < deadline, "the watch brought nothing");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
