// The shared registry's settings and key layout (issue 15), without etcd:
// the etcd options from mandos.conf and the command line, and what may and
// may not go into etcd.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCommandLine } from "../src/main/config/cli.js";
import { parseServerConfig } from "../src/main/config/server-config.js";
import { mergeSettings, type ServerFileSettings } from "../src/main/config/server-settings.js";
import {
  approvalKey, clientKey, decodeJournal, decodePending, decodeValue, encodeJournal, JOURNAL_VERSION, journalKey, MAX_SHARED_TIME_MS, parseKey, readJournal, SHARED_PROPERTIES,
  StateBuilder, validValue,
} from "../src/main/fleet/layout.js";
import { MAX_CLIENT_DURATION_MS } from "../src/main/config/duration.js";
import { passwordOf, readEtcdCredentials } from "../src/main/fleet/credentials.js";
import type { EtcdSettings } from "../src/main/fleet/settings.js";

const DEFAULTS = { priority: "NORMAL:+CTYPE-RAWPK", workers: 0, maxPerSource: 128 };

function settingsFrom(text: string, argv: string[] = []) {
  const parsed = parseCommandLine(["--port", "1", ...argv]);
  assert.equal(parsed.kind, "run");
  const file = parseServerConfig(text, "mandos.conf");
  const given: Record<string, unknown> = {};
  for (const key of file.setInFile) given[key] = file.settings[key];
  return mergeSettings(parsed.kind === "run" ? parsed.options : { check: false, configdir: "" }, given as ServerFileSettings, DEFAULTS, file);
}

test("without etcd there is no shared registry", () => {
  assert.equal(settingsFrom("[DEFAULT]\n").etcd, null);
  assert.equal(settingsFrom("[DEFAULT]\netcd = \n").etcd, null);
});

test("mandos.conf's etcd options, with the default prefix", () => {
  const etcd = settingsFrom("[DEFAULT]\netcd = http://[::1]:2379, http://[::1]:22379\netcd_user = mandos\netcd_password_file = /etc/mandos/etcd-pw\n").etcd;
  assert.deepEqual(etcd, {
    endpoints: ["http://[::1]:2379", "http://[::1]:22379"],
    prefix: "/mandos/",
    ca: null,
    cert: null,
    key: null,
    user: "mandos",
    passwordFile: "/etc/mandos/etcd-pw",
  });
});

test("the command line's --etcd options override mandos.conf's", () => {
  const etcd = settingsFrom("[DEFAULT]\netcd = http://a:1\netcd_prefix = /file/\n", ["--etcd", "https://b:2", "--etcd_prefix", "/cli/", "--etcd_ca", "ca.pem", "--etcd_cert", "c.pem", "--etcd_key", "k.pem"]).etcd;
  assert.deepEqual(etcd?.endpoints, ["https://b:2"]);
  assert.equal(etcd?.prefix, "/cli/");
  assert.deepEqual([etcd?.ca, etcd?.cert, etcd?.key], ["ca.pem", "c.pem", "k.pem"]);
});

test("an etcd option without its partner is refused, naming both and where the one came from, not dropped", () => {
  const refused = (text: string, argv: string[], message: string): void =>
    assert.throws(() => settingsFrom(text, argv), (e: Error & { code?: string }) => e.code === "MANDOS_ETCD_OPTIONS" && e.message === message);
  refused("[DEFAULT]\netcd = https://a:1\n", ["--etcd_cert", "c.pem"], "--etcd_cert: needs etcd_key");
  refused("[DEFAULT]\netcd = https://a:1\netcd_key = k.pem\n", [], 'mandos.conf:3 [DEFAULT] key "etcd_key": needs etcd_cert');
  refused("[DEFAULT]\netcd = http://a:1\netcd_user = mandos\n", [], 'mandos.conf:3 [DEFAULT] key "etcd_user": needs etcd_password_file');
  refused("[DEFAULT]\netcd = http://a:1\n", ["--etcd_password_file", "/etc/mandos/etcd-pw"], "--etcd_password_file: needs etcd_user");
  // A login in an endpoint URL (which etcd3 would ignore) is refused, and never shown.
  refused("[DEFAULT]\netcd = http://[::1]:1,http://mandos:s3cret@a:2/\n", [], 'mandos.conf:2 [DEFAULT] key "etcd": http://…@a:2/ holds a login: give it as etcd_user and etcd_password_file');
  refused("", ["--etcd", "https://s3cret@b:2"], "--etcd: https://…@b:2 holds a login: give it as etcd_user and etcd_password_file");
  // A client certificate without etcd_ca is allowed: etcd's is then checked against gRPC's default CAs.
  assert.deepEqual(settingsFrom("[DEFAULT]\netcd = https://a:1\netcd_cert = c.pem\netcd_key = k.pem\n").etcd?.ca, null);
});

test("the password is the file's first line, without its line ending; spaces are kept", () => {
  assert.equal(passwordOf("s3cret\n"), "s3cret");
  assert.equal(passwordOf("s3cret\r\n"), "s3cret");
  assert.equal(passwordOf("s3cret"), "s3cret");
  assert.equal(passwordOf(" two words \nignored\n"), " two words ");
  assert.equal(passwordOf("\n"), "");
});

test("an unreadable or empty credentials file is an error naming the option and the file", () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-etcd-files-"));
  try {
    const base: EtcdSettings = { endpoints: ["https://a:1"], prefix: "/m/", ca: null, cert: null, key: null, user: null, passwordFile: null };
    const empty = join(dir, "empty");
    writeFileSync(empty, "\n");
    const fails = (s: Partial<EtcdSettings>, message: RegExp): void =>
      assert.throws(() => readEtcdCredentials({ ...base, ...s }), (e: Error & { code?: string }) => e.code === "MANDOS_ETCD_FILE" && message.test(e.message));
    fails({ ca: join(dir, "absent-ca.pem") }, /^cannot read etcd_ca .*absent-ca\.pem: ENOENT/);
    fails({ user: "mandos", passwordFile: join(dir, "absent") }, /^cannot read etcd_password_file .*absent: ENOENT/);
    fails({ user: "mandos", passwordFile: empty }, /^etcd_password_file .*empty holds no password for etcd_user mandos$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("no secret has a key in etcd", () => {
  assert.ok(!SHARED_PROPERTIES.includes("Secret"));
  assert.equal(parseKey("/m/", "/m/clients/alpha/Secret"), null);
  for (const p of ["Enabled", "Expires", "LastCheckedOK", "LastCheckerStatus", "LastApprovalRequest", "Host", "Timeout"] as const) {
    assert.ok(SHARED_PROPERTIES.includes(p), `${p} is not shared`);
  }
});

test("keys name the client and property, whatever characters the name holds", () => {
  const key = clientKey("/m/", "rack 3/web%1", "Enabled");
  assert.equal(key, "/m/clients/rack%203%2Fweb%251/Enabled");
  assert.deepEqual(parseKey("/m/", key), { kind: "client", name: "rack 3/web%1", property: "Enabled" });
  assert.deepEqual(parseKey("/m/", approvalKey("/m/", "a/b")), { kind: "approval", name: "a/b" });
  assert.equal(parseKey("/other/", key), null, "another fleet's key");
  assert.equal(parseKey("/m/", "/m/clients/%E0%A4%A/Enabled"), null, "a malformed escape");
});

test("values of the wrong type are ignored, not adopted", () => {
  assert.equal(decodeValue("not json"), null);
  assert.equal(decodeValue(JSON.stringify({ value: true, by: "x" })), null, "no time of change");
  const b = new StateBuilder();
  b.add("Enabled", "yes");
  b.add("Expires", 1234);
  b.add("Timeout", "long");
  b.add("Host", "h.example.org");
  assert.deepEqual(b.build(), { runtime: { expires: 1234 }, settings: { host: "h.example.org" } });
});

test("values out of range are refused as clients.conf and D-Bus refuse them; the edges are taken", () => {
  const refused: Array<[Parameters<typeof validValue>[0], unknown]> = [
    ["Timeout", -1], ["Timeout", 1.5], ["Timeout", MAX_CLIENT_DURATION_MS + 1], ["Interval", 1e300], ["ApprovalDuration", null],
    ["Expires", MAX_SHARED_TIME_MS + 1], ["LastCheckedOK", -MAX_SHARED_TIME_MS - 1], ["LastEnabled", 8.65e15],
    ["LastCheckerStatus", -3], ["LastCheckerStatus", 256], ["LastCheckerStatus", 0.5], ["Host", "a\u0000b"], ["Checker", 7],
  ];
  for (const [property, value] of refused) assert.equal(validValue(property, value), false, `${property} = ${String(value)} taken`);
  const taken: Array<[Parameters<typeof validValue>[0], unknown]> = [
    ["Timeout", 0], ["Timeout", MAX_CLIENT_DURATION_MS], ["Interval", 0], ["Expires", null], ["Expires", MAX_SHARED_TIME_MS], ["LastCheckedOK", 0],
    ["LastCheckerStatus", -2], ["LastCheckerStatus", 255], ["Host", ""], ["Checker", "fping -q -- %%(host)s"], ["Enabled", false],
  ];
  for (const [property, value] of taken) assert.equal(validValue(property, value), true, `${property} = ${String(value)} refused`);
  // Every time made from the latest by adding the longest duration is still a date the state file can write.
  assert.ok(!Number.isNaN(new Date(MAX_SHARED_TIME_MS + MAX_CLIENT_DURATION_MS).getTime()));
  assert.equal(decodePending(JSON.stringify({ timeout: 1e300, approvedByDefault: true })), null, "a pending timeout D-Bus cannot carry");
  assert.deepEqual(decodePending(JSON.stringify({ timeout: 300_000, approvedByDefault: false })), { timeout: 300_000, approvedByDefault: false });
});

test("a journal record carries its changes without the prefix and gives them back whole; anything malformed in it is dropped", () => {
  const key = clientKey("/m/", "rack 3/web", "Expires");
  assert.deepEqual(parseKey("/m/", journalKey("/m/", "host/12/ab", 5)), { kind: "journal", server: "host/12/ab" });
  assert.equal(journalKey("/m/", "s", 5), "/m/journal/s/000000000005", "numbered so that records sort in order");
  const text = encodeJournal("/m/", { at: 7, by: "s", changes: [{ key, value: { value: 99, at: 6, by: "t" } }] });
  assert.ok(!text.includes("/m/"), "the prefix is not repeated in every change");
  assert.deepEqual(decodeJournal("/m/", text), { at: 7, by: "s", changes: [{ key, value: { value: 99, at: 6, by: "t" } }] });
  const mixed = JSON.stringify({
    at: 7, by: "s",
    changes: [["clients/a/Expires", 1, 2, "s"], ["clients/a/Secret", "x", 2, "s"], ["approvals/a", true, 2, "s"], ["clients/a/Expires", {}, 2, "s"], ["clients/a/Host", "h", "2", "s"], "junk"],
  });
  assert.deepEqual(decodeJournal("/m/", mixed)?.changes, [{ key: "/m/clients/a/Expires", value: { value: 1, at: 2, by: "s" } }]);
  assert.equal(decodeJournal("/m/", "not json"), null);
  assert.equal(decodeJournal("/m/", JSON.stringify({ at: 1, by: "s" })), null, "no changes");
});

test("a journal record says its format; one of a later format is known as such, whatever else it holds", () => {
  const isLater = (text: string): boolean => readJournal("", text).later;
  const text = encodeJournal("/m/", { at: 7, by: "s", changes: [] });
  assert.equal((JSON.parse(text) as { v: unknown }).v, JOURNAL_VERSION);
  assert.equal(isLater(text), false);
  assert.equal(isLater(JSON.stringify({ at: 7, by: "s", changes: [] })), false, "an earlier release's record (no v)");
  assert.equal(isLater(JSON.stringify({ v: JOURNAL_VERSION + 1, at: 7, by: "s", changes: [] })), true);
  assert.equal(isLater(JSON.stringify({ v: JOURNAL_VERSION + 1, entries: "another shape" })), true, "however it is laid out");
  assert.equal(isLater(JSON.stringify({ v: "2", at: 7, by: "s", changes: [] })), false);
  assert.equal(isLater("not a record"), false);
  assert.equal(isLater("null"), false);
});
