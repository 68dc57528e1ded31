// A client that leaves the servers of a fleet by a reload (its section
// taken out of clients.conf, or given a new key) is disabled as it goes,
// as the reference's RemoveClient disables it; that is each server's
// leaving, not an operator's disable, and stays off etcd. Shared, it was
// the newest Enabled of the client: put back in clients.conf (or with its
// new key) the client took the fleet's false, on every server, and its
// machine never booted unattended again (session 60's soak: 18 of 18
// clients put back). In process, against a real one-member etcd.

import { test } from "node:test";
import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { applyReload } from "../src/main/clients/reload.js";
import type { ClientSettings } from "../src/main/clients/settings.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { clientKey, decodeValue } from "../src/main/fleet/layout.js";
import { clientSettings } from "./helpers/clients.js";
import { etcdForFile, etcdMissing } from "./helpers/etcd.js";
import { startedPair, type InProcessServer } from "./helpers/fleet-server.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const etcdCluster = etcdForFile(1);
const HOUR = 3_600_000;
const settings = (name: string, over: Partial<ClientSettings> = {}): ClientSettings => clientSettings(name, { timeout: HOUR, interval: HOUR, ...over });

/** Reloads `from` -> `to` on both servers, then waits until `signal` (a client new in `to`) is seeded in etcd: the read that follows the reload is over. */
async function reloadBoth(etcd: Etcd3, prefix: string, servers: readonly InProcessServer[], from: readonly ClientSettings[], to: readonly ClientSettings[], signal?: string): Promise<void> {
  for (const s of servers) applyReload(s.registry, from, to, silentLogger);
  if (signal !== undefined) {
    await eventually(async () => (await etcd.get(clientKey(prefix, signal, "Timeout")).string()) !== null, { what: `${signal} seeded after the reload` });
  }
}

async function enabledInEtcd(etcd: Etcd3, prefix: string, name: string): Promise<unknown> {
  const text = await etcd.get(clientKey(prefix, name, "Enabled")).string();
  return text === null ? undefined : decodeValue(text)?.value;
}

test("a client a reload takes out and a later one puts back is enabled again on every server", { skip, timeout: 120_000 }, async (t) => {
  const prefix = "/reload-removed/";
  const { a, b, etcd } = await startedPair(t, etcdCluster(), prefix, ["c0", "c1"], { timeout: HOUR, interval: HOUR });
  await eventually(async () => (await enabledInEtcd(etcd, prefix, "c0")) === true, { what: "c0 seeded enabled" });
  const both = [settings("c0"), settings("c1")];
  const without = [settings("c1")];
  await reloadBoth(etcd, prefix, [a, b], both, without);
  assert.equal(a.registry.has("c0") || b.registry.has("c0"), false);
  // Back, with a new client whose seed says the reload's read is over.
  await reloadBoth(etcd, prefix, [a, b], without, [...both, settings("c2")], "c2");
  for (const [server, s] of [["A", a], ["B", b]] as const) {
    assert.equal(s.registry.get("c0")?.enabled, true, `${server} disabled c0 put back:\n${s.log.join("\n")}`);
  }
  assert.equal(await enabledInEtcd(etcd, prefix, "c0"), true, "the removal's disable reached etcd");
});

test("a client a reload gives a new key stays enabled on every server", { skip, timeout: 120_000 }, async (t) => {
  const prefix = "/reload-new-key/";
  const { a, b, etcd } = await startedPair(t, etcdCluster(), prefix, ["c0", "c1"], { timeout: HOUR, interval: HOUR });
  await eventually(async () => (await enabledInEtcd(etcd, prefix, "c0")) === true, { what: "c0 seeded enabled" });
  const before = [settings("c0"), settings("c1")];
  // The machine reinstalled: a new TLS key, the same section.
  const after = [settings("c0", { keyId: "ab".repeat(32) }), settings("c1"), settings("c2")];
  await reloadBoth(etcd, prefix, [a, b], before, after, "c2");
  for (const [server, s] of [["A", a], ["B", b]] as const) {
    assert.equal(s.registry.get("c0")?.keyId, "ab".repeat(32));
    assert.equal(s.registry.get("c0")?.enabled, true, `${server} disabled c0 with its new key:\n${s.log.join("\n")}`);
  }
  assert.equal(await enabledInEtcd(etcd, prefix, "c0"), true, "the key change's disable reached etcd");
});
