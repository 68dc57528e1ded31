// Persistent state: round trips, the reference's precedence rules between
// clients.conf and saved state, expired clients, corrupt files, and atomic
// writes that survive kill -9.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import type { ClientRecord } from "../src/main/clients/record.js";
import type { ClientRuntime } from "../src/main/clients/contract.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { AUDIT_MS, buildState, NOT_STARTED, readState, restoreState, sealSecret, StateSerialiser, writeAtomically, writeAtomicallyInBackground, type StateFile } from "../src/main/state/state-file.js";
import { clientSettings } from "./helpers/clients.js";
import { REPO } from "./helpers/server.js";

const never: CheckerSpawner = () => ({ kill() {} });
let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "mandos-ts-state-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function roundTrip(state: StateFile): StateFile {
  const path = join(dir, "clients.json");
  writeAtomically(path, JSON.stringify(state));
  const back = readState(path, silentLogger);
  assert.ok(back);
  return back;
}

test("a change made at run time survives a restart", () => {
  const clock = new ManualClock();
  const config = [clientSettings("a"), clientSettings("b")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  reg.update("a", { host: "changed.example.org", interval: 7_000, secret: Buffer.from("new secret") });
  reg.disable("b");
  const state = roundTrip(buildState(config, reg.snapshot(), clock.now()));
  const restored = restoreState(config, state, clock.now(), silentLogger);
  const a = restored.settings.find((c) => c.name === "a")!;
  assert.equal(a.host, "changed.example.org");
  assert.equal(a.interval, 7_000);
  assert.equal(a.secret.toString(), "new secret");
  assert.equal(restored.runtimes.get("b")?.enabled, false);
  assert.equal(restored.settings.find((c) => c.name === "b")?.enabled, false);
});

test("a setting edited in clients.conf since the last save wins over the saved value", () => {
  const clock = new ManualClock();
  const config = [clientSettings("a")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  reg.update("a", { host: "runtime.example.org", timeout: 9_000 });
  const state = roundTrip(buildState(config, reg.snapshot(), clock.now()));
  const edited = [clientSettings("a", { host: "edited.example.org" })];
  const a = restoreState(edited, state, clock.now(), silentLogger).settings[0]!;
  assert.equal(a.host, "edited.example.org", "file changed: file wins");
  assert.equal(a.timeout, 9_000, "file unchanged: saved value wins");
});

test("an edited secret in clients.conf replaces the saved one", () => {
  const clock = new ManualClock();
  const config = [clientSettings("a")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  reg.update("a", { secret: Buffer.from("set at run time") });
  const state = roundTrip(buildState(config, reg.snapshot(), clock.now()));
  const edited = [clientSettings("a", { secret: Buffer.from("new in clients.conf") })];
  assert.equal(restoreState(edited, state, clock.now(), silentLogger).settings[0]!.secret.toString(), "new in clients.conf");
  // And the file never holds a secret in the clear.
  assert.ok(!JSON.stringify(state).includes(Buffer.from("set at run time").toString("base64")));
  assert.ok(!JSON.stringify(state).includes("set at run time"));
});

test("clients.conf's secret is not stored: restoring shares its Buffer, and a secret set at run time is sealed until set back", () => {
  const clock = new ManualClock();
  const config = [clientSettings("a", { secret: Buffer.from("from clients.conf") }), clientSettings("b", { secret: Buffer.from("b's") })];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  reg.update("b", { secret: Buffer.from("set at run time") });
  const serialiser = new StateSerialiser();
  const text = (): string => Buffer.concat(serialiser.pieces(config, reg.snapshot(), clock.now(), [], (n) => reg.entry(n))).toString("utf8");
  const first = JSON.parse(text()) as StateFile;
  assert.equal(first.clients.a!.secret, undefined, "a's secret is clients.conf's: none stored");
  assert.equal(typeof first.clients.b!.secret, "string", "b's was set at run time: sealed");
  // A fresh copy of clients.conf, as a restart reads it: a's secret is that copy's Buffer, not one of its own.
  const reread = [clientSettings("a", { secret: Buffer.from("from clients.conf") }), clientSettings("b", { secret: Buffer.from("b's") })];
  const restored = restoreState(reread, roundTrip(first), clock.now(), silentLogger).settings;
  assert.equal(restored[0]!.secret, reread[0]!.secret);
  // Nothing of a's changed at run time: it is clients.conf's object itself, which its record will share.
  assert.equal(restored[0], reread[0]);
  assert.equal(restored[1]!.secret.toString(), "set at run time");
  assert.notEqual(restored[1], reread[1]);
  // Secrets set at run time, restored or set, hold memory of their own size, not a shared 8 KiB chunk.
  assert.equal(restored[1]!.secret.buffer.byteLength, "set at run time".length);
  assert.equal(reg.entry("b")!.settings.secret.buffer.byteLength, "set at run time".length);
  // Set back to clients.conf's value (a new Buffer with the same bytes): the sealed secret goes at the next save.
  reg.update("b", { secret: Buffer.from("b's") });
  serialiser.changed("b");
  const second = JSON.parse(text()) as StateFile;
  assert.equal(second.clients.b!.secret, undefined);
  assert.deepEqual(second, JSON.parse(JSON.stringify(buildState(config, reg.snapshot(), clock.now()))));
});

test("a file that stored clients.conf's own secret sealed (earlier versions did) restores to clients.conf's Buffer", () => {
  const clock = new ManualClock();
  const config = [clientSettings("a", { secret: Buffer.from("from clients.conf") })];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  const state = buildState(config, reg.snapshot(), clock.now());
  state.clients.a!.secret = sealSecret(Buffer.from("from clients.conf"), config[0]!.secret);
  const restored = restoreState(config, roundTrip(state), clock.now(), silentLogger).settings;
  assert.equal(restored[0]!.secret, config[0]!.secret);
});

test("removed clients are dropped and new ones start fresh", () => {
  const clock = new ManualClock();
  const config = [clientSettings("gone"), clientSettings("stays")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  const state = roundTrip(buildState(config, reg.snapshot(), clock.now()));
  const restored = restoreState([clientSettings("stays"), clientSettings("new")], state, clock.now(), silentLogger);
  assert.deepEqual(restored.settings.map((c) => c.name), ["stays", "new"]);
  assert.ok(restored.runtimes.has("stays"));
  assert.ok(!restored.runtimes.has("new"));
});

test("a client removed at run time stays removed while clients.conf keeps its section, as the reference restores it", () => {
  const clock = new ManualClock();
  const config = [clientSettings("kept"), clientSettings("removed")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  reg.remove("removed");
  const state = roundTrip(buildState(config, reg.snapshot(), clock.now()));
  assert.deepEqual(state.removed, ["removed"]);
  assert.deepEqual(restoreState(config, state, clock.now(), silentLogger).settings.map((c) => c.name), ["kept"]);
  // Saved again from that restore: still removed.
  const again = restoreState(config, state, clock.now(), silentLogger);
  const reg2 = new ClientRegistry(again.settings, { logger: silentLogger, clock, spawner: never }, again.runtimes);
  const state2 = roundTrip(buildState(config, reg2.snapshot(), clock.now()));
  assert.deepEqual(state2.removed, ["removed"]);
  // Its section taken out of clients.conf for one start, then put back: a new client.
  const without = [clientSettings("kept")];
  const state3 = roundTrip(buildState(without, reg2.snapshot(), clock.now()));
  assert.equal(state3.removed, undefined);
  assert.deepEqual(restoreState(config, state3, clock.now(), silentLogger).settings.map((c) => c.name), ["kept", "removed"]);
});

test("a disabled client is restored without LastEnabled or Expires, as the reference's Client() does", () => {
  const clock = new ManualClock();
  const config = [clientSettings("off")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  reg.disable("off");
  const state = roundTrip(buildState(config, reg.snapshot(), clock.now()));
  assert.notEqual(state.clients.off!.runtime.last_enabled, null, "the save keeps it, as the reference's pickle does");
  const runtime = restoreState(config, state, clock.now(), silentLogger).runtimes.get("off");
  assert.equal(runtime?.enabled, false);
  assert.equal(runtime?.lastEnabled, null);
  assert.equal(runtime?.expires, null);
});

test("a client enabled by an edit of clients.conf is restored enabled now, with a fresh expiry", () => {
  const clock = new ManualClock();
  const off = [{ ...clientSettings("edited"), enabled: false }];
  const reg = new ClientRegistry(off, { logger: silentLogger, clock, spawner: never });
  const state = roundTrip(buildState(off, reg.snapshot(), clock.now()));
  assert.equal(state.clients.edited!.runtime.enabled, false);
  clock.advance(60_000);
  const on = [clientSettings("edited")];
  const restored = restoreState(on, state, clock.now(), silentLogger);
  const runtime = restored.runtimes.get("edited");
  assert.equal(restored.settings[0]?.enabled, true);
  assert.equal(runtime?.lastEnabled, clock.now());
  assert.equal(runtime?.expires, clock.now() + on[0]!.timeout);
});

test("an expired client stays enabled only if its last checker succeeded", () => {
  const clock = new ManualClock();
  const config = [clientSettings("ok"), clientSettings("never"), clientSettings("failed")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  reg.checkedOk("ok");
  reg.checkedOk("failed");
  const state = roundTrip(buildState(config, reg.snapshot(), clock.now()));
  state.clients.failed!.runtime.last_checker_status = 1;
  const later = clock.now() + 3_600_000;
  const restored = restoreState(config, state, later, silentLogger);
  assert.equal(restored.runtimes.get("ok")?.enabled, true);
  assert.equal(restored.runtimes.get("ok")?.expires, later + 5_000);
  assert.equal(restored.runtimes.get("never")?.enabled, false);
  assert.equal(restored.runtimes.get("failed")?.enabled, false);
});

test("a missing or empty state file is a warning and a start from clients.conf, as the reference's missing or empty pickle", () => {
  const lines: string[] = [];
  const logger = { ...silentLogger, warning: (m: string) => void lines.push(m) };
  assert.equal(readState(join(dir, "absent.json"), logger), null);
  const empty = join(dir, "empty.json");
  writeFileSync(empty, "", { mode: 0o600 });
  assert.equal(readState(empty, logger), null);
  assert.deepEqual(lines, [
    "Could not load persistent state: No such file or directory",
    `Could not load persistent state from ${empty}: the file is empty; starting from clients.conf`,
  ]);
  const restored = restoreState([clientSettings("a")], null, Date.now(), silentLogger);
  assert.equal(restored.settings[0]!.name, "a");
});

// The reference stops on a pickle it cannot read; a start from clients.conf
// would bring back clients disabled or removed at run time, and the first
// save (a second later) would replace the file for good.
test("a truncated or foreign state file stops the start, naming the path and what to do, and is left as it was", () => {
  const lines: string[] = [];
  const logger = { ...silentLogger, warning: (m: string) => void lines.push(m) };
  const cases: Array<[string, string, string]> = [
    ["truncated.json", '{"format":"mandos-ts-state","version":1,"clients":{"a":{', "not valid JSON"],
    ["list.json", "[1,2,3]", "not valid JSON"],
    ["foreign.json", '{"format":"other","version":1,"clients":{}}', "not a mandos-ts state file of version 1"],
    ["string-version.json", '{"format":"mandos-ts-state","version":"2","clients":{}}', "not a mandos-ts state file of version 1"],
    ["null-clients.json", '{"format":"mandos-ts-state","version":1,"clients":null}', '"clients" is missing or not an object'],
    ["removed.json", '{"format":"mandos-ts-state","version":1,"clients":{},"removed":"a"}', '"removed" is not a list of names'],
  ];
  for (const [name, text, reason] of cases) {
    const path = join(dir, name);
    writeFileSync(path, text, { mode: 0o600 });
    assert.throws(() => readState(path, logger), {
      message: `Could not load persistent state from ${path}: ${reason}; ${NOT_STARTED} (the file is then replaced)`,
    }, name);
    assert.equal(readFileSync(path, "utf8"), text);
  }
  assert.deepEqual(lines, []);
  assert.match(NOT_STARTED, /--no-restore/);
});

// Found by an audit: each of these once let the server start, listen, and
// die a moment later (RangeError: Invalid time value) at every start.
test("a client's value of the wrong type or range stops the start, naming the client and the value, never quoting it", () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const config = [clientSettings("a")];
  const good = buildState(config, new ClientRegistry(config, { logger: silentLogger, clock, spawner: never }).snapshot(), clock.now());
  const path = join(dir, "bad-entry.json");
  const withEntry = (edit: (entry: Record<string, Record<string, unknown>>) => void): string => {
    const state = JSON.parse(JSON.stringify(good)) as { clients: Record<string, Record<string, Record<string, unknown>>> };
    edit(state.clients.a!);
    return JSON.stringify(state);
  };
  const cases: Array<[string, (e: Record<string, Record<string, unknown>>) => void]> = [
    ["runtime.created is missing or not a valid value", (e) => void delete e.runtime!.created],
    ["runtime.created is missing or not a valid value", (e) => void (e.runtime!.created = "yesterday")],
    ["runtime.last_checked_ok is missing or not a valid value", (e) => void (e.runtime!.last_checked_ok = "+275000-01-01T00:00:00.000Z")],
    ["runtime.enabled is missing or not a valid value", (e) => void (e.runtime!.enabled = "yes")],
    ["runtime.last_checker_status is missing or not a valid value", (e) => void (e.runtime!.last_checker_status = 1e9)],
    ['"runtime" is missing or not an object', (e) => void (e.runtime = [] as unknown as Record<string, unknown>)],
    ["current.enabled is missing or not a valid value", (e) => void (e.current!.enabled = "no")],
    ["config.enabled is missing or not a valid value", (e) => void (e.config!.enabled = 0)],
    ["secret is not a string", (e) => void (e.secret = 12 as unknown as Record<string, unknown>)],
  ];
  for (const [reason, edit] of cases) {
    writeFileSync(path, withEntry(edit), { mode: 0o600 });
    assert.throws(() => readState(path, silentLogger), {
      message: `Could not load persistent state from ${path}: client "a": ${reason}; ${NOT_STARTED} (the file is then replaced)`,
    }, reason);
  }
  // A setting the server cannot hold (a release before 2026-12 took
  // durations up to 2^53 ms over D-Bus, negative ones from clients.conf):
  // clients.conf's, with a warning naming client and setting, not a refusal.
  const warnings: string[] = [];
  const warned = { ...silentLogger, warning: (m: string) => void warnings.push(m) };
  for (const [field, edit] of [
    ["timeout", (e: Record<string, Record<string, unknown>>) => void (e.current!.timeout = 4e15)],
    ["timeout", (e: Record<string, Record<string, unknown>>) => void (e.current!.timeout = "PT5M")],
    ["timeout", (e: Record<string, Record<string, unknown>>) => void delete e.current!.timeout],
    ["interval", (e: Record<string, Record<string, unknown>>) => void (e.config!.interval = -1)],
    ["checker", (e: Record<string, Record<string, unknown>>) => void (e.current!.checker = 7)],
    // D-Bus cannot carry it (clients.conf refuses it; an older release's file may hold one).
    ["host", (e: Record<string, Record<string, unknown>>) => void (e.current!.host = "de\0mo")],
  ] as const) {
    warnings.length = 0;
    writeFileSync(path, withEntry(edit), { mode: 0o600 });
    const state = readState(path, warned);
    assert.deepEqual(warnings, [`Client "a" in ${path}: ${field} out of range or of the wrong type; taken from clients.conf`]);
    const restored = restoreState(config, state, clock.now(), silentLogger).settings[0]!;
    assert.equal(restored[field], config[0]![field], field);
  }
  // Files of earlier versions lack the newer runtime values: read as their defaults.
  writeFileSync(path, withEntry((e) => {
    delete e.runtime!.last_checker_signal;
    delete e.runtime!.last_approval_request;
    delete e.config!.fingerprint;
    delete e.current!.fingerprint;
  }), { mode: 0o600 });
  assert.notEqual(readState(path, silentLogger), null);
  writeFileSync(path, JSON.stringify(good), { mode: 0o600 });
  assert.notEqual(readState(path, silentLogger), null);
});

test("a state file of a later version is not read as none: readState throws, saying what to do, and leaves it as it was", () => {
  const lines: string[] = [];
  const logger = { ...silentLogger, warning: (m: string) => void lines.push(m) };
  const later = join(dir, "later.json");
  const text = '{"format":"mandos-ts-state","version":2,"saved":"2027-01-01T00:00:00.000Z","clients":{}}';
  writeFileSync(later, text, { mode: 0o600 });
  assert.throws(() => readState(later, logger), {
    message: `${later} is of a later mandos-ts (state version 2; this one reads version 1): run that version, or start with --no-restore to begin from clients.conf (the file is then replaced)`,
  });
  assert.deepEqual(lines, []);
  assert.equal(readFileSync(later, "utf8"), text);
  writeFileSync(later, text.replace('"version":2', '"version":1'), { mode: 0o600 });
  assert.notEqual(readState(later, logger), null);
});

test("the state file is written with mode 0600", () => {
  const path = join(dir, "mode.json");
  writeAtomically(path, "{}");
  assert.equal(statSync(path).mode & 0o777, 0o600);
});

test("kill -9 in the middle of a stream of saves leaves a readable state file", async () => {
  const path = join(dir, "killed.json");
  writeAtomically(path, JSON.stringify({ format: "mandos-ts-state", version: 1, saved: "", clients: {} }));
  const writer = `
    import { writeAtomically } from ${JSON.stringify(join(REPO, "dist/src/main/state/state-file.js"))};
    const big = "x".repeat(200000);
    for (let i = 0; ; i++) writeAtomically(${JSON.stringify(path)}, JSON.stringify({ format: "mandos-ts-state", version: 1, saved: String(i), clients: {}, pad: big }));
  `;
  for (let round = 0; round < 5; round++) {
    const child = spawn(process.execPath, ["--input-type=module", "-e", writer], { stdio: "ignore" });
    await new Promise((r) => setTimeout(r, 150 + round * 37));
    child.kill("SIGKILL");
    await new Promise((r) => child.on("exit", r));
    const state = readState(path, silentLogger);
    assert.ok(state, `round ${round}: unreadable after kill -9`);
    JSON.parse(readFileSync(path, "utf8"));
  }
});

test("the incremental serialiser writes exactly what buildState gives, after every kind of change", () => {
  const clock = new ManualClock();
  let config = [clientSettings("a"), clientSettings("b"), clientSettings("c", { enabled: false })];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  const serialiser = new StateSerialiser();
  const path = join(dir, "incremental.json");
  const check = (what: string): void => {
    writeAtomically(path, serialiser.pieces(config, reg.entries(), clock.now()));
    const expected = JSON.stringify(buildState(config, reg.snapshot(), clock.now())) + "\n";
    assert.equal(readFileSync(path, "utf8"), expected, what);
  };
  check("first save");
  check("nothing changed");
  reg.update("a", { host: "moved.example.org" });
  check("a setting");
  reg.update("b", { secret: Buffer.from("another secret") });
  check("a secret");
  clock.advance(5_000);
  reg.checkedOk("a");
  check("runtime: last checked, expiry");
  reg.enable("c");
  check("enabled");
  config = [clientSettings("a", { timeout: 1_234 }), clientSettings("b"), clientSettings("c", { enabled: false })];
  check("clients.conf reloaded");
  reg.remove("b");
  check("a client removed");
});

test("a change of any runtime field, announced or not, is in the next save", () => {
  // The serialiser compares each runtime field by name (sameRuntime); a
  // field added to ClientRuntime and not compared there fails this.
  const config = [clientSettings("a")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock: new ManualClock(), spawner: never });
  const serialiser = new StateSerialiser();
  const text = (): string => Buffer.concat(serialiser.pieces(config, reg.entries(), 0)).toString("utf8");
  text();
  const record = reg.entry("a") as ClientRecord;
  const fields = Object.keys(record.runtime) as Array<keyof ClientRuntime>;
  assert.ok(fields.length >= 8, fields.join());
  for (const field of fields) {
    const value: unknown = record.runtime[field];
    // Changed as the registry changes it, without an event: a new object.
    record.setRuntime({ [field]: typeof value === "boolean" ? !value : typeof value === "number" ? value + 1_000 : 1_764_000_000_000 });
    assert.equal(text(), JSON.stringify(buildState(config, reg.snapshot(), 0)) + "\n", `${field} changed unseen`);
  }
});

test("a record's settings and runtime are frozen, replaced on each change, and clients.conf's object is shared until a setting changes", () => {
  // The serialiser keeps them by reference and takes the same object for
  // the same values: that holds only if nothing changes one in place.
  const config = [clientSettings("a"), clientSettings("b")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock: new ManualClock(), spawner: never });
  const a = reg.entry("a")!;
  assert.equal(a.settings, config[0], "a record starts with clients.conf's own object");
  assert.ok(Object.isFrozen(a.settings) && Object.isFrozen(a.runtime));
  assert.throws(() => {
    (a.runtime as { expires: number | null }).expires = 1;
  }, TypeError);
  const runtime = a.runtime;
  reg.secretDelivered("a");
  assert.notEqual(a.runtime, runtime, "a change replaces the runtime");
  assert.ok(Object.isFrozen(a.runtime));
  reg.update("a", { host: "elsewhere", secret: Buffer.from("new") });
  assert.notEqual(a.settings, config[0]);
  assert.ok(Object.isFrozen(a.settings));
  assert.equal(a.settings.host, "elsewhere");
  assert.equal(config[0]!.host, clientSettings("a").host, "clients.conf's object is not changed");
  assert.notDeepEqual(config[0]!.secret, Buffer.from("new"));
  assert.equal(reg.entry("b")!.settings, config[1]);
});

/**
 * A registry and a serialiser wired as main.ts wires them: registry events
 * mark clients changed, and saves may look them up by name. `walks` counts
 * the saves that looked at every client.
 */
function markedSaves(config: () => readonly ReturnType<typeof clientSettings>[], reg: ClientRegistry, elapsed?: () => number) {
  const serialiser = new StateSerialiser(elapsed);
  reg.subscribe((event) => {
    if (event.type === "client-not-found" || event.type === "need-approval" || event.type === "checker-started" || event.type === "approval-wait-ended") return;
    serialiser.changed(event.type === "client-added" || event.type === "client-removed" ? null : event.client.name);
  });
  const counter = { walks: 0 };
  const every = { [Symbol.iterator]: () => (counter.walks++, reg.entries()) };
  const save = (now: number): Buffer[] => serialiser.pieces(config(), every, now, [], (name) => reg.entry(name));
  const text = (now: number): string => Buffer.concat(save(now)).toString("utf8");
  const expected = (now: number): string => JSON.stringify(buildState(config(), reg.snapshot(), now)) + "\n";
  return { counter, save, text, expected };
}

test("a save looks only at the clients marked changed, and writes exactly what a look at every client gives", () => {
  const clock = new ManualClock();
  let config = Array.from({ length: 40 }, (_, i) => clientSettings(`m${i}`, { enabled: i !== 7 }));
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  const { counter, text, expected } = markedSaves(() => config, reg);
  const check = (what: string, walks: number): void => {
    assert.equal(text(clock.now()), expected(clock.now()), what);
    assert.equal(counter.walks, walks, `${what}: looks at every client`);
  };
  check("first save", 1);
  clock.advance(1_000);
  check("nothing changed", 1);
  for (let i = 0; i < 40; i += 3) reg.secretDelivered(`m${i}`);
  check("secrets sent", 1);
  clock.advance(1_000);
  reg.checkedOk("m1");
  reg.update("m2", { host: "moved.example.org" });
  reg.update("m3", { secret: Buffer.from("another secret") });
  reg.enable("m7");
  reg.disable("m39");
  reg.disable("m0");
  check("settings, a secret, enabled and disabled, first and last", 1);
  reg.remove("m5");
  check("a client removed: a look at every client", 2);
  config = config.map((c) => (c.name === "m9" ? clientSettings("m9", { timeout: 1_234 }) : c));
  check("clients.conf reloaded: a look at every client", 3);
  reg.secretDelivered("m9");
  check("after the reload, marked again", 3);
});

test("a change nobody announced is saved by the next look at every client, at most AUDIT_MS later", () => {
  const clock = new ManualClock();
  const config = [clientSettings("a"), clientSettings("b")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  const { counter, text, expected } = markedSaves(() => config, reg, () => clock.elapsed());
  text(clock.now());
  const start = clock.now();
  (reg.entry("b") as ClientRecord).setRuntime({ lastCheckerStatus: 77 });
  // A step of the wall clock back puts nothing off (the look runs on the monotonic clock).
  clock.stepWall(-3_600_000);
  clock.advance(AUDIT_MS - 1);
  assert.doesNotMatch(text(clock.now()), /"last_checker_status":77/);
  assert.equal(counter.walks, 1);
  clock.advance(1);
  assert.equal(clock.now() - start, AUDIT_MS - 3_600_000);
  assert.equal(text(clock.now()), expected(clock.now()));
  assert.match(text(clock.now()), /"last_checker_status":77/);
  assert.equal(counter.walks, 2);
});

test("a list already handed out is not changed by the next save", () => {
  const clock = new ManualClock();
  const config = [clientSettings("a"), clientSettings("b")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  const { save } = markedSaves(() => config, reg);
  const first = save(clock.now());
  const before = Buffer.concat(first).toString("utf8");
  clock.advance(1_000);
  reg.secretDelivered("a");
  reg.update("b", { secret: Buffer.from("new") });
  const second = Buffer.concat(save(clock.now())).toString("utf8");
  assert.notEqual(second, before);
  assert.equal(Buffer.concat(first).toString("utf8"), before);
});

test("warm does the first save's work a slice at a time, and the save then writes exactly what buildState gives", () => {
  const config = Array.from({ length: 5 }, (_, i) => clientSettings(`w${i}`));
  const reg = new ClientRegistry(config, { logger: silentLogger, clock: new ManualClock(), spawner: never });
  const serialiser = new StateSerialiser();
  const clients = reg.entries();
  // A slice of 0 ms does one client.
  let slices = 1;
  while (!serialiser.warm(config, clients, 0)) slices++;
  assert.equal(slices, config.length + 1);
  assert.equal(Buffer.concat(serialiser.pieces(config, reg.entries(), 0)).toString("utf8"), JSON.stringify(buildState(config, reg.snapshot(), 0)) + "\n");
});

test("a fleet's unsent changes are saved after the clients, read back, and left out when there are none", () => {
  const config = [clientSettings("a")];
  const reg = new ClientRegistry(config, { logger: silentLogger, clock: new ManualClock(), spawner: never });
  const path = join(dir, "unsent.json");
  const unsent = [{ key: "clients/a/Host", value: "moved.example.org", at: 1_764_500_000_000, by: "server-1" }];
  writeAtomically(path, new StateSerialiser().pieces(config, reg.entries(), 0, unsent));
  const read = readState(path, silentLogger);
  assert.deepEqual(read?.fleetUnsent, unsent);
  assert.equal(Object.keys(read?.clients ?? {}).join(), "a");
  writeAtomically(path, new StateSerialiser().pieces(config, reg.entries(), 0, []));
  assert.doesNotMatch(readFileSync(path, "utf8"), /fleetUnsent/);
});

test("more pieces than one writev(2) takes are all written, in order, in the background too", async () => {
  // 400 clients are 1,600 pieces; writev takes 1,024 at most.
  const config = Array.from({ length: 400 }, (_, i) => clientSettings(`m${i}`, { secret: Buffer.alloc(1200, i) }));
  const reg = new ClientRegistry(config, { logger: silentLogger, clock: new ManualClock(), spawner: never });
  const serialiser = new StateSerialiser();
  const pieces = serialiser.pieces(config, reg.entries(), 0);
  assert.ok(pieces.length > 1024, `${pieces.length} piece(s)`);
  const expected = JSON.stringify(buildState(config, reg.snapshot(), 0)) + "\n";
  const path = join(dir, "many.json");
  writeAtomically(path, pieces);
  assert.equal(readFileSync(path, "utf8"), expected);
  rmSync(path);
  assert.equal(await writeAtomicallyInBackground(path, serialiser.pieces(config, reg.entries(), 0), () => true), true);
  assert.equal(readFileSync(path, "utf8"), expected);
});

test("a background save that a later one overtook is not renamed, and leaves no temporary file", async () => {
  const own = mkdtempSync(join(dir, "overtaken-"));
  const path = join(own, "clients.json");
  writeAtomically(path, "newer\n");
  assert.equal(await writeAtomicallyInBackground(path, [Buffer.from("older\n")], () => false), false);
  assert.equal(readFileSync(path, "utf8"), "newer\n");
  assert.deepEqual(readdirSync(own), ["clients.json"]);
});
