// An approval given through one server of the fleet while another's watch
// is away (docs/ETCD.md, "What the fleet shares"): when etcd has compacted
// its history meanwhile (or cancelled the watch for an expired login), the
// watch cannot resume, and the server reads the whole fleet again. A
// decision given while a connection of that client waits there is that
// wait's and releases it; an older one is history and does not. In
// process, against a real one-member etcd; server B reaches it through a
// forwarder the test cuts and mends.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, createServer, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Etcd3 } from "etcd3";
import { ClientRegistry } from "../src/main/clients/registry.js";
import type { SecretDecision } from "../src/main/clients/contract.js";
import { systemClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { FleetState } from "../src/main/fleet/fleet-state.js";
import { approvalKey, clientKey } from "../src/main/fleet/layout.js";
import type { EtcdSettings } from "../src/main/fleet/settings.js";
import { clientSettings, keyIdOf } from "./helpers/clients.js";
import { etcdForFile, etcdMissing } from "./helpers/etcd.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const cluster = etcdForFile(1);
const HOUR = 3_600_000;
const PREFIX = "/approval-resync/";

/** A TCP forwarder to etcd on [::1] that the test cuts (every connection closed, new ones too) and mends. */
class Link {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #cut = false;

  private constructor(target: URL) {
    this.#server = createServer((inbound) => {
      if (this.#cut) {
        inbound.destroy();
        return;
      }
      const outbound = connect({ host: target.hostname.replace(/^\[|\]$/g, ""), port: Number(target.port) });
      for (const [from, to] of [[inbound, outbound], [outbound, inbound]] as const) {
        this.#sockets.add(from);
        from.pipe(to);
        from.on("error", () => to.destroy());
        from.on("close", () => {
          this.#sockets.delete(from);
          to.destroy();
        });
      }
    });
  }

  static async to(url: string): Promise<Link & { readonly port: number }> {
    const link = new Link(new URL(url));
    await new Promise<void>((resolve) => link.#server.listen({ host: "::1", port: 0 }, resolve));
    const address = link.#server.address();
    return Object.assign(link, { port: typeof address === "object" && address ? address.port : 0 });
  }

  cut(): void {
    this.#cut = true;
    for (const s of this.#sockets) s.destroy();
  }

  mend(): void {
    this.#cut = false;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

function settings(endpoint: string): EtcdSettings {
  return { endpoints: [endpoint], prefix: PREFIX, ca: null, cert: null, key: null, user: null, passwordFile: null };
}

/** An approval holds this long (approval_duration): a request within it is approved at once. */
const APPROVAL_DURATION_MS = 200;

/** charlie waits up to 90 s for approval and is denied by default; alpha is there to show a read of the fleet. */
function registry(): ClientRegistry {
  return new ClientRegistry(
    ["charlie", "alpha"].map((n) => clientSettings(n, { timeout: HOUR, interval: HOUR, extendedTimeout: 2 * HOUR, approvalDelay: 90_000, approvedByDefault: false, approvalDuration: APPROVAL_DURATION_MS })),
    { logger: silentLogger },
  );
}

/** A request of charlie's waiting on `r`, and whether it has been decided yet. */
function waitOn(r: ClientRegistry): { readonly decision: Promise<SecretDecision>; readonly decided: () => boolean; readonly abort: () => void } {
  const controller = new AbortController();
  let decided = false;
  const decision = r.requestSecret("charlie", keyIdOf("charlie"), "::1", controller.signal);
  void decision.then(() => (decided = true));
  return { decision, decided: () => decided, abort: () => controller.abort() };
}

/**
 * Drops etcd's history up to now: a watch that resumes from before cannot,
 * and etcd cancels it. A write outside the prefix first: a watch may
 * resume at the compacted revision itself, and would get the last change.
 */
async function compact(etcd: Etcd3): Promise<void> {
  const { header } = await etcd.put("/elsewhere/tick").value(String(Date.now())).exec();
  await etcd.kv.compact({ revision: header.revision, physical: true });
}

test("an approval given through A while B's watch was away (etcd compacted meanwhile) releases the client waiting on B; a decision from before the wait does not", { skip, timeout: 120_000 }, async () => {
  const member = cluster().members[0]!.clientUrl;
  const etcd = new Etcd3({ hosts: member });
  const link = await Link.to(member);
  const a = registry();
  const b = registry();
  const fleetA = new FleetState(settings(member), { registry: a, logger: silentLogger, clock: systemClock, serverId: "server-a" });
  const fleetB = new FleetState(settings(`http://[::1]:${link.port}`), { registry: b, logger: silentLogger, clock: systemClock, serverId: "server-b" });
  const stored = async (key: string, pattern: RegExp): Promise<boolean> => pattern.test((await etcd.get(key).string()) ?? "");
  /** B cut off from etcd until `meanwhile` is done and the history compacted. */
  const away = async (meanwhile: () => Promise<void>): Promise<void> => {
    link.cut();
    await eventually(() => fleetB.degraded, { what: "B's link to etcd down" });
    await meanwhile();
    await compact(etcd);
    link.mend();
  };
  await fleetA.start();
  await fleetB.start();
  try {
    const first = waitOn(b);
    await eventually(() => a.get("charlie")?.approvalPending, { what: "A shows charlie waiting on B" });
    await away(async () => {
      a.approve("charlie", true);
      await eventually(() => stored(approvalKey(PREFIX, "charlie"), /"value":true/), { what: "A's approval in etcd" });
    });
    await eventually(first.decided, { what: "the client waiting on B released by the approval given through A while B was away" });
    const got = await first.decision;
    assert.equal(got.give ? got.secret.toString() : `refused: ${got.reason}`, "secret of charlie");
    await eventually(() => fleetB.degraded === false, { what: "B back" });

    // A new wait, once the approval has lapsed: the decision in etcd is older than it, history.
    await sleep(2 * APPROVAL_DURATION_MS);
    const second = waitOn(b);
    await eventually(() => a.get("charlie")?.approvalPending, { what: "A shows charlie waiting on B again" });
    await away(async () => {
      a.disable("alpha");
      await eventually(() => stored(clientKey(PREFIX, "alpha", "Enabled"), /"value":false/), { what: "A's disable in etcd" });
    });
    // The read that brought alpha's disable brought the old approval with it.
    await eventually(() => b.get("alpha")?.enabled === false, { what: "B read the fleet again" });
    assert.equal(second.decided(), false, "an approval given before the wait released it");
    assert.equal(b.get("charlie")?.approvalPending, true);
    second.abort();
    const refused = await second.decision;
    assert.equal(refused.give, false);
  } finally {
    await fleetB.stop();
    await fleetA.stop();
    await link.close();
    etcd.close();
    a.stop();
    b.stop();
  }
});
