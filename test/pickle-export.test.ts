// Going back to the Python server: as our server stops it leaves
// STATEDIR/clients.pickle as the reference's own stop leaves it, so that
// the real reference (/usr/sbin/mandos) started on the same directories
// restores the clients as ours left them: disabled, removed and changed
// with the real mandos-ctl, and a secret set at run time, which the real
// mandos-client then receives from the reference. Also: the pickles and
// sealed secrets made here, read by Python itself and by gpg itself.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dumpJson, makeFleetRoot, mandosCtl, startOurServer, startPrivateBus, startReference, DBUS_DAEMON } from "./helpers/dbus.js";
import { GPG, MANDOS_CLIENT, MANDOS_CTL, MANDOS_KEYGEN, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { runMandosClient } from "./helpers/server.js";
import { pickleChunks, PICKLE_CHUNK_BYTES, pyTuple, type PickleValue } from "../src/main/state/pickle-write.js";
import { placeholderFor, secretToOpen } from "../src/main/clients/secret-to-open.js";
import type { ClientRuntime } from "../src/main/clients/contract.js";
import { referencePickle, warmReferencePickle, type ReferencePickle } from "../src/main/state/pickle-export.js";
import { openReferenceSecret, passwordEncode } from "../src/main/state/reference-secret.js";
import { sealSymmetric } from "../src/main/state/symmetric-key.js";
import { PyDatetime, PyTimedelta, PyTuple, unpickle, type PyDict } from "../src/main/state/unpickle.js";
import type { ClientSettings } from "../src/main/clients/settings.js";

const skip = missing(DBUS_DAEMON, MANDOS_CTL, MANDOS_KEYGEN, MANDOS_REFERENCE, MANDOS_CLIENT) ||
  (process.getuid?.() === 0 ? false : "needs root: the reference server must drop to _mandos");

/** The base64 of a clients.conf section's `secret`, continuation lines joined. */
function secretOf(section: string): string {
  const m = /^secret\s*=\s*(.*(?:\n[ \t]+.*)*)/m.exec(section);
  assert.ok(m, `no secret in ${section}`);
  return m[1]!.replace(/\s+/g, "");
}

describe("going back to the Python server: it finds the clients as ours left them", { skip }, () => {
  test("the reference restores the pickle ours wrote as it stopped, and serves the secret set at run time", async () => {
    const { root, fleet } = makeFleetRoot("mandos-ts-back-");
    const bus = await startPrivateBus();
    try {
      const state = join(root, "state");
      mkdirSync(state);
      const [alpha, , , delta] = fleet.clients as [typeof fleet.clients[0], unknown, unknown, typeof fleet.clients[0]];
      // delta's clients.conf secret is alpha's (the fleet shares one
      // OpenPGP key, so delta's client opens it and prints alpha's
      // password); its own is set at run time, and only a secret carried
      // over in the pickle gives delta's client its own password.
      const confPath = join(fleet.conf, "clients.conf");
      const conf = readFileSync(confPath, "utf8");
      const deltaStart = conf.indexOf("[delta]");
      writeFileSync(confPath, conf.slice(0, deltaStart) + conf.slice(deltaStart).replace(/^secret\s*=.*(?:\n[ \t]+.*)*/m, `secret = ${secretOf(alpha.section)}`));
      const ownSecret = join(root, "delta-secret");
      writeFileSync(ownSecret, Buffer.from(secretOf(delta.section), "base64"));

      const ours = await startOurServer(fleet.conf, state, bus.address, true);
      let before: Record<string, Record<string, unknown>>;
      try {
        for (const change of [["--disable", "alpha"], ["--remove", "bravo"], ["--timeout", "PT7M", "delta"], ["--secret", ownSecret, "delta"], ["--approve-by-default", "charlie"]]) {
          const r = await mandosCtl(bus.address, ...change);
          assert.equal(r.code, 0, `mandos-ctl ${change.join(" ")}: ${r.stderr}`);
        }
        before = await dumpJson(bus.address);
      } finally {
        await ours.stop();
      }
      assert.doesNotMatch(ours.log(), /clients\.pickle/, "nothing said of the pickle");
      const pickled = readFileSync(join(state, "clients.pickle"));
      const recorded = (JSON.parse(readFileSync(join(state, "clients.json"), "utf8")) as { importedPickle?: string }).importedPickle;
      assert.equal(recorded, createHash("sha256").update(pickled).digest("hex"), "clients.json records the pickle ours wrote");
      assert.ok(statSync(join(state, "clients.pickle")).mtimeMs >= statSync(join(state, "clients.json")).mtimeMs);
      assert.equal(statSync(join(state, "clients.pickle")).mode & 0o077, 0, "the pickle is readable by its owner alone");

      // Ours again first: it does not import its own pickle.
      const again = await startOurServer(fleet.conf, state, bus.address, true);
      try {
        assert.equal((await dumpJson(bus.address)).alpha!.Enabled, false);
        assert.doesNotMatch(again.log(), /Imported the Python server's state|is newer than/);
      } finally {
        await again.stop();
      }

      const reference = await startReference(fleet.conf, state, bus.address, true);
      try {
        const after = await dumpJson(bus.address);
        assert.deepEqual(Object.keys(after).sort(), ["alpha", "charlie", "delta"], "bravo stays removed");
        assert.equal(after.alpha!.Enabled, false, "alpha stays disabled");
        assert.equal(after.delta!.Timeout, 420_000);
        assert.equal(after.charlie!.ApprovedByDefault, true);
        assert.equal(after.delta!.Created, before!.delta!.Created, "created carried over");
        const r = await runMandosClient(delta.dir, "::1", reference.port, 30_000);
        assert.equal(r.stdout.toString("utf8"), delta.password, `the secret set at run time, from the pickle; the reference's log:\n${reference.log().slice(-3000)}`);
        assert.doesNotMatch(reference.log(), /Failed to decrypt/);
      } finally {
        await reference.stop();
      }
    } finally {
      await bus.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("the pickles written here, read by Python", { skip: missing("/usr/bin/python3") }, () => {
  test("every kind of value comes back as Python wrote it, and as our unpickler reads it", () => {
    const when = Date.UTC(2026, 11, 6, 17, 1, 2, 345);
    const value = pyTuple([
      new Map<string, PickleValue>([
        ["none", null], ["yes", true], ["no", false], ["small", 7], ["byte", 255], ["word", 65535], ["int", -2], ["big", 2 ** 40], ["negbig", -(2 ** 40)],
        ["text", "h\u00e9 \u2603"], ["bytes", Buffer.from([0, 1, 0xff, 0x80, 10])], ["empty", Buffer.alloc(0)],
        ["list", ["a", 1, []]], ["when", new PyDatetime(when)], ["span", new PyTimedelta(90_061_001)], ["nested", new Map<string, PickleValue>([["k", pyTuple([1, 2, 3, 4])]])],
      ]),
      new Map(),
    ]);
    const data = Buffer.concat(pickleChunks(value).chunks);
    const shown = execFileSync("python3", ["-c", [
      "import json, pickle, sys",
      "a, b = pickle.loads(sys.stdin.buffer.read(), encoding='bytes')",
      "print(json.dumps({'a': {k: repr(v) for k, v in a.items()}, 'b': repr(b)}))",
    ].join("\n")], { input: data }).toString("utf8");
    assert.deepEqual(JSON.parse(shown), {
      a: {
        none: "None", yes: "True", no: "False", small: "7", byte: "255", word: "65535", int: "-2", big: "1099511627776", negbig: "-1099511627776",
        text: "'h\u00e9 \u2603'", bytes: "b'\\x00\\x01\\xff\\x80\\n'", empty: "b''", list: "['a', 1, []]",
        when: "datetime.datetime(2026, 12, 6, 17, 1, 2, 345000)", span: "datetime.timedelta(days=1, seconds=3661, microseconds=1000)", nested: "{'k': (1, 2, 3, 4)}",
      },
      b: "{}",
    });
    const back = unpickle(data) as PyTuple;
    const a = back.items[0] as PyDict;
    assert.equal((a.get("when") as PyDatetime).ms, when);
    assert.equal((a.get("span") as PyTimedelta).ms, 90_061_001);
    assert.deepEqual(a.get("bytes"), Buffer.from([0, 1, 0xff, 0x80, 10]));
    assert.equal(a.get("int"), -2);
  });
});

describe("secrets sealed here, opened by gpg as the reference's PGPEngine.decrypt opens them", { skip: missing(GPG) }, () => {
  for (const [what, size] of [["a short secret (a hex passphrase)", 48], ["a long secret (GnuPG's 2048-byte limit: the escaped passphrase)", 1500]] as const) {
    test(what, () => {
      const home = mkdtempSync(join(tmpdir(), "mandos-ts-seal-"));
      try {
        const secret = randomBytes(size);
        // A config secret with the bytes the long form escapes.
        const configSecret = Buffer.concat([randomBytes(size), Buffer.from("\\\n\0")]);
        const sealed = sealSymmetric(secret, passwordEncode(configSecret), 0x60);
        writeFileSync(join(home, "pass"), passwordEncode(configSecret));
        const opened = execFileSync(GPG, ["--homedir", home, "--batch", "--quiet", "--force-mdc", "--decrypt", "--passphrase-file", join(home, "pass")], { input: sealed, stdio: ["pipe", "pipe", "pipe"] });
        assert.deepEqual(opened, secret);
        // A wrong passphrase: gpg refuses (the MDC and the key both checked).
        writeFileSync(join(home, "pass"), passwordEncode(randomBytes(size)));
        assert.throws(() => execFileSync(GPG, ["--homedir", home, "--batch", "--quiet", "--decrypt", "--passphrase-file", join(home, "pass")], { input: sealed, stdio: ["pipe", "pipe", "pipe"] }));
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    });
  }

  test("and by our own opening", async () => {
    const secret = randomBytes(300);
    const configSecret = randomBytes(600);
    assert.deepEqual(await openReferenceSecret(sealSymmetric(secret, passwordEncode(configSecret), 0x60), configSecret), secret);
  });
});

describe("the pickle's contents", () => {
  const conf = (name: string, over: Partial<ClientSettings> = {}): ClientSettings => ({
    name, keyId: "AB".repeat(32), fingerprint: "", secret: Buffer.from(`secret of ${name}`), host: `${name}.example`, timeout: 300_000, extendedTimeout: 900_000,
    interval: 120_000, checker: "fping -q -- %(host)s", approvedByDefault: true, approvalDelay: 0, approvalDuration: 1_000, enabled: true, ...over,
  });
  /** The pickle's bytes in one buffer, as a file read back holds them. */
  const whole = (made: ReferencePickle): Buffer => Buffer.concat(made.data.chunks);
  const runtime = { enabled: true, created: 1_000, lastEnabled: 2_000, expires: 3_000, lastCheckedOk: null, lastApprovalRequest: null, lastCheckerStatus: -2, lastCheckerSignal: null };

  test("a client removed at run time is in the settings and not among the clients; a disabled one has no expiry", async () => {
    const config = [conf("a"), conf("b"), conf("c")];
    const data = whole(referencePickle(config, [
      { settings: config[0]!, runtime },
      { settings: { ...config[2]!, timeout: 420_000, secret: Buffer.from("set at run time") }, runtime: { ...runtime, enabled: false } },
    ], 5_000));
    const [clients, settings] = (unpickle(data) as PyTuple).items as [PyDict, PyDict];
    assert.deepEqual([...clients.keys()], ["a", "c"]);
    assert.deepEqual([...settings.keys()], ["a", "b", "c"]);
    const c = clients.get("c") as PyDict;
    assert.equal(c.get("expires"), null);
    assert.equal(c.get("enabled"), false);
    assert.equal((c.get("timeout") as PyTimedelta).ms, 420_000);
    assert.equal(((settings.get("c") as PyDict).get("timeout") as PyTimedelta).ms, 300_000, "clients.conf's, to tell what the admin changed there");
    assert.equal((settings.get("c") as PyDict).has("secret"), false, "no secret among the settings");
    assert.deepEqual(await openReferenceSecret(c.get("encrypted_secret") as Buffer, config[2]!.secret), Buffer.from("set at run time"));
    assert.equal(((clients.get("a") as PyDict).get("expires") as PyDatetime).ms, 3_000);
    assert.ok(!data.includes(Buffer.from("set at run time")) && !data.includes(Buffer.from("secret of a")), "no secret in the clear");
  });

  test("keys derived ahead seal the next export's secrets, each once; an export without them derives its own", async () => {
    const config = [conf("a"), conf("b"), conf("c")];
    const clients = config.map((settings) => ({ settings, runtime }));
    const salt = (data: Buffer, name: string): string => {
      const [saved] = (unpickle(data) as PyTuple).items as [PyDict];
      return ((saved.get(name) as PyDict).get("encrypted_secret") as Buffer).subarray(6, 14).toString("hex");
    };
    // A slice that ends at once still derives one key; then the rest.
    const warming = config[Symbol.iterator]();
    assert.equal(warmReferencePickle(warming, 0), false);
    assert.equal(warmReferencePickle(warming, 60_000), true);
    const first = referencePickle(config, clients, 5_000);
    assert.deepEqual(first.keys, { ahead: 3, now: 0 });
    const second = referencePickle(config, clients, 5_000);
    assert.deepEqual(second.keys, { ahead: 0, now: 3 }, "a key is used once");
    for (const name of ["a", "b", "c"]) assert.notEqual(salt(whole(first), name), salt(whole(second), name));
    for (const made of [first, second]) {
      const [saved] = (unpickle(whole(made)) as PyTuple).items as [PyDict];
      for (const c of config) assert.deepEqual(await openReferenceSecret((saved.get(c.name) as PyDict).get("encrypted_secret") as Buffer, c.secret), c.secret);
    }
  });
});

describe("the pickle in chunks (pickle-write.ts)", () => {
  /** `n` bytes made from `seed` (the same each run). */
  const bytesOf = (seed: string, n: number): Buffer => {
    const parts: Buffer[] = [];
    let h = Buffer.from(seed);
    for (let length = 0; length < n; length += 32) parts.push((h = createHash("sha256").update(h).digest()));
    return Buffer.concat(parts).subarray(0, n);
  };
  /**
   * 400 clients of every kind (disabled, removed at run time, names and
   * commands not ASCII, times absent, checker statuses of each integer
   * opcode, a secret of 3 MB, bigger than a chunk), their secrets still
   * sealed by the Python server (placeholders): the export seals nothing
   * itself, so its bytes are the same each run.
   */
  const fleet = (): { config: ClientSettings[]; clients: Array<{ settings: ClientSettings; runtime: ClientRuntime }>; now: number } => {
    const config: ClientSettings[] = [];
    const clients: Array<{ settings: ClientSettings; runtime: ClientRuntime }> = [];
    for (let i = 0; i < 400; i++) {
      const c: ClientSettings = {
        name: i % 11 === 0 ? `m\u00e9${i}\u2603` : `machine${i}`, keyId: bytesOf(`k${i}`, 32).toString("hex").toUpperCase(),
        fingerprint: i % 5 ? "" : bytesOf(`f${i}`, 20).toString("hex").toUpperCase(), secret: bytesOf(`c${i}`, 64 + (i % 7) * 200),
        host: `host-${i}.example`, timeout: 300_000 + i * 1001, extendedTimeout: 900_000 + i, interval: 120_000 * (1 + (i % 3)),
        checker: i % 4 ? "fping -q -- %%(host)s" : `true \u00e9 ${i}`, approvedByDefault: i % 2 === 0, approvalDelay: i * 13, approvalDuration: 1000 + i, enabled: i % 9 !== 0,
      };
      config.push(c);
      if (i % 13 === 5) continue;
      const sealed = bytesOf(`s${i}`, i === 7 ? 3_000_000 : 40 + ((i * 37) % 5000));
      const t = 1_765_000_000_000 + i * 86_400_123;
      clients.push({
        settings: { ...c, timeout: i % 6 === 0 ? 86_400_000 * 400 + 7 : c.timeout, secret: placeholderFor({ sealed, configSecret: c.secret }) },
        runtime: {
          enabled: i % 3 !== 0, created: t, lastEnabled: i % 4 ? t + 5 : null, expires: i % 5 ? t + 1e7 : null, lastCheckedOk: i % 2 ? t + 99 : null,
          lastApprovalRequest: i % 7 ? null : t + 7, lastCheckerStatus: [-2, -1, 0, 1, 255, 256, 70_000][i % 7]!, lastCheckerSignal: null,
        },
      });
    }
    return { config, clients, now: 1_765_432_100_000 };
  };

  test("the export's chunks hold the bytes the one-buffer writer made, each chunk at most 1 MiB or one value, and the digest is theirs", () => {
    const { config, clients, now } = fleet();
    const made = referencePickle(config, clients, now);
    const { chunks, length, sha256 } = made.data;
    const whole = Buffer.concat(chunks);
    // As the one-buffer writer before 2026-12-07 made this fleet's pickle (its SHA-256 and length).
    assert.equal(whole.length, 6_703_029);
    assert.equal(createHash("sha256").update(whole).digest("hex"), "5e54f03e2b74a59088be22cd27a75cd42cc0f70cff2708b8b739f9c3b5cf4a20");
    assert.equal(length, whole.length);
    assert.equal(sha256, createHash("sha256").update(whole).digest("hex"));
    assert.equal(made.sha256, sha256);
    assert.ok(chunks.length > 2, `in chunks, not one buffer: ${chunks.length}`);
    // The 3 MB secret is written as UTF-8 of its latin-1 (up to twice its bytes), in a chunk of its own size.
    for (const chunk of chunks) assert.ok(chunk.length <= PICKLE_CHUNK_BYTES || chunk.length > 3_000_000, `a chunk of ${chunk.length}`);
    made.data.wipe();
    assert.ok(chunks.every((c) => c.equals(Buffer.alloc(c.length))), "wiped");
  });

  test("cut anywhere (chunks of 1, 5, 64 or 4096 bytes), a pickle has the same bytes and digest as in one chunk", () => {
    const { config, clients, now } = fleet();
    const value = pyTuple([
      new Map<string, PickleValue>(clients.slice(0, 40).map(({ settings, runtime }) => [settings.name, new Map<string, PickleValue>([
        ["created", new PyDatetime(runtime.created)], ["timeout", new PyTimedelta(settings.timeout)], ["secret", bytesOf(settings.name, 300)], ["status", runtime.lastCheckerStatus],
        ["host", settings.host], ["none", null], ["list", [settings.checker, true, false, 2 ** 40]], ["tuple", pyTuple([1, 2, 3, 4])],
      ])])),
      new Map(config.slice(0, 5).map((c) => [c.name, c.name])),
      new Date(now).toISOString(),
    ]);
    const one = pickleChunks(value, 64 << 20);
    assert.equal(one.chunks.length, 1);
    for (const size of [1, 5, 64, 4096]) {
      const cut = pickleChunks(value, size);
      assert.ok(cut.chunks.length > 1, `${size}`);
      assert.deepEqual(Buffer.concat(cut.chunks), one.chunks[0], `chunks of ${size}`);
      assert.equal(cut.sha256, one.sha256, `chunks of ${size}`);
    }
  });

  test("Python loads the export's chunks, written as one file, to the values given", { skip: missing("/usr/bin/python3") }, () => {
    const { config, clients, now } = fleet();
    const data = Buffer.concat(referencePickle(config, clients, now).data.chunks);
    const shown = JSON.parse(execFileSync("python3", ["-c", [
      "import json, pickle, sys",
      "clients, settings = pickle.loads(sys.stdin.buffer.read(), encoding='bytes')",
      "print(json.dumps({'clients': len(clients), 'settings': len(settings), 'sealed': sum(len(c['encrypted_secret']) for c in clients.values()),",
      "  'first': {k: repr(v) for k, v in clients['m\\u00e90\\u2603'].items() if k not in ('encrypted_secret', 'client_structure')},",
      "  'statuses': sorted({c['last_checker_status'] for c in clients.values()})}))",
    ].join("\n")], { input: data, maxBuffer: 1 << 24 }).toString("utf8")) as Record<string, unknown>;
    const kept = clients.filter((c) => config.some((k) => k.name === c.settings.name));
    assert.equal(shown.clients, kept.length);
    assert.equal(shown.settings, config.length);
    assert.equal(shown.sealed, kept.reduce((n, c) => n + secretToOpen(c.settings.secret)!.sealed.length, 0));
    assert.deepEqual(shown.statuses, [-2, -1, 0, 1, 255, 256, 70_000]);
    assert.deepEqual((shown.first as Record<string, string>).created, "datetime.datetime(2025, 12, 6, 5, 46, 40)");
    assert.deepEqual((shown.first as Record<string, string>).timeout, "datetime.timedelta(days=400, microseconds=7000)");
    assert.deepEqual((shown.first as Record<string, string>).enabled, "False");
  });
});
