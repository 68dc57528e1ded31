// Reading the whole fleet at start-up (issue 15): a fleet of 10,000 clients
// is 140,000 keys, 14 MB, more than one gRPC message may carry, so the
// fleet is read a page at a time, all pages at one revision. Here with
// pages of three keys, in process, against a real one-member etcd.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { systemClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { FleetState } from "../src/main/fleet/fleet-state.js";
import { clientKey, encodeValue } from "../src/main/fleet/layout.js";
import { DEFAULT_ETCD_PREFIX } from "../src/main/fleet/settings.js";
import { clientSettings } from "./helpers/clients.js";
import { etcdForFile, etcdMissing, plainEtcdSettings } from "./helpers/etcd.js";

const NAMES = ["c0", "c1", "c2", "c3", "c4", "c5", "c6"];
const etcdCluster = etcdForFile(1);

test("every client's state is adopted when the fleet takes many pages to read", { skip: etcdMissing() }, async () => {
  const cluster = etcdCluster();
  const etcd = new Etcd3({ hosts: cluster.endpoints });
  const at = Date.now();
  try {
    // Another server's state: every client disabled and moved; 14 keys over pages of 3.
    for (const name of NAMES) {
      await etcd.put(clientKey(DEFAULT_ETCD_PREFIX, name, "Enabled")).value(encodeValue({ value: false, at, by: "other" }));
      await etcd.put(clientKey(DEFAULT_ETCD_PREFIX, name, "Host")).value(encodeValue({ value: `${name}.moved.example.org`, at, by: "other" }));
    }
  } finally {
    etcd.close();
  }
  const registry = new ClientRegistry(NAMES.map((n) => clientSettings(n, { timeout: 3_600_000, interval: 3_600_000 })), { logger: silentLogger });
  const fleet = new FleetState(
    plainEtcdSettings(cluster, DEFAULT_ETCD_PREFIX),
    { registry, logger: silentLogger, clock: systemClock, readPageKeys: 3 },
  );
  try {
    await fleet.start();
    assert.equal(fleet.degraded, false);
    for (const name of NAMES) {
      const c = registry.get(name)!;
      assert.deepEqual([c.enabled, c.host], [false, `${name}.moved.example.org`], `${name} did not take the fleet's state`);
    }
  } finally {
    await fleet.stop();
    registry.stop();
  }
});
