// What runs while the server stops: once it has said "Server exiting",
// the reference's main loop has quit and none of its timers fire, so no
// checker starts and no client expires. Ours gives the connections still
// open a grace (main.ts's stop) in which a secret may still go out; the
// checkers' schedule and the expiry timers stop at once, before it
// (ClientRegistry.stopChecking).

import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { clientSettings } from "./helpers/clients.js";
import { machine, machineSection, makeFleetDir } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { runMandosClient, startServer, type RunningServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

test("once stopping, a registry starts no checker and expires no client, even when asked", () => {
  const clock = new ManualClock();
  const started: string[] = [];
  const spawner: CheckerSpawner = (command) => {
    started.push(command);
    return { kill() {} };
  };
  const reg = new ClientRegistry([clientSettings("web", { checker: "check web", interval: 1_000, timeout: 2_000 })], { logger: silentLogger, clock, spawner, random: () => 0 });
  reg.start();
  clock.advance(500);
  assert.equal(started.length, 1, "the schedule runs before the stop");
  assert.equal(reg.get("web")?.enabled, true);
  reg.stopChecking();
  clock.advance(60_000);
  assert.equal(started.length, 1, "a scheduled checker started after the stop began");
  assert.equal(reg.get("web")?.enabled, true, "the client expired after the stop began");
  reg.startChecker("web");
  reg.enable("web");
  reg.checkedOk("web");
  clock.advance(60_000);
  assert.equal(started.length, 1, "an asked-for checker started after the stop began");
  assert.equal(reg.get("web")?.enabled, true);
  reg.stop();
});

test("no checker starts in the stop's grace while the real mandos-client waits for its approval", { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN), timeout: 120_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-stop-checkers-"));
  const { clients: [waiter], conf, state } = makeFleetDir(root, 1);
  const checks = join(state, "checks");
  const script = join(conf, "check.sh");
  // The time of each checker's start, in ns since the epoch.
  writeFileSync(script, `#!/bin/sh\ndate +%s%N >> ${checks}\n`);
  chmodSync(script, 0o755);
  const checked = machine("checked");
  writeFileSync(
    join(conf, "clients.conf"),
    `${waiter!.section}\napproval_delay = PT60S\napproved_by_default = False\nchecker = true\n\n` + machineSection(checked, `interval = 1s\nchecker = ${script}\n`),
  );
  let started: RunningServer | undefined;
  let stopped = false;
  try {
    const server = (started = await startServer(["--configdir", conf, "--statedir", state, "--no-restore", "--port", "0", "--address", "::1"]));
    await eventually(() => existsSync(checks) && readFileSync(checks, "utf8").split("\n").length > 2, { what: "the checker ran twice", context: () => server.log() });
    const waiting = runMandosClient(waiter!.dir, "::1", server.port, 30_000);
    await server.waitForLog(new RegExp(`Client ${waiter!.name} needs approval`), 30_000);
    const stopAt = BigInt(Date.now()) * 1_000_000n;
    const began = Date.now();
    assert.equal(await server.stop(), 0, server.log().slice(-2_000));
    stopped = true;
    // The waiting connection held the stop for its grace: checkers were due meanwhile.
    assert.ok(Date.now() - began >= 2_000, "the stop did not wait for the connection: the test proves nothing");
    const late = readFileSync(checks, "utf8").trim().split("\n").filter((l) => BigInt(l) > stopAt);
    assert.deepEqual(late, [], "checkers started after the stop began");
    await waiting;
  } finally {
    if (!stopped) await started?.stop();
    rmSync(root, { recursive: true, force: true });
  }
});
