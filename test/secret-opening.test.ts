// The secrets the Python server sealed in clients.pickle, opened while the
// server serves (src/main/state/secret-opening.ts, clients/secret-to-open.ts):
// the real registry holds placeholders for secrets real gpg sealed as the
// reference's PGPEngine.encrypt does; a connection's request waits for its
// client's secret alone, which goes ahead of the others; a secret set, a
// reload, a removal or a disabling meanwhile win over the opening; the
// state file carries the unopened ones and a restart takes them up again;
// while the server is busy it opens only those a connection waits for.
// With real peers (mandos-client, systemd's socket) in migrate-pickle.test.ts.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { threadId } from "node:worker_threads";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import type { RegistryEvent, SecretDecision } from "../src/main/clients/contract.js";
import type { ClientSettings } from "../src/main/clients/settings.js";
import { placeholderFor, secretToOpen } from "../src/main/clients/secret-to-open.js";
import { applyReload } from "../src/main/clients/reload.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger, type Logger } from "../src/main/daemon/log.js";
import { passwordEncode } from "../src/main/state/reference-secret.js";
import { BUSY_RECHECK_MS, handshakesUnderWay, MAX_PAUSE_MS, PAUSE_TOLD_MS, SecretOpening } from "../src/main/state/secret-opening.js";
import { buildState, restoreState, StateSerialiser } from "../src/main/state/state-file.js";
import { clientSettings } from "./helpers/clients.js";
import { GPG, missing } from "./helpers/peers.js";
import { eventually } from "./helpers/wait.js";

const never: CheckerSpawner = () => ({ kill() {} });

/** Clients each with a secret gpg sealed under its clients.conf secret; `wrong` sealed under another (it will not open). */
interface Sealed {
  readonly conf: ClientSettings[];
  /** What each client's sealed secret holds (null: it does not open, clients.conf's wins). */
  readonly plain: Map<string, string | null>;
  /** The state a migration starts from: each client holding its placeholder. */
  readonly settings: () => ClientSettings[];
}

let home = "";
let sealed: Sealed;
const COUNT = 12;

function seal(plain: string, configSecret: Buffer, i: number): Buffer {
  const passphrase = join(home, `pass${i}`);
  writeFileSync(passphrase, passwordEncode(configSecret));
  return execFileSync(GPG, ["--homedir", home, "--batch", "--quiet", "--symmetric", "--passphrase-file", passphrase, "--output", "-"], { input: plain });
}

function logged(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log = (m: string): void => void lines.push(m);
  return { lines, debug: log, info: log, warning: (m) => log(`warning: ${m}`), error: log, critical: log };
}

/** Asks for `name`'s secret as a connection does. */
function ask(registry: ClientRegistry, name: string, signal = new AbortController().signal): Promise<SecretDecision> {
  return registry.requestSecret(name, registry.get(name)!.keyId, "::1", signal);
}

const text = (d: SecretDecision): string => (d.give ? d.secret.toString() : `refused: ${d.reason}`);

/** The names in the registry's secret-opened events, as they come. */
function openedNames(registry: ClientRegistry): string[] {
  const names: string[] = [];
  registry.subscribe((e: RegistryEvent) => void (e.type === "secret-opened" && names.push(e.client.name)));
  return names;
}

describe("the pickle's sealed secrets, opened while serving", { skip: missing(GPG) }, () => {
  before(() => {
    home = mkdtempSync(join(tmpdir(), "mandos-ts-gpg-"));
    const conf: ClientSettings[] = [];
    const plain = new Map<string, string | null>();
    const seals = new Map<string, Buffer>();
    for (let i = 0; i < COUNT; i++) {
      const name = `c${String(i).padStart(2, "0")}`;
      const c = clientSettings(name, { secret: randomBytes(48) });
      conf.push(c);
      // c03's was sealed under a clients.conf secret since changed: it does not open.
      plain.set(name, i === 3 ? null : `pickled secret of ${name}`);
      seals.set(name, seal(`pickled secret of ${name}`, i === 3 ? randomBytes(48) : c.secret, i));
    }
    sealed = {
      conf,
      plain,
      settings: () => conf.map((c) => ({ ...c, secret: placeholderFor({ sealed: seals.get(c.name)!, configSecret: c.secret }) })),
    };
  });
  after(() => {
    try { execFileSync("gpgconf", ["--homedir", home, "--kill", "all"], { stdio: "ignore" }); } catch { /* no agent */ }
    rmSync(home, { recursive: true, force: true });
  });

  test("a connection waits for its client's secret alone, opened ahead of the others; every one opens, or falls back to clients.conf's", async () => {
    const registry = new ClientRegistry(sealed.settings(), { logger: silentLogger, clock: new ManualClock(), spawner: never });
    const order: string[] = [];
    registry.subscribe((e: RegistryEvent) => void (e.type === "secret-opened" && order.push(`${e.client.name}${e.opened ? "" : " (not opened)"}`)));
    const log = logged();
    const heard: string[] = [];
    const opening = new SecretOpening(registry.secretsToOpen(), {
      holder: registry, logger: log, threads: 1,
      watch: { begin: (n, t) => void heard.push(`${n} on ${t}`), opened: (d, n) => void heard.push(`${d}/${n}`) },
    });
    registry.onSecretWanted((name) => opening.hurry(name));
    assert.equal(registry.counts().secretSealed, COUNT, "the metrics' count of secrets still sealed");
    opening.start();
    const last = `c${COUNT - 1}`;
    const decision = await ask(registry, last);
    assert.equal(text(decision), `pickled secret of ${last}`);
    // One thread: at most the one it had begun went before.
    assert.ok(order.indexOf(last) <= 1, `opened in this order: ${order.join(", ")}`);
    assert.ok(log.lines.includes(`Opened ${last}'s sealed secret ahead of the others: a connection waits for it`), log.lines.join("\n"));
    assert.equal(await opening.done, true);
    assert.equal(order.length, COUNT);
    assert.ok(order.includes("c03 (not opened)"));
    assert.ok(log.lines.includes("Failed to decrypt c03 old secret"));
    assert.deepEqual(heard[0], `${COUNT} on 1`);
    assert.deepEqual(heard.slice(1), Array.from({ length: COUNT }, (_, i) => `${i + 1}/${COUNT}`));
    for (const c of sealed.conf) {
      const secret = registry.entry(c.name)!.settings.secret;
      assert.equal(secretToOpen(secret), undefined, `${c.name} holds no placeholder any more`);
      assert.equal(secret.toString(), sealed.plain.get(c.name) ?? c.secret.toString(), c.name);
      assert.equal(text(await ask(registry, c.name)), sealed.plain.get(c.name) ?? c.secret.toString(), c.name);
    }
    assert.deepEqual(registry.secretsToOpen(), []);
    assert.equal(registry.counts().secretSealed, 0);
    registry.stop();
    // Nothing to open: done at once, and nothing told (systemd's status would stay).
    const none: string[] = [];
    const idle = new SecretOpening([], { holder: registry, logger: log, watch: { begin: () => void none.push("begin") } });
    idle.start();
    assert.equal(await idle.done, true);
    assert.deepEqual(none, []);
  });

  test("a secret set, a new clients.conf secret, a disabling or a removal while a connection waits win over the opening", async () => {
    const registry = new ClientRegistry(sealed.settings(), { logger: silentLogger, clock: new ManualClock(), spawner: never });
    const config = sealed.conf;
    // Asked for before any opening runs: they wait.
    const setOne = ask(registry, "c00");
    const reloaded = ask(registry, "c01");
    const disabled = ask(registry, "c02");
    const removed = ask(registry, "c04");
    const aborted = new AbortController();
    const gone = ask(registry, "c05", aborted.signal);
    registry.update("c00", { secret: Buffer.from("set over D-Bus") });
    const newConf = config.map((c) => (c.name === "c01" ? { ...c, secret: Buffer.from("new clients.conf secret") } : c)).filter((c) => c.name !== "c04");
    applyReload(registry, config, newConf, silentLogger);
    registry.disable("c02");
    aborted.abort();
    assert.equal(text(await setOne), "set over D-Bus");
    assert.equal(text(await reloaded), "new clients.conf secret");
    assert.equal(text(await disabled), "refused: disabled");
    assert.equal(text(await removed), "refused: removed");
    assert.equal(text(await gone), "refused: aborted");
    // A reload that leaves a client's clients.conf secret alone leaves its placeholder.
    assert.ok(secretToOpen(registry.entry("c06")!.settings.secret));
    // The opening then skips what no longer waits, and never overwrites a newer secret.
    const opened = openedNames(registry);
    const opening = new SecretOpening(sealed.settings().map((s) => ({ name: s.name, placeholder: registry.entry(s.name)?.settings.secret ?? s.secret })), {
      holder: registry, logger: silentLogger, threads: 2,
    });
    opening.start();
    assert.equal(await opening.done, true);
    assert.deepEqual(opened.sort(), sealed.conf.map((c) => c.name).filter((n) => !["c00", "c01", "c04"].includes(n)));
    assert.equal(registry.entry("c00")!.settings.secret.toString(), "set over D-Bus");
    assert.equal(registry.entry("c01")!.settings.secret.toString(), "new clients.conf secret");
    assert.equal(registry.get("c04"), undefined);
    registry.stop();
  });

  test("the state file carries an unopened secret as the pickle sealed it; a restart takes it up; a stopped opening leaves the rest sealed", async () => {
    const config = sealed.conf;
    const registry = new ClientRegistry(sealed.settings(), { logger: silentLogger, clock: new ManualClock(), spawner: never });
    const opening = new SecretOpening(registry.secretsToOpen(), { holder: registry, logger: silentLogger, threads: 1 });
    let settled = 0;
    registry.subscribe((e) => {
      if (e.type === "secret-opened" && ++settled === 2) void opening.stop();
    });
    opening.start();
    assert.equal(await opening.done, false, "stopped before the end");
    await opening.stop();
    assert.equal(settled, 2, "nothing settles after the stop");
    const serialiser = new StateSerialiser();
    const bytes = Buffer.concat(serialiser.pieces(config, registry.entries(), 0)).toString();
    const built = buildState(config, registry.snapshot(), 0);
    assert.equal(bytes, `${JSON.stringify(built)}\n`, "the serialiser's bytes are buildState's");
    const file = JSON.parse(bytes) as typeof built;
    const pending = Object.entries(file.clients).filter(([, c]) => c.referenceSecret !== undefined).map(([n]) => n);
    assert.equal(pending.length, COUNT - 2);
    for (const name of pending) {
      assert.equal(file.clients[name]!.secret, undefined);
      assert.deepEqual(Buffer.from(file.clients[name]!.referenceSecret!, "base64"), secretToOpen(registry.entry(name)!.settings.secret)!.sealed);
    }
    // The two opened hold their pickled secret, sealed as any secret set at run time is.
    for (const [name, c] of Object.entries(file.clients).filter(([n]) => !pending.includes(n))) {
      assert.equal(c.referenceSecret, undefined);
      assert.equal(typeof c.secret, "string", name);
    }
    assert.doesNotMatch(bytes, /pickled secret/, "no secret in the clear");

    const restored = restoreState(config, file, 0, silentLogger);
    const again = new ClientRegistry(restored.settings, { logger: silentLogger, clock: new ManualClock(), spawner: never }, restored.runtimes);
    assert.deepEqual(again.secretsToOpen().map((t) => t.name), pending);
    const rest = new SecretOpening(again.secretsToOpen(), { holder: again, logger: silentLogger, threads: 2 });
    rest.start();
    assert.equal(await rest.done, true);
    for (const c of config) assert.equal(again.entry(c.name)!.settings.secret.toString(), sealed.plain.get(c.name) ?? c.secret.toString(), c.name);
    registry.stop();
    again.stop();
  });

  test("threads that cannot load: the rest are opened on the main thread, none lost", async () => {
    const registry = new ClientRegistry(sealed.settings().slice(0, 4), { logger: silentLogger, clock: new ManualClock(), spawner: never });
    const log = logged();
    const opening = new SecretOpening(registry.secretsToOpen(), {
      holder: registry, logger: log, threads: 2, entry: new URL("./helpers/unloadable-worker.cjs", import.meta.url),
    });
    opening.start();
    assert.equal(await opening.done, true);
    assert.ok(log.lines.some((l) => /^warning: The threads opening the sealed secrets failed .*opening the rest on the main thread/.test(l)), log.lines.join("\n"));
    for (const c of sealed.conf.slice(0, 4)) assert.equal(registry.entry(c.name)!.settings.secret.toString(), sealed.plain.get(c.name) ?? c.secret.toString(), c.name);
    assert.ok(threadId >= 0);
    registry.stop();
  });

  test("while the server is busy it starts none that no connection waits for: a connection's own still opens at once, one starts every MAX_PAUSE_MS, a lasting pause is told", { timeout: 60_000 }, async (t) => {
    const registry = new ClientRegistry(sealed.settings(), { logger: silentLogger, clock: new ManualClock(), spawner: never });
    const opened = openedNames(registry);
    let busy = true;
    let now = 0;
    const told: string[] = [];
    const opening = new SecretOpening(registry.secretsToOpen(), {
      holder: registry, logger: silentLogger, threads: 1, busy: () => busy, clock: () => now,
      watch: { paused: (paused, done, total, forMs) => void told.push(`${paused ? "paused" : "went on"} at ${done}/${total} after ${forMs}`) },
    });
    registry.onSecretWanted((name) => opening.hurry(name));
    // A failure must not leave a paused opening looking again for ever.
    t.after(() => opening.stop());
    opening.start();
    await sleep(3 * BUSY_RECHECK_MS);
    assert.deepEqual(opened, [], "none started while busy");
    assert.deepEqual(told, [], "a short pause is not told");
    now += PAUSE_TOLD_MS;
    await eventually(() => told.length === 1, { what: "a pause of a second is told" });
    assert.deepEqual(told, [`paused at 0/${COUNT} after ${PAUSE_TOLD_MS}`]);
    // A connection's own goes ahead, busy or not, and alone.
    assert.equal(text(await ask(registry, "c07")), "pickled secret of c07");
    await sleep(3 * BUSY_RECHECK_MS);
    assert.deepEqual(opened, ["c07"]);
    // However busy, one starts every MAX_PAUSE_MS; the pause goes on.
    now += MAX_PAUSE_MS;
    await eventually(() => opened.length === 2, { what: "one started after MAX_PAUSE_MS" });
    await sleep(3 * BUSY_RECHECK_MS);
    assert.deepEqual(opened, ["c07", "c00"]);
    assert.equal(told.length, 1, "still the same pause");
    busy = false;
    now += 500;
    assert.equal(await opening.done, true);
    assert.equal(opened.length, COUNT);
    assert.deepEqual(told.slice(1), [`went on at 2/${COUNT} after ${PAUSE_TOLD_MS + MAX_PAUSE_MS + 500}`]);
    for (const c of sealed.conf) assert.equal(registry.entry(c.name)!.settings.secret.toString(), sealed.plain.get(c.name) ?? c.secret.toString(), c.name);
    registry.stop();
  });

  test("opening on the main thread (threads that cannot load), it pauses as well, and a connection's own still goes ahead", { timeout: 60_000 }, async (t) => {
    const registry = new ClientRegistry(sealed.settings().slice(0, 4), { logger: silentLogger, clock: new ManualClock(), spawner: never });
    const opened = openedNames(registry);
    let busy = true;
    const opening = new SecretOpening(registry.secretsToOpen(), {
      holder: registry, logger: silentLogger, threads: 2, busy: () => busy, entry: new URL("./helpers/unloadable-worker.cjs", import.meta.url),
    });
    registry.onSecretWanted((name) => opening.hurry(name));
    t.after(() => opening.stop());
    opening.start();
    assert.equal(text(await ask(registry, "c02")), "pickled secret of c02");
    await sleep(3 * BUSY_RECHECK_MS);
    assert.deepEqual(opened, ["c02"]);
    busy = false;
    assert.equal(await opening.done, true);
    assert.deepEqual(opened.sort(), ["c00", "c01", "c02", "c03"]);
    registry.stop();
  });
});

test("the server is busy while handshakes hold a slot or wait for one, not while only slow peers' wait in the slow pool", () => {
  const counts = { holding: 0, slow: 0, waiting: 0, evictedSlow: 7, evictedWaiting: 3, evictedSilent: 2 };
  assert.equal(handshakesUnderWay(counts), false, "idle, whatever was evicted before");
  assert.equal(handshakesUnderWay({ ...counts, holding: 1 }), true);
  assert.equal(handshakesUnderWay({ ...counts, waiting: 1 }), true);
  assert.equal(handshakesUnderWay({ ...counts, slow: 40 }), false, "slow peers cost nothing while they wait");
});
