// Three servers whose clients.conf differ (docs/ETCD.md "Checkers"): a
// client's checker runs on one live server, the one whose hash with the
// client's name is highest. A server that did not have the client (not
// in its clients.conf, or taken out by a reload) could win it: then no
// server checked it, and none timed it out (the others wait for the
// owner's decision), without a word: its Expires passed, it stayed
// enabled and its LastCheckedOK stood still. Each server's servers/ key
// now says which of the fleet's clients it lacks, and the checker runs on
// a server that has it. And a client the fleet disabled that a reload
// adds to a server stays refused, as before, but now with a warning that
// says since when and through which server: before, only that it was
// disabled, at each of its requests. In process, against a real
// one-member etcd.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Etcd3 } from "etcd3";
import { applyReload } from "../src/main/clients/reload.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { clientKey, decodeValue } from "../src/main/fleet/layout.js";
import { decodeLacks, encodeLacks, LACKS_MAX_BYTES } from "../src/main/fleet/checker-share.js";
import { clientSettings } from "./helpers/clients.js";
import { etcdForFile, etcdMissing, serversRegistered } from "./helpers/etcd.js";
import { inProcessServer, type InProcessServer } from "./helpers/fleet-server.js";
import { eventually } from "./helpers/wait.js";

const skip = etcdMissing();
const etcdCluster = etcdForFile(1);
const IDS = ["server-a", "server-b", "server-c"] as const;
/** Checked every second, never timed out in a test's time. */
const OVER = { timeout: 3_600_000, interval: 1_000 };

/** The server rendezvous hashing gives `name` among `ids` (checker-share.ts's owns()). */
function winner(name: string, ids: readonly string[]): string {
  const score = (id: string): number => createHash("sha256").update(id).update("\0").update(name).digest().readUIntBE(0, 6);
  return [...ids].sort((x, y) => score(y) - score(x) || (x < y ? -1 : 1))[0]!;
}

/** A client name that server-c would win among the three. */
function wonByC(from: number): string {
  for (let i = from; i < from + 1_000; i++) if (winner(`x${i}`, IDS) === "server-c") return `x${i}`;
  throw new Error("no name won by server-c");
}

/** Counts the checkers `servers` start for `name` from now on. */
function countChecks(servers: readonly InProcessServer[], name: string): { readonly count: () => number; readonly stop: () => void } {
  let n = 0;
  const offs = servers.map((s) => s.registry.subscribe((e) => {
    if (e.type === "checker-started" && e.client.name === name) n++;
  }));
  return { count: () => n, stop: () => offs.forEach((off) => off()) };
}

async function startThree(t: import("node:test").TestContext, prefix: string, names: readonly (readonly string[])[]): Promise<InProcessServer[]> {
  const servers = IDS.map((id, i) => inProcessServer(etcdCluster(), prefix, id, names[i]!, OVER));
  t.after(async () => {
    for (const s of servers) await s.stop();
  });
  for (const s of servers) {
    await s.fleet.start();
    s.registry.start();
  }
  await serversRegistered(etcdCluster(), prefix, 3);
  return servers;
}

test("a client that the server its hash picks does not have is checked by one that has it", { skip, timeout: 120_000 }, async (t) => {
  const x = wonByC(0);
  const [a, b] = await startThree(t, "/differ-start/", [["common", x], ["common", x], ["common"]]);
  // Three checks from here on: more than a server that took itself for
  // the owner for a moment (before it saw server-c's key) would start.
  const checks = countChecks([a!, b!], x);
  t.after(checks.stop);
  await eventually(() => checks.count() >= 3, { what: `${x}'s checker run by server-a or server-b`, timeoutMs: 20_000, context: () => `${checks.count()} checks` });
});

test("a client a reload takes out of the server its hash picks is checked by another that has it", { skip, timeout: 120_000 }, async (t) => {
  const x = wonByC(0);
  const all = [clientSettings("common", OVER), clientSettings(x, OVER)];
  const [a, b, c] = await startThree(t, "/differ-reload/", [["common", x], ["common", x], ["common", x]]);
  applyReload(c!.registry, all, [clientSettings("common", OVER)], silentLogger);
  assert.equal(c!.registry.has(x), false);
  const checks = countChecks([a!, b!], x);
  t.after(checks.stop);
  await eventually(() => checks.count() >= 3, { what: `${x}'s checker run by server-a or server-b once server-c let it go`, timeoutMs: 20_000, context: () => `${checks.count()} checks` });
});

test("a client the fleet disabled, added to a server by a reload, stays refused and the server says why", { skip, timeout: 120_000 }, async (t) => {
  const prefix = "/differ-disabled/";
  const [a, , c] = await startThree(t, prefix, [["common", "romeo"], ["common"], ["common"]]);
  a!.registry.disable("romeo");
  const etcd = new Etcd3({ hosts: etcdCluster().endpoints.split(",") });
  t.after(() => etcd.close());
  await eventually(async () => decodeValue((await etcd.get(clientKey(prefix, "romeo", "Enabled")).string()) ?? "")?.value === false, { what: "romeo's disable in etcd" });
  // A machine reinstalled under the name, added to server-c.
  applyReload(c!.registry, [clientSettings("common", OVER)], [clientSettings("common", OVER), clientSettings("romeo", { ...OVER, keyId: "cd".repeat(32) })], silentLogger);
  const line = await eventually(() => c!.log.find((l) => l.includes("romeo, added by the reload, is disabled in the fleet")), {
    what: "server-c's warning", context: () => c!.log.join("\n"),
  });
  assert.equal(c!.registry.get("romeo")?.enabled, false, "the fleet's disable was not taken");
  assert.match(line, /^WARNING: .*since \d{4}-\d\d-\d\dT.*through server-a\b.*mandos-ctl --enable romeo/);
});

test("a server's key says the names it lacks, within LACKS_MAX_BYTES, and anything else reads as none lacked", () => {
  assert.equal(encodeLacks([]).value, "", "a server with every client writes what earlier releases write");
  assert.deepEqual([...decodeLacks(encodeLacks(["a", "b/c", "ü"]).value)], ["a", "b/c", "ü"]);
  const many = Array.from({ length: 40_000 }, (_, i) => `client-${String(i).padStart(12, "0")}`);
  const { value, left } = encodeLacks(many);
  assert.ok(Buffer.byteLength(value) <= LACKS_MAX_BYTES + 64, `${Buffer.byteLength(value)} bytes`);
  assert.equal(decodeLacks(value).size + left, many.length);
  assert.ok(left > 0);
  for (const junk of ["", "junk", "null", "[]", '{"lacks":"a"}', '{"other":["a"]}']) assert.equal(decodeLacks(junk).size, 0, junk);
  assert.deepEqual([...decodeLacks('{"lacks":["a",1,null],"later":true}')], ["a"], "a later release's field beside it");
});
