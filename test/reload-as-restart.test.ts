// A SIGHUP reload ends where a restart with restore ends (STATE.md,
// "Restoring": "A SIGHUP reload follows the same rule"): random changes at
// run time, then a random edit of clients.conf, applied once by
// clients/reload.ts to the running registry and once by saving the state,
// reading it back and restoring it over the edited file, as a restart
// does. The two registries must hold the same clients with the same
// settings, keys and state, and each, saved and started again on the same
// file, the same again.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { applyReload } from "../src/main/clients/reload.js";
import type { ClientSettings } from "../src/main/clients/settings.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { buildState, readState, restoreState, writeAtomically } from "../src/main/state/state-file.js";
import { clientSettings, keyIdOf } from "./helpers/clients.js";
import { random } from "./config-oracle.js";

const never: CheckerSpawner = () => ({ kill() {} });
const ROUNDS = 300;
const NAMES = ["a", "b", "c", "d", "e", "f"];

let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "mandos-ts-reload-restart-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

type Rng = () => number;
const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
const chance = (rng: Rng, p: number): boolean => rng() < p;

/** A key no other client has: the name and a serial number, as hex. */
let serial = 0;
function freshKey(name: string): string {
  serial++;
  return keyIdOf(name).slice(0, 56) + serial.toString(16).toUpperCase().padStart(8, "0");
}
function freshFingerprint(): string {
  serial++;
  return serial.toString(16).toUpperCase().padStart(40, "F");
}

/** One client's section, some settings drawn at random. */
function section(rng: Rng, name: string): ClientSettings {
  const legacy = chance(rng, 0.3);
  return clientSettings(name, {
    keyId: legacy && chance(rng, 0.5) ? "" : freshKey(name),
    fingerprint: legacy ? freshFingerprint() : "",
    secret: Buffer.from(`secret of ${name} ${Math.floor(rng() * 1e9)}`),
    timeout: pick(rng, [5_000, 60_000, 300_000]),
    approvalDelay: pick(rng, [0, 3_000]),
    enabled: chance(rng, 0.8),
  });
}

/** The file edited: each section kept, changed in one or two settings (its key among them), dropped; new ones added. */
function edit(rng: Rng, before: readonly ClientSettings[]): ClientSettings[] {
  const next: ClientSettings[] = [];
  for (const c of before) {
    if (chance(rng, 0.1)) continue;
    let e: ClientSettings = c;
    const changes = chance(rng, 0.5) ? 0 : chance(rng, 0.7) ? 1 : 2;
    for (let i = 0; i < changes; i++) {
      const what = pick(rng, ["keyId", "fingerprint", "secret", "host", "timeout", "interval", "checker", "approvalDelay", "approvedByDefault", "enabled"] as const);
      switch (what) {
        case "keyId":
          e = { ...e, keyId: freshKey(c.name) };
          break;
        case "fingerprint":
          e = { ...e, fingerprint: e.fingerprint === "" ? freshFingerprint() : "" };
          if (e.keyId === "" && e.fingerprint === "") e = { ...e, keyId: freshKey(c.name) };
          break;
        case "secret":
          e = { ...e, secret: Buffer.from(`edited secret of ${c.name} ${Math.floor(rng() * 1e9)}`) };
          break;
        case "host":
          e = { ...e, host: `edited-${c.name}.example.org` };
          break;
        case "timeout":
          e = { ...e, timeout: e.timeout + 1_000 };
          break;
        case "interval":
          e = { ...e, interval: e.interval + 1_000 };
          break;
        case "checker":
          e = { ...e, checker: "false" };
          break;
        case "approvalDelay":
          e = { ...e, approvalDelay: e.approvalDelay === 0 ? 2_000 : 0 };
          break;
        case "approvedByDefault":
          e = { ...e, approvedByDefault: !e.approvedByDefault };
          break;
        case "enabled":
          e = { ...e, enabled: !e.enabled };
          break;
      }
    }
    next.push(e);
  }
  for (const name of NAMES) if (!next.some((c) => c.name === name) && !before.some((c) => c.name === name) && chance(rng, 0.3)) next.push(section(rng, name));
  return next;
}

/** Changes at run time, as D-Bus and the checkers make them. */
function runTime(rng: Rng, reg: ClientRegistry, clock: ManualClock): void {
  for (let i = Math.floor(rng() * 8); i > 0; i--) {
    const names = reg.list().map((c) => c.name);
    if (names.length === 0) return;
    const name = pick(rng, names);
    switch (pick(rng, ["host", "timeout", "secret", "approval", "disable", "enable", "checked", "remove"] as const)) {
      case "host":
        reg.update(name, { host: `runtime-${name}.example.org` });
        break;
      case "timeout":
        reg.update(name, { timeout: 120_000, extendedTimeout: 900_000 });
        break;
      case "secret":
        reg.update(name, { secret: Buffer.from(`runtime secret of ${name}`) });
        break;
      case "approval":
        reg.update(name, { approvalDelay: 7_000, approvedByDefault: false });
        break;
      case "disable":
        reg.disable(name);
        break;
      case "enable":
        reg.enable(name);
        break;
      case "checked":
        reg.checkedOk(name);
        break;
      case "remove":
        if (chance(rng, 0.3)) reg.remove(name);
        break;
    }
    clock.advance(10);
  }
}

/** What a restart and a reload must agree on, client by client. */
function picture(reg: ClientRegistry): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { settings: s, runtime: r } of reg.snapshot()) {
    const { secret, enabled: _fileEnabled, ...rest } = s;
    out[s.name] = {
      ...rest,
      secret: secret.toString(),
      enabled: r.enabled,
      created: r.created,
      lastCheckedOk: r.lastCheckedOk,
      lastCheckerStatus: r.lastCheckerStatus,
      foundByKey: s.keyId === "" ? null : reg.byKeyId(s.keyId)?.name,
      foundByFingerprint: s.fingerprint === "" ? null : reg.byFingerprint(s.fingerprint)?.name,
    };
  }
  return out;
}

test(`a reload ends where a restart with restore ends: ${ROUNDS} random histories`, () => {
  const seed = Number(process.env.MANDOS_TS_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const rng = random(seed);
  for (let round = 0; round < ROUNDS; round++) {
    const clock = new ManualClock();
    const file = NAMES.filter(() => chance(rng, 0.7)).map((name) => section(rng, name));
    const running = new ClientRegistry(file, { logger: silentLogger, clock, spawner: never });
    runTime(rng, running, clock);
    const edited = edit(rng, file);

    // The restart: the state saved at SIGTERM, read back, restored over the edited file.
    const path = join(dir, "clients.json");
    writeAtomically(path, JSON.stringify(buildState(file, running.snapshot(), clock.now())));
    const restored = restoreState(edited, readState(path, silentLogger), clock.now(), silentLogger);
    const restarted = new ClientRegistry(restored.settings, { logger: silentLogger, clock, spawner: never }, restored.runtimes);

    // The reload, on the running registry.
    applyReload(running, file, edited, silentLogger);

    const replay = `round ${round} (MANDOS_TS_TEST_SEED=${seed} replays it)`;
    assert.deepEqual(picture(running), picture(restarted), replay);

    // Each then saves and starts again on the same file: nothing moves.
    for (const [what, reg] of [["the reloaded server", running], ["the restarted server", restarted]] as const) {
      writeAtomically(path, JSON.stringify(buildState(edited, reg.snapshot(), clock.now())));
      const again = restoreState(edited, readState(path, silentLogger), clock.now(), silentLogger);
      const next = new ClientRegistry(again.settings, { logger: silentLogger, clock, spawner: never }, again.runtimes);
      assert.deepEqual(picture(next), picture(reg), `${what} restarted: ${replay}`);
    }
  }
});
