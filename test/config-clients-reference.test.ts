// clients.conf values that the Python reference server (/usr/sbin/mandos)
// reads without complaint but then fails on at start-up, run through the
// real reference and through our bin/mandos on the same file: both must
// refuse to start (exit 1, never listening), ours with one line naming the
// file, line and key. Then a file the reference takes whole although it
// may look like an error: two clients with the same key ID, which both
// servers start with (ours warning that only one can be served).
// The configparser-level comparison
// (config-clients-differential.test.ts) cannot see these: the reference's
// Client.config_parser accepts them, and its failure comes later, when it
// makes the client (a D-Bus UInt64 of a negative duration, an expiry past
// the year 9999).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DBUS_DAEMON, DBUS_SEND, dumpJson, referenceGpgEnvironment, startOurServer, startPrivateBus, startReference, type PrivateBus,
} from "./helpers/dbus.js";
import { MANDOS_CTL, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { BIN_MANDOS, run } from "./helpers/server.js";
import { serverNodeFlags } from "../bench/reboot.js";

const skip = missing(DBUS_DAEMON, DBUS_SEND, MANDOS_REFERENCE, MANDOS_CTL) ||
  (process.getuid?.() === 0 ? false : "needs root: the reference server must drop to _mandos");

const KEY_ID = "edf2f0a493dadee6bc27774957904f4e300d0cbe4962e0420a7361ad0d0ebe9e";
const FINGERPRINT = "D4BED6DCB0F4679DF37C54D410B63A1FAD59AF45";

const OTHER_FINGERPRINT = "1111222233334444555566667777888899990000";

/** A clients.conf whose one client, on line 8, has `option = value`. */
function clientsConf(option: string, value: string): string {
  return [
    "[DEFAULT]",
    "interval = PT240H",
    "checker = true",
    "",
    "[c1]",
    `key_id = ${KEY_ID}`,
    `fingerprint = ${FINGERPRINT}`,
    `${option} = ${value}`,
    "secret = c2VjcmV0",
    "",
  ].join("\n");
}

/** Each refused by the reference at start-up (its words in the comment). */
const REFUSED: readonly (readonly [option: string, value: string])[] = [
  // OverflowError: can't convert negative int to unsigned
  ["timeout", "-5m"],
  ["interval", "-1m"],
  ["extended_timeout", "-1s"],
  ["approval_delay", "-5s"],
  ["approval_duration", "-1s"],
  ["timeout", "5m -10m"],
  // OverflowError: date value out of range (now + timeout)
  ["timeout", "100000000d"],
];

describe("clients.conf values the reference fails on at start-up", { skip }, () => {
  let root = "";
  let bus: PrivateBus;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-confref-"));
    chmodSync(root, 0o755);
    bus = await startPrivateBus();
  });

  after(async () => {
    await bus?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  for (const [option, value] of REFUSED) {
    test(`${option} = ${value}: both refuse to start, ours naming the line`, async () => {
      const dir = mkdtempSync(join(root, "v-"));
      chmodSync(dir, 0o755);
      const conf = join(dir, "conf");
      mkdirSync(conf);
      chmodSync(conf, 0o755);
      writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
      writeFileSync(join(conf, "clients.conf"), clientsConf(option, value), { mode: 0o644 });
      const state = join(dir, "state");
      mkdirSync(state);
      chmodSync(state, 0o777);
      const args = ["--foreground", "--debug", "--no-zeroconf", "--no-restore", "--address", "::1", "--port", "0", "--configdir", conf, "--statedir", state];
      const env = { DBUS_SYSTEM_BUS_ADDRESS: bus.address };

      // --port 0 is ours only; the reference is given one it would refuse to reach anyway.
      const refArgs = args.map((a) => (a === "0" ? "21899" : a));
      const reference = await run(MANDOS_REFERENCE, refArgs, 60_000, { ...env, ...referenceGpgEnvironment(dir) });
      const refLog = reference.stdout.toString("utf8") + reference.stderr;
      assert.equal(reference.code, 1, `the reference was to refuse ${option} = ${value}; log:\n${refLog}`);
      assert.doesNotMatch(refLog, /Now listening/);

      const ours = await run(process.execPath, [...serverNodeFlags(), BIN_MANDOS, ...args], 60_000, env);
      const ourLog = ours.stdout.toString("utf8") + ours.stderr;
      assert.doesNotMatch(ourLog, /Now listening/, `ours listened with ${option} = ${value}`);
      assert.equal(ours.code, 1, ourLog);
      assert.ok(ourLog.includes(`${join(conf, "clients.conf")}:8 [c1] key "${option}": `), `no line naming the key:\n${ourLog}`);
      assert.match(ourLog, /a duration cannot be negative|duration longer than 100,000 years/);
    });
  }
});

describe("two clients with the same key ID", { skip }, () => {
  test("both servers start with both clients; ours warns that only one can be served", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mandos-ts-confref-dup-"));
    chmodSync(dir, 0o755);
    const conf = join(dir, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    writeFileSync(join(conf, "clients.conf"), `${clientsConf("host", "one.example")}\n[c2]\nkey_id = ${KEY_ID.toUpperCase()}\nfingerprint = ${OTHER_FINGERPRINT}\nsecret = c2VjcmV0\n`);
    mkdirSync(join(dir, "state-ref"));
    const [ourBus, refBus] = [await startPrivateBus(), await startPrivateBus()];
    const ours = await startOurServer(conf, join(dir, "state-ours"), ourBus.address);
    try {
      const reference = await startReference(conf, join(dir, "state-ref"), refBus.address);
      try {
        const [a, b] = [await dumpJson(ourBus.address), await dumpJson(refBus.address)];
        assert.deepEqual(Object.keys(a).sort(), ["c1", "c2"]);
        assert.deepEqual(Object.keys(b).sort(), ["c1", "c2"]);
        for (const name of ["c1", "c2"]) assert.equal(a[name]?.["KeyID"], b[name]?.["KeyID"], name);
      } finally {
        await reference.stop();
      }
      assert.match(ours.log(), new RegExp(`WARNING: Clients c1, c2 have the same key ID ${KEY_ID.toUpperCase()}: only one of them can be served`));
      assert.doesNotMatch(ours.log(), /have the same fingerprint/);
    } finally {
      await ours.stop();
      await ourBus.stop();
      await refBus.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
