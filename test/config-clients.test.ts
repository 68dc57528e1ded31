// clients.conf and mandos.conf as the reference reads them: durations
// against the reference's own parsing code, booleans, secrets and secfiles,
// real mandos-keygen output, and errors that name file, line and key.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadClientsConfig, parseClientsConfig, parseServerConfig } from "../src/main/config/index.js";
import { parseDuration } from "../src/main/config/durations.js";
import { decodeBase64Python } from "../src/main/config/base64.js";
import { makeClients, makeKeySet } from "./helpers/keys.js";
import { MANDOS_KEYGEN, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { REPO } from "./helpers/server.js";

let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "mandos-ts-clients-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const DURATIONS = [
  "PT5M", "PT15M", "PT2M", "PT0S", "P1DT2H", "P2W", "P1M", "P1Y", "P1Y2M3DT4H5M6S", "PT1H30M", "P", "PT", "P1DT",
  "P1W2D", "PT1S2M", "1d 2h", "1d2h", "5m", "  10s  ", "", "1x", "d", "-5m", "+3h", "1_0s", "2w 1d 1h 1m 1s", "P0D",
  "PT1.5S", "1.5h", "p1d", "PT36H", "P14D", "1d\t2h",
];

test("durations parse exactly as the reference's string_to_delta", { skip: missing(MANDOS_REFERENCE, "/usr/bin/python3") }, () => {
  const theirs = JSON.parse(
    execFileSync("/usr/bin/python3", [join(REPO, "test/data/config/durations-dump.py")], { input: JSON.stringify(DURATIONS), encoding: "utf8" }),
  ) as Array<number | null>;
  DURATIONS.forEach((d, i) => {
    let mine: number | null;
    try {
      mine = parseDuration(d);
    } catch {
      mine = null;
    }
    assert.equal(mine, theirs[i], JSON.stringify(d));
  });
});

test("base64 secrets decode as Python's binascii does", () => {
  assert.equal(decodeBase64Python("QUJD\n    RA==").toString(), "ABCD");
  assert.equal(decodeBase64Python("QQ==QQ==").toString(), "A");
  assert.equal(decodeBase64Python("Q!Q==").toString(), "A");
  assert.throws(() => decodeBase64Python("QQ"), /Incorrect padding/);
  assert.throws(() => decodeBase64Python("QUJDR"), /cannot be 1 more than a multiple of 4/);
});

test("a client section with defaults, interpolation and normalised key ID", () => {
  const [c] = parseClientsConfig(
    "[DEFAULT]\ntimeout = PT1H\n\n[web01]\nhost = web01.example.org\nkey_id = ab cd EF\nsecret = Zm9v\nchecker = ping %%(host)s\napproval_delay = PT30S\napproved_by_default = no\n",
    "clients.conf",
  );
  assert.ok(c);
  assert.equal(c.name, "web01");
  assert.equal(c.keyId, "ABCDEF");
  assert.equal(c.fingerprint, "");
  assert.equal(c.secret.toString(), "foo");
  assert.equal(c.timeout, 3_600_000);
  assert.equal(c.extendedTimeout, 15 * 60_000);
  assert.equal(c.interval, 2 * 60_000);
  assert.equal(c.checker, "ping %(host)s");
  assert.equal(c.approvalDelay, 30_000);
  assert.equal(c.approvalDuration, 1_000);
  assert.equal(c.approvedByDefault, false);
  assert.equal(c.enabled, true);
});

test("the default checker keeps its runtime expansion", () => {
  const [c] = parseClientsConfig("[x]\nfingerprint = 00\nsecret = Zm9v\n", "f");
  assert.equal(c?.checker, "fping -q -- %(host)s");
});

test("secfile with ~ and $VAR, read as given", () => {
  writeFileSync(join(dir, "secret.bin"), Buffer.from([0, 1, 2, 255]));
  const [c] = parseClientsConfig("[x]\nkey_id = 01\nsecfile = $SECDIR/secret.bin\n", "f", { env: { SECDIR: dir } });
  assert.deepEqual(c?.secret, Buffer.from([0, 1, 2, 255]));
  const [d] = parseClientsConfig("[x]\nkey_id = 01\nsecfile = ~/s\n", "f", {
    env: {},
    readFile: (p) => Buffer.from(p),
  });
  assert.equal(d?.secret.toString(), `${process.env.HOME ?? ""}/s`);
});

const errors: Array<[string, string, number | null, string | null]> = [
  ["[x]\nkey_id = 01\n", "CONFIG_NO_SECRET", 1, "secret"],
  ["[x]\nsecret = Zm9v\n", "CONFIG_NO_KEY", 1, "key_id"],
  ["[x]\nkey_id = 01\nsecret = Zm9v\ntimeout = soon\n", "CONFIG_BAD_DURATION", 4, "timeout"],
  ["[x]\nkey_id = 01\nsecret = Zm9v\nenabled = maybe\n", "CONFIG_BAD_BOOLEAN", 4, "enabled"],
  ["[x]\nkey_id = 01\nsecret = Zm9\n", "CONFIG_BAD_SECRET", 3, "secret"],
  ["[x]\nkey_id = 01\nsecfile = /nonexistent/secret\n", "CONFIG_SECFILE", 3, "secfile"],
  ["[x]\nkey_id = 01\nsecret = Zm9v\n[y]\nkey_id = 01\nsecret = Zm9v\n", "CONFIG_DUPLICATE_KEY", 5, "key_id"],
  ["[x]\nkey_id = 01\nsecret = Zm9v\nhost = 100%\n", "CONFIG_INTERPOLATION_SYNTAX", 4, "host"],
];
for (const [text, code, line, key] of errors) {
  test(`clients.conf error ${code} names file, line ${line} and key ${key}`, () => {
    assert.throws(() => parseClientsConfig(text, "/etc/mandos/clients.conf"), (e: unknown) => {
      const err = e as { code: string; line: number | null; key: string | null; message: string };
      assert.equal(err.code, code);
      assert.equal(err.line, line);
      assert.equal(err.key, key);
      assert.ok(err.message.startsWith(`/etc/mandos/clients.conf:${line}: ${key}: `), err.message);
      assert.ok(!err.message.includes("Zm9v"), "no secret in the message");
      return true;
    });
  });
}

test("a missing clients.conf is no clients, as in the reference", () => {
  assert.deepEqual(loadClientsConfig(join(dir, "absent.conf")), []);
});

test("real mandos-keygen --password output parses to the right key ID and secret", { skip: missing(MANDOS_KEYGEN) }, () => {
  const pgp = join(dir, "pgp");
  makeKeySet(pgp);
  const clients = makeClients(dir, pgp, 2);
  const conf = join(dir, "keygen.conf");
  writeFileSync(conf, clients.map((c) => c.section).join("\n"));
  const parsed = loadClientsConfig(conf);
  assert.deepEqual(parsed.map((c) => c.name), ["client0", "client1"]);
  parsed.forEach((p, i) => {
    assert.equal(p.keyId, clients[i]!.keyId);
    assert.equal(p.host, clients[i]!.name);
    assert.ok(p.fingerprint.length >= 32);
    // An OpenPGP message: a public-key encrypted session key packet first.
    assert.ok(p.secret.length > 100);
    assert.equal(p.secret[0]! & 0x80, 0x80);
  });
});

test("mandos.conf: booleans interpolated, strings raw (the priority keeps its %)", () => {
  const s = parseServerConfig(
    "[DEFAULT]\ninterface = eth0\nport = 1234\nuse_dbus = no\nzeroconf = %(off)s\noff = off\npriority = SECURE128:%PROFILE_ULTRA\nservicename = Other\n",
    "mandos.conf",
  );
  assert.deepEqual(s, { interface: "eth0", port: 1234, useDbus: false, zeroconf: false, priority: "SECURE128:%PROFILE_ULTRA", servicename: "Other" });
  assert.throws(() => parseServerConfig("[DEFAULT]\nport = eighty\n", "mandos.conf"), { code: "CONFIG_BAD_INTEGER", line: 2, key: "port" });
});

