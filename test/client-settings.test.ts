// A client's settings (src/main/clients/): key IDs compared as the reference compares them,
// the runtime settings D-Bus can set, and what a SIGHUP's patch keeps and changes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLIENT_DEFAULTS, EMPTY_KEY_ID, normaliseKeyId } from "../src/main/clients/settings.js";
import { RUNTIME_SETTINGS, settingsDiff } from "../src/main/clients/runtime-settings.js";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { applyReload, reloadClientsConfig } from "../src/main/clients/reload.js";
import { clientProperty } from "../src/main/dbus/client-properties.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger, type Logger } from "../src/main/daemon/log.js";
import { clientSettings, keyIdOf } from "./helpers/clients.js";
import { openPgpShaped } from "./helpers/keys.js";
import { parseClientsConfig, clientKeyWarnings } from "../src/main/config/index.js";

const PGP = openPgpShaped(Buffer.from("ABC")).toString("base64");

test("key IDs compare case- and space-insensitively", () => {
  assert.equal(normaliseKeyId(" ab cd\tEF "), "ABCDEF");
});

test("the empty key ID is SHA-256 of nothing", () => {
  assert.equal(createHash("sha256").update(Buffer.alloc(0)).digest("hex").toUpperCase(), EMPTY_KEY_ID);
});

test("each runtime setting is a clients.conf option and a writable D-Bus client property", () => {
  for (const row of RUNTIME_SETTINGS) {
    // secfile is the other spelling of the secret; the reference has no default for either.
    if (row.field !== "secret") assert.ok(row.option in CLIENT_DEFAULTS, `${row.option} is a clients.conf option`);
    const property = clientProperty(row.property);
    assert.ok(property?.set, `${row.property} can be Set over D-Bus`);
    assert.equal(property.get === undefined, row.kind === "bytes", `${row.property} is readable unless it is the secret`);
  }
});

test("a SIGHUP's patch, applied by update(), leaves the client as clients.conf now says", () => {
  const before = clientSettings("web");
  const after = clientSettings("web", {
    host: "new.example.org", timeout: 9_000, extendedTimeout: 20_000, interval: 3_000, checker: "false",
    approvedByDefault: false, approvalDelay: 100, approvalDuration: 200, secret: Buffer.from("new secret"), enabled: false,
  });
  const patch = settingsDiff(before, after);
  assert.deepEqual(Object.keys(patch).sort(), RUNTIME_SETTINGS.map((r) => r.field).sort());
  assert.deepEqual(settingsDiff(before, clientSettings("web", { secret: Buffer.from(before.secret) })), {}, "a secret compares by content");
  const reg = new ClientRegistry([before], { logger: silentLogger, clock: new ManualClock(), spawner: () => ({ kill() {} }) });
  reg.update("web", patch);
  const { settings, runtime } = reg.snapshot()[0]!;
  // The registry keeps `enabled` in the runtime state, as the state file saves it.
  assert.deepEqual({ ...settings, enabled: runtime.enabled }, after);
});

test("after a reload a client whose settings are the new file's shares its object; one changed at run time keeps its own", () => {
  const clock = new ManualClock();
  const first = [clientSettings("same"), clientSettings("edited"), clientSettings("set-at-run-time")];
  const reg = new ClientRegistry(first, { logger: silentLogger, clock, spawner: () => ({ kill() {} }) });
  reg.update("set-at-run-time", { host: "changed.example.org" });
  // The file read again: new objects, with copies of the same secrets; one client edited.
  const again = [
    clientSettings("same", { secret: Buffer.from(first[0]!.secret) }),
    clientSettings("edited", { timeout: 9_000 }),
    clientSettings("set-at-run-time"),
  ];
  applyReload(reg, first, again, silentLogger);
  assert.equal(reg.entry("same")!.settings, again[0], "unchanged: the new file's object");
  assert.equal(reg.entry("edited")!.settings, again[1], "edited in the file: the new file's object, once applied");
  assert.equal(reg.entry("edited")!.settings.timeout, 9_000);
  assert.notEqual(reg.entry("set-at-run-time")!.settings, again[2], "changed at run time: its own");
  assert.equal(reg.entry("set-at-run-time")!.settings.host, "changed.example.org");
});

test("a reload keeps a client removed at run time removed while the file keeps its section; taken out and put back, it is added anew", () => {
  const reg = new ClientRegistry([clientSettings("kept"), clientSettings("removed")], { logger: silentLogger, clock: new ManualClock(), spawner: () => ({ kill() {} }) });
  reg.remove("removed");
  const file = [clientSettings("kept"), clientSettings("removed")];
  const same = applyReload(reg, file, [clientSettings("kept"), clientSettings("removed")], silentLogger);
  assert.deepEqual(same, { added: [], removed: [], changed: [] });
  assert.equal(reg.get("removed"), undefined, "re-armed by an unchanged clients.conf");
  const without = [clientSettings("kept")];
  applyReload(reg, file, without, silentLogger);
  assert.equal(reg.get("removed"), undefined);
  const back = applyReload(reg, without, [clientSettings("kept"), clientSettings("removed")], silentLogger);
  assert.deepEqual(back.added, ["removed"]);
  assert.ok(reg.get("removed"));
});

test("a duration Set beyond 100,000 years or what a number holds says so; a double is the wrong type", () => {
  const reg = new ClientRegistry([clientSettings("web")], { logger: silentLogger, clock: new ManualClock(), spawner: () => ({ kill() {} }) });
  const ctx = { registry: reg, name: "web", view: reg.get("web")!, objectPath: "/clients/web" };
  const set = clientProperty("ExtendedTimeout")!.set!;
  assert.throws(() => set(ctx, { signature: "t", value: 2n ** 60n }), /property ExtendedTimeout is too large \(at most 3155760000000000 ms, 100,000 years\)/);
  // 274,000 years: a number, but an expiry from it is no date (Expires read "0NaN-NaN-...").
  assert.throws(() => set(ctx, { signature: "t", value: 8_640_000_000_000_000 }), /property ExtendedTimeout is too large/);
  const timeout = clientProperty("Timeout")!.set!;
  assert.throws(() => timeout(ctx, { signature: "t", value: 8_640_000_000_000_000 }), /property Timeout is too large/);
  assert.equal(reg.get("web")!.timeout, clientSettings("web").timeout);
  assert.throws(() => set(ctx, { signature: "d", value: 2 }), /takes a value of type "t", not "d"/);
  set(ctx, { signature: "t", value: 5_000_000_000 });
  assert.equal(reg.get("web")!.extendedTimeout, 5_000_000_000);
});

test("a reload that gives two clients one key ID or fingerprint warns that only one of them can be served", async () => {
  const reg = new ClientRegistry([clientSettings("a")], { logger: silentLogger, clock: new ManualClock(), spawner: () => ({ kill() {} }) });
  const warnings: string[] = [];
  const logger: Logger = { ...silentLogger, warning: (m) => warnings.push(m) };
  // Secrets the server takes for OpenPGP messages: no warning of their own.
  const text = "[a]\nkey_id = ab cd\nfingerprint = 12\nsecret = QUJD\n[b]\nkey_id = ABCD\nsecret = QUJD\n[c]\nkey_id = ef\nfingerprint = 12\nsecret = QUJD\n".replaceAll("QUJD", PGP);
  const reader = { how: "direct" as const, read: () => Promise.resolve({ ok: true as const, bytes: Buffer.from(text) }), close() {} };
  const outcome = await reloadClientsConfig(reg, [clientSettings("a")], "/etc/mandos/clients.conf", reader, logger);
  assert.equal(outcome.applied, true);
  assert.deepEqual(warnings, [
    "Clients a, b have the same key ID ABCD: only one of them can be served",
    "Clients a, c have the same fingerprint 12: each is served by its own key ID, but a legacy (OpenPGP) client with that key only as a",
  ]);
  // Without a key ID of its own, a client is found by the fingerprint alone:
  // after the first, never; the others with key IDs by theirs (the
  // configuration fuzz's 24 cloned machines beside one without a key ID
  // were all told "only one of them can be served").
  const warn = (text: string): string[] => clientKeyWarnings(parseClientsConfig(text.replaceAll("QUJD", PGP), "c.conf"));
  assert.deepEqual(warn("[a]\nkey_id = ab\nfingerprint = 12\nsecret = QUJD\n[c]\nfingerprint = 12\nsecret = QUJD\n"),
    ["Clients a, c have the same fingerprint 12: a is served by its own key ID, c never; a legacy (OpenPGP) client with that key only as a"]);
  assert.deepEqual(warn("[a]\nkey_id = ab\nfingerprint = 12\nsecret = QUJD\n[b]\nkey_id = cd\nfingerprint = 12\nsecret = QUJD\n[c]\nfingerprint = 12\nsecret = QUJD\n"),
    ["Clients a, b, c have the same fingerprint 12: a, b are served by their own key IDs, c never; a legacy (OpenPGP) client with that key only as a"]);
  assert.deepEqual(warn("[c]\nfingerprint = 12\nsecret = QUJD\n[a]\nkey_id = ab\nfingerprint = 12\nsecret = QUJD\n"),
    ["Clients c, a have the same fingerprint 12: a is served by its own key ID; a legacy (OpenPGP) client with that key only as c"]);
  assert.deepEqual(warn("[c]\nfingerprint = 12\nsecret = QUJD\n[d]\nfingerprint = 12\nsecret = QUJD\n"),
    ["Clients c, d have the same fingerprint 12: only one of them can be served"]);
});

test("two clients with one key: the first in clients.conf answers for it, and the other once it is removed", () => {
  const shared = { keyId: "AB".repeat(32), fingerprint: "12".repeat(20) };
  const reg = new ClientRegistry(
    [{ ...clientSettings("first"), ...shared }, { ...clientSettings("second"), ...shared }],
    { logger: silentLogger, clock: new ManualClock(), spawner: () => ({ kill() {} }) },
  );
  assert.equal(reg.byKeyId(shared.keyId)?.name, "first");
  assert.equal(reg.byFingerprint(shared.fingerprint)?.name, "first");
  reg.remove("first");
  assert.equal(reg.byKeyId(shared.keyId)?.name, "second", "the reference's search finds the one left");
  assert.equal(reg.byFingerprint(shared.fingerprint)?.name, "second");
  reg.remove("second");
  assert.equal(reg.byKeyId(shared.keyId), undefined);
});

test("a reload that gives a client a new key keeps its state and run-time settings, as a restart does; its old key no longer gets its secret", async () => {
  const clock = new ManualClock();
  const first = [clientSettings("web", { approvalDelay: 60_000 }), clientSettings("other")];
  const reg = new ClientRegistry(first, { logger: silentLogger, clock, spawner: () => ({ kill() {} }) });
  reg.update("web", { host: "changed.example.org" });
  const created = reg.entry("web")!.runtime.created;
  clock.advance(5_000);
  // A connection of the old key waits for approval when the file changes.
  const waiting = reg.requestSecret("web", keyIdOf("web"), "::1", new AbortController().signal);
  const seen: string[] = [];
  reg.subscribe((e) => seen.push(e.type));
  const again = [clientSettings("web", { keyId: keyIdOf("fresh"), approvalDelay: 60_000, timeout: 9_000 }), clientSettings("other")];
  assert.deepEqual(applyReload(reg, first, again, silentLogger), { added: [], removed: [], changed: ["web"] });
  // Refused as "removed" (and logged so): no client has that name and key now.
  assert.deepEqual(await waiting, { give: false, reason: "removed" }, "the old key's wait ends");
  assert.equal(reg.byKeyId(keyIdOf("fresh"))?.name, "web");
  assert.equal(reg.byKeyId(keyIdOf("web")), undefined);
  // On D-Bus KeyID is const: the object goes and comes back.
  assert.deepEqual(seen.filter((t) => t.startsWith("client-")), ["client-removed", "client-added"]);
  const web = reg.entry("web")!;
  assert.equal(web.settings.host, "changed.example.org", "a setting changed at run time that the file did not change");
  assert.equal(web.settings.timeout, 9_000, "one the file changed");
  assert.equal(web.runtime.created, created);
  assert.equal(web.runtime.enabled, true);

  // Disabled at run time, it stays disabled through the next new key.
  reg.disable("web");
  const third = [clientSettings("web", { keyId: keyIdOf("newer"), approvalDelay: 60_000, timeout: 9_000 }), clientSettings("other")];
  applyReload(reg, again, third, silentLogger);
  assert.equal(reg.entry("web")!.runtime.enabled, false);
  assert.deepEqual(await reg.requestSecret("web", keyIdOf("newer"), "::1", new AbortController().signal), { give: false, reason: "disabled" });
  // A request that names the client but proves a key no longer its (a
  // serve thread's lookup made before the reload) gets nothing.
  reg.enable("web");
  reg.update("web", { approvalDelay: 0 });
  assert.deepEqual(await reg.requestSecret("web", keyIdOf("fresh"), "::1", new AbortController().signal), { give: false, reason: "removed" });
  assert.deepEqual(await reg.requestSecret("web", "", "::1", new AbortController().signal), { give: false, reason: "removed" });
  const given = await reg.requestSecret("web", keyIdOf("newer"), "::1", new AbortController().signal);
  assert.equal(given.give, true);
});

test("a legacy client's request proves its fingerprint", async () => {
  const fingerprint = "12".repeat(20);
  const reg = new ClientRegistry([clientSettings("old", { keyId: "", fingerprint })], { logger: silentLogger, clock: new ManualClock(), spawner: () => ({ kill() {} }) });
  assert.equal((await reg.requestSecret("old", fingerprint, "::1", new AbortController().signal)).give, true);
  assert.deepEqual(await reg.requestSecret("old", "34".repeat(20), "::1", new AbortController().signal), { give: false, reason: "removed" });
});

// Found by session 56's scale audit: every SIGHUP (logrotate's weekly one
// included) parsed the whole file on the main thread, 1 s for 5,000
// clients and 4 s for 20,000, holding every unlock meanwhile.
test("a reload of the text last applied is not parsed again, unless a secfile could have changed", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-reload-same-"));
  try {
    writeFileSync(join(dir, "s.bin"), "from a file");
    const inline = "[a]\nkey_id = ab\nsecret = QUJD\n[b]\nkey_id = cd\nsecret = QUJD\n";
    const withFile = `${inline}[c]\nkey_id = ef\nsecfile = ${join(dir, "s.bin")}\n`;
    const lines: string[] = [];
    const logger: Logger = { ...silentLogger, debug: (m) => lines.push(m) };
    const reloadOf = async (before: string, after: string) => {
      const running = parseClientsConfig(before, "c.conf");
      const reg = new ClientRegistry(running, { logger: silentLogger, clock: new ManualClock(), spawner: () => ({ kill() {} }) });
      const reader = { how: "direct" as const, read: () => Promise.resolve({ ok: true as const, bytes: Buffer.from(after) }), close() {} };
      lines.length = 0;
      const outcome = await reloadClientsConfig(reg, running, "c.conf", reader, logger);
      assert.equal(outcome.applied, true);
      return { running, outcome };
    };
    const same = await reloadOf(inline, inline);
    assert.ok(same.outcome.applied && same.outcome.clients === same.running, "parsed again");
    assert.deepEqual(lines, ["c.conf is as it was last read: not parsed again"]);
    const changed = await reloadOf(inline, inline.replace("QUJD\n[b]", "QUJE\n[b]"));
    assert.ok(changed.outcome.applied && changed.outcome.clients !== changed.running);
    assert.deepEqual(changed.outcome.summary.changed, ["a"]);
    const secfile = await reloadOf(withFile, withFile);
    assert.ok(secfile.outcome.applied && secfile.outcome.clients !== secfile.running, "a secfile's contents are not in the text");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
