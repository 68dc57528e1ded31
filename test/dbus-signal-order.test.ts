// What the registry announces, in what order, where that decides the
// D-Bus signals a watcher (mandos-monitor) sees; with a clock the test
// moves and a recording spawner. The reference's signals for the same
// changes are compared on the bus in dbus-reference-compare.test.ts; these
// are the cases that need a fleet or a moment the bus cannot arrange.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import type { RegistryEvent } from "../src/main/clients/contract.js";
import { clientSettings } from "./helpers/clients.js";

/** A spawner that records each checker's command and never ends one. */
function recording(): { spawner: CheckerSpawner; started: string[] } {
  const started: string[] = [];
  return { started, spawner: (command) => (started.push(command), { kill: () => undefined }) };
}

/** The registry's events as "type" or "property-changed Name", in order. */
function eventLog(reg: ClientRegistry): string[] {
  const log: string[] = [];
  reg.subscribe((e: RegistryEvent) => log.push(e.type === "property-changed" ? `${e.type} ${e.property}` : e.type));
  return log;
}

test("a client a fleet enables before start() runs no checker until start(): none before its D-Bus object", () => {
  // main.ts calls start() once the clients are on D-Bus; a fleet's start-up
  // sync (adopt) runs before that. A checker scheduled by that enable ran
  // one interval later even if D-Bus was not up yet, and mandos-monitor saw
  // its CheckerCompleted without its CheckerStarted.
  const clock = new ManualClock();
  const s = recording();
  const reg = new ClientRegistry([clientSettings("web", { enabled: false, interval: 1_000 })], { logger: silentLogger, clock, spawner: s.spawner, random: () => 0.5 });
  const log = eventLog(reg);
  reg.adopt("web", { runtime: { enabled: true }, settings: {} });
  assert.equal(reg.get("web")?.enabled, true);
  clock.advance(10_000);
  assert.deepEqual(s.started, [], "a checker ran before start()");
  assert.ok(!log.includes("checker-started"), log.join("\n"));
  reg.start();
  clock.advance(1_000);
  assert.deepEqual(s.started, ["true"], "no checker after start()");
  assert.ok(reg.get("web")?.expires, "no expiry after start()");
});

test("an expiry a fleet shares before start() disables nobody before start(): no Enabled change before the D-Bus object", () => {
  // The start-up sync adopts the fleet's Expires before main.ts calls
  // start(); one already past armed a timer at once, and the client was
  // disabled (its signals lost) before it was on the bus.
  const clock = new ManualClock();
  const reg = new ClientRegistry([clientSettings("web", { interval: 1_000, timeout: 5_000 })], { logger: silentLogger, clock, spawner: recording().spawner, random: () => 0.5 });
  const log = eventLog(reg);
  reg.adopt("web", { runtime: { expires: clock.now() - 1 }, settings: {} });
  clock.advance(10_000);
  assert.equal(reg.get("web")?.enabled, true);
  assert.ok(!log.includes("property-changed Enabled"), log.join("\n"));
  // start() gives it a fresh expiry, as the reference's init_checker.
  reg.start();
  assert.equal(reg.get("web")?.enabled, true);
  assert.ok(reg.get("web")!.expires!.getTime() > clock.now());
});

test("disabling a client whose expiry a fleet already cleared announces no second Expires, as the reference's setter", () => {
  // The reference announces a property only when its value changes; a
  // server of the fleet that disabled the client shares Expires "" and
  // Enabled false as two rows, which may arrive one at a time.
  const clock = new ManualClock();
  const reg = new ClientRegistry([clientSettings("web")], { logger: silentLogger, clock, spawner: recording().spawner, random: () => 0.5 });
  reg.start();
  const log = eventLog(reg);
  reg.adopt("web", { runtime: { expires: null }, settings: {} });
  assert.deepEqual(log, ["property-changed Expires"]);
  reg.adopt("web", { runtime: { enabled: false }, settings: {} });
  assert.deepEqual(log, ["property-changed Expires", "property-changed Enabled"]);
});

test("a Timeout that puts the expiry in the past announces the moved Expires, then the disabling's", () => {
  const clock = new ManualClock();
  const reg = new ClientRegistry([clientSettings("web", { timeout: 5_000 })], { logger: silentLogger, clock, spawner: recording().spawner, random: () => 0.5 });
  reg.start();
  reg.checkedOk("web");
  const log = eventLog(reg);
  reg.update("web", { timeout: 0 });
  assert.deepEqual(log, ["property-changed Timeout", "property-changed Expires", "property-changed Expires", "property-changed Enabled"]);
  assert.equal(reg.get("web")?.enabled, false);
});
