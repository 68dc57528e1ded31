// A client a SIGHUP reload removed comes back as it was when a later reload
// adds its section back with the same key: a clients.conf caught empty or
// half written (an editor's truncate, a full disk, logrotate's weekly
// reload landing mid-edit) loses nothing once it is whole again. Found by
// the reload audit: a machine disabled at run time (a stolen one) came
// back enabled, and a secret set at run time was lost.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { applyReload } from "../src/main/clients/reload.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { clientSettings, keyIdOf } from "./helpers/clients.js";

const conf = [clientSettings("stolen"), clientSettings("other", { secret: Buffer.from("file secret") })];

function started(): ClientRegistry {
  const reg = new ClientRegistry(conf, { logger: silentLogger, clock: new ManualClock(), spawner: () => ({ kill() {} }), random: () => 0.5 });
  reg.start();
  return reg;
}

test("an empty clients.conf, then the whole one again: the disabled client stays disabled, the run-time secret stays", () => {
  const reg = started();
  reg.disable("stolen");
  reg.update("other", { secret: Buffer.from("run-time secret") });
  applyReload(reg, conf, [], silentLogger);
  assert.equal(reg.get("stolen"), undefined, "removed while the file lists it not");
  const lines: string[] = [];
  applyReload(reg, [], conf, { ...silentLogger, info: (m: string): void => void lines.push(m) });
  assert.equal(reg.get("stolen")?.enabled, false, "still disabled");
  assert.equal(reg.get("other")?.enabled, true);
  assert.equal(reg.entry("other")?.settings.secret.toString(), "run-time secret");
  assert.ok(lines.includes("Client stolen is back in clients.conf: restored as it was when a reload removed it (disabled)"), lines.join("\n"));
});

test("a section back with what the file changed meanwhile takes the change, as for a client never removed", () => {
  const reg = started();
  reg.disable("stolen");
  applyReload(reg, conf, conf.slice(1), silentLogger);
  const edited = [clientSettings("stolen", { timeout: 123_000 }), conf[1]!];
  applyReload(reg, conf.slice(1), edited, silentLogger);
  assert.equal(reg.get("stolen")?.enabled, false);
  assert.equal(reg.entry("stolen")?.settings.timeout, 123_000);
});

test("a section back with another key is a new client", () => {
  const reg = started();
  reg.disable("stolen");
  applyReload(reg, conf, conf.slice(1), silentLogger);
  const rekeyed = [clientSettings("stolen", { keyId: keyIdOf("a new machine") }), conf[1]!];
  applyReload(reg, conf.slice(1), rekeyed, silentLogger);
  assert.equal(reg.get("stolen")?.enabled, true, "a fresh client, enabled as the file says");
});
