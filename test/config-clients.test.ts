// clients.conf (src/main/config/clients-config.ts): the reference's defaults, DEFAULT
// inheritance, each bad setting's error naming file, line and key, secfile paths, scale.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../src/main/config/errors.js";
import { clientKeyWarnings, loadClientsConfig, parseClientsConfig, secfilePath } from "../src/main/config/clients-config.js";
import { SECRET_CHUNK_BYTES } from "../src/main/config/secret-arena.js";
import { openPgpShaped } from "./helpers/keys.js";

const KEY_ID = "EDF2F0A493DADEE6BC27774957904F4E300D0CBE4962E0420A7361AD0D0EBE9E";
/** A secret the server takes for an encrypted OpenPGP message, as the warnings' tests need. */
const PGP = openPgpShaped(Buffer.from("ABC")).toString("base64");

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.code;
  }
  assert.fail("no error");
}

test("a client gets the reference's defaults and its own settings", () => {
  const [client, ...rest] = parseClientsConfig(`[foo]\nkey_id = ${KEY_ID.toLowerCase()}\nsecret = QUJD\nhost = foo.example\n`, "c.conf");
  assert.equal(rest.length, 0);
  assert.ok(client);
  assert.equal(client.name, "foo");
  assert.equal(client.keyId, KEY_ID);
  assert.equal(client.fingerprint, "");
  assert.equal(client.secret.toString(), "ABC");
  assert.equal(client.host, "foo.example");
  assert.equal(client.timeout, 5 * 60_000);
  assert.equal(client.extendedTimeout, 15 * 60_000);
  assert.equal(client.interval, 2 * 60_000);
  assert.equal(client.approvalDelay, 0);
  assert.equal(client.approvalDuration, 1000);
  assert.equal(client.approvedByDefault, true);
  assert.equal(client.enabled, true);
  assert.equal(client.checker, "fping -q -- %(host)s", "the runtime %(host)s survives the file's own interpolation");
});

test("DEFAULT is inherited, file order is kept, keys are normalised", () => {
  const text = [
    "[DEFAULT]",
    "timeout = 1d 2h",
    "checker = ssh-keyscan %%(host)s | grep %(extra)s",
    "extra = ssh-ed25519",
    "[zeta]",
    "fingerprint = d4be d6dc b0f4 679d f37c  54d4 10b6 3a1f ad59 af45",
    "secret = QUJD",
    "enabled = no",
    "[Alpha]",
    "key_id = ab cd",
    "secret = QUJD",
    "approved_by_default = off",
    "approval_delay = PT30S",
    "interval = P1W",
  ].join("\n");
  const clients = parseClientsConfig(text, "c.conf");
  assert.deepEqual(clients.map((c) => c.name), ["zeta", "Alpha"]);
  const [zeta, alpha] = clients as [(typeof clients)[0], (typeof clients)[0]];
  assert.equal(zeta.fingerprint, "D4BED6DCB0F4679DF37C54D410B63A1FAD59AF45");
  assert.equal(zeta.enabled, false);
  assert.equal(zeta.timeout, 26 * 3600_000);
  assert.equal(zeta.checker, "ssh-keyscan %(host)s | grep ssh-ed25519");
  assert.equal(alpha.keyId, "ABCD");
  assert.equal(alpha.approvedByDefault, false);
  assert.equal(alpha.approvalDelay, 30_000);
  assert.equal(alpha.interval, 7 * 24 * 3600_000);
});

test("key_id without fingerprint is enough (the reference wrongly insists on fingerprint)", () => {
  assert.equal(parseClientsConfig(`[c]\nkey_id = ${KEY_ID}\nsecret = QUJD\n`, "c.conf").length, 1);
  assert.equal(parseClientsConfig("[c]\nfingerprint = D4BE\nsecret = QUJD\n", "c.conf").length, 1);
});

// Found by session 56's configuration fuzz: one section with neither key
// (a machine's placeholder, a misspelt key_id) stopped the start of every
// client; the reference keeps it, and serves the others.
test("a client with neither key_id nor fingerprint is kept, never matched, and warned of", () => {
  const clients = parseClientsConfig(`[good]\nkey_id = ${KEY_ID}\nsecret = ${PGP}\n\n[newhost]\nkey_id =\nfingerprint =\nsecret =\n[typo]\nkeyid = ${KEY_ID}\nsecret = QUJD\n`, "c.conf");
  assert.deepEqual(clients.map((c) => [c.name, c.keyId, c.fingerprint]), [["good", KEY_ID.toUpperCase(), ""], ["newhost", "", ""], ["typo", "", ""]]);
  assert.deepEqual(clientKeyWarnings(clients), [
    "Client newhost has neither key_id nor fingerprint: no peer can match it, it is never served",
    "Client typo has neither key_id nor fingerprint: no peer can match it, it is never served",
  ]);
});

test("a client whose secret is empty (`secret =`, a secfile of 0 bytes) is warned of: mandos-client takes it as a failure, for ever", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-empty-secret-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "empty"), "");
  const clients = parseClientsConfig(`[blank]\nkey_id = ${KEY_ID}\nsecret =\n[nofile]\nfingerprint = D4BE\nsecfile = ${join(dir, "empty")}\n[fine]\nkey_id = ${KEY_ID.replace(/^./, "0")}\nsecret = ${PGP}\n`, "c.conf");
  assert.deepEqual(clientKeyWarnings(clients), ["blank", "nofile"].map((name) =>
    `Client ${name}'s secret in clients.conf is empty: mandos-client takes an empty secret as a failure and asks again, for ever; the machine never unlocks unless a secret set over D-Bus (mandos-ctl --secret) is in effect`));
});

test("a checker that expands %(secret)s is warned of (its command line shows the secret to every user)", () => {
  const secret = openPgpShaped(Buffer.from("a secret of some length")).toString("base64");
  const clients = parseClientsConfig(`[leaky]\nkey_id = ${KEY_ID}\nchecker = true # %(secret)s\nsecret =\n ${secret.slice(0, 12)}\n ${secret.slice(12)}\n[fine]\nkey_id = ${KEY_ID.replace(/^./, "0")}\nsecret = ${secret}\n`, "c.conf");
  assert.deepEqual(clientKeyWarnings(clients), [
    `Client leaky's checker holds its secret (%(secret)s): its command line shows it to every user, and the log's "Starting checker" lines and the state file hold it; etcd is never given it`,
  ]);
});

// A fleet's clients.conf whose secrets are all of one wrong form (plain
// passphrases from a migration script) wrote a warning a client at each
// start and each reload: 20,000 lines, which journald's rate limit cuts
// with other lines among them. The log gets the first of each kind and a
// count of the rest; --check (no cap) every one.
test("the warnings are capped per kind for the log, the rest counted in one line each; without a cap all are given", () => {
  const sections: string[] = [];
  for (let i = 0; i < 13; i++) sections.push(`[plain${i}]\nkey_id = ${KEY_ID.slice(0, -2)}${i.toString(16).padStart(2, "0")}\nsecret = ${Buffer.from(`passphrase ${i}`).toString("base64")}\n`);
  for (let i = 0; i < 3; i++) sections.push(`[nokey${i}]\nkey_id =\nsecret = ${PGP}\n`);
  for (let i = 0; i < 4; i++) sections.push(`[twin${i}]\nkey_id = ${KEY_ID.replace(/^./, "0")}\nsecret = ${PGP}\n`);
  const clients = parseClientsConfig(sections.join(""), "c.conf");
  const all = clientKeyWarnings(clients);
  assert.equal(all.length, 13 + 3 + 1);
  assert.equal(all.filter((w) => w.includes("more")).length, 0);
  const capped = clientKeyWarnings(clients, 2);
  assert.deepEqual(capped, [
    ...all.slice(0, 2),
    ...all.slice(13, 15),
    all[16],
    "11 more clients' secrets in clients.conf are of a form mandos-client cannot decrypt (not each said here: mandos --check lists them all)",
    "1 more client has neither key_id nor fingerprint (not each said here: mandos --check lists them all)",
  ]);
  assert.ok(!capped.join("\n").includes(Buffer.from("passphrase").toString("base64").slice(0, 12)), "no secret in a warning");
  assert.deepEqual(clientKeyWarnings(clients, 13), all, "a kind at its cap is given whole, with no count line");
});

test("each bad client setting fails with its own code, naming file, line and key", () => {
  const cases: [string, string, number, string | undefined][] = [
    ["[c]\nkey_id = A\nsecret = QUJD\nenabled = maybe\n", "CONFIG_BAD_BOOLEAN", 4, "enabled"],
    ["[c]\nkey_id = A\nsecret = QUJD\ntimeout = 1d2h\n", "CONFIG_BAD_DURATION", 4, "timeout"],
    ["[c]\nkey_id = A\n", "CONFIG_NO_SECRET", 1, undefined],
    ["[c]\nkey_id = A\nsecret = c2VjcmV0X\n", "CONFIG_BAD_SECRET", 3, "secret"],
    ["[DEFAULT]\nunused = %(nothing)s\n[c]\nkey_id = A\nsecret = QUJD\n", "CONFIG_INTERPOLATION_MISSING_OPTION", 2, "unused"],
    ["[c]\nkey_id = A\nsecfile = /nonexistent/secret\n", "CONFIG_SECFILE_UNREADABLE", 3, "secfile"],
    // A NUL D-Bus cannot carry: such a host once stopped the server at its first D-Bus announcement.
    ["[c]\nkey_id = A\nsecret = QUJD\nhost = de\0mo\n", "CONFIG_BAD_TEXT", 4, "host"],
    ["[c]\nkey_id = A\nsecret = QUJD\nchecker = fping \0\n", "CONFIG_BAD_TEXT", 4, "checker"],
    ["[c]\nkey_id = A\0B\nsecret = QUJD\n", "CONFIG_BAD_TEXT", 2, "key_id"],
    ["[c\0d]\nkey_id = A\nsecret = QUJD\n", "CONFIG_BAD_TEXT", 1, undefined],
  ];
  for (const [text, code, line, key] of cases) {
    assert.throws(() => parseClientsConfig(text, "/etc/mandos/clients.conf"), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.code, code, text);
      assert.equal(error.line, line, text);
      assert.equal(error.key, key, text);
      assert.equal(error.file, "/etc/mandos/clients.conf");
      assert.doesNotMatch(error.message, /c2VjcmV0/, "no secret in messages");
      return true;
    });
  }
});

test("a name from the file is shown with its control characters escaped", () => {
  assert.throws(() => parseClientsConfig("[c\0\u001b[31md]\nkey_id = A\nsecret = QUJD\n", "c.conf"), {
    message: "c.conf:1 [c\\x00\\x1b[31md]: a client name with a NUL character, which D-Bus cannot carry",
  });
});

test("a negative duration or one beyond 100,000 years is an error (the reference fails at start-up on both)", () => {
  const at = (value: string): string => `[DEFAULT]\napproval_delay = ${value}\n[c]\nkey_id = A\nsecret = QUJD\n`;
  for (const value of ["-5m", "5m -10m", "-1s", "100000000d", "P100400Y"]) {
    assert.throws(() => parseClientsConfig(at(value), "c.conf"), (error: unknown) => {
      assert.ok(error instanceof ConfigError, value);
      assert.equal(error.code, "CONFIG_BAD_DURATION", value);
      assert.equal(error.line, 2, value);
      assert.equal(error.key, "approval_delay", value);
      return true;
    }, value);
  }
  const year = 31_557_600_000;
  const ok: [string, number][] = [["-0s", 0], ["5m -1m", 240_000], ["0s", 0], [`${100_000 * 365 + 25_000}d`, 100_000 * year], ["P100000Y", 100_000 * 364 * 86_400_000]];
  for (const [value, ms] of ok) assert.equal(parseClientsConfig(at(value), "c.conf")[0]?.approvalDelay, ms, value);
  assert.equal(codeOf(() => parseClientsConfig(at(`${100_000 * 365 + 25_000}d 1s`), "c.conf")), "CONFIG_BAD_DURATION");
});

test("secfile: $VAR and ~user expanded as Python's expanduser(expandvars()), relative paths from the working directory", () => {
  const homeOf = (user: string): string | undefined => ({ mandos: "/var/lib/mandos/", root: "/root" })[user];
  const opts = { env: { HOME: "/home/me", DIR: "/srv/keys" }, homeOf, currentUser: "root" };
  assert.equal(secfilePath("$DIR/a", opts), "/srv/keys/a");
  assert.equal(secfilePath("${DIR}/a", opts), "/srv/keys/a");
  assert.equal(secfilePath("$NOPE/a", opts), join(process.cwd(), "$NOPE/a"));
  assert.equal(secfilePath("~/a", opts), "/home/me/a");
  assert.equal(secfilePath("~mandos/a", opts), "/var/lib/mandos/a");
  assert.equal(secfilePath("~nobody-here/a", opts), join(process.cwd(), "~nobody-here/a"));
  assert.equal(secfilePath("~/a", { ...opts, env: {} }), "/root/a");
  assert.equal(secfilePath("rel/a", opts), join(process.cwd(), "rel/a"));

  const dir = mkdtempSync(join(tmpdir(), "mandos-config-"));
  try {
    writeFileSync(join(dir, "pw"), Buffer.from([0, 1, 2, 255]));
    const [client] = parseClientsConfig("[c]\nkey_id = A\nsecfile = $D/pw\n", "c.conf", { env: { D: dir } });
    assert.deepEqual(client?.secret, Buffer.from([0, 1, 2, 255]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a missing clients.conf has no clients, as in the reference", () => {
  assert.deepEqual(loadClientsConfig("/nonexistent/clients.conf"), []);
});

test("ten thousand clients parse in one linear pass", () => {
  const sections: string[] = ["[DEFAULT]\ntimeout = PT10M\n"];
  for (let i = 0; i < 10_000; i++) sections.push(`[client${i}]\nkey_id = ${KEY_ID}\nsecret =\n  QUJD\n  REVG\nhost = h${i}\n`);
  const clients = parseClientsConfig(sections.join(""), "c.conf");
  assert.equal(clients.length, 10_000);
  assert.equal(clients[9_999]?.host, "h9999");
  assert.equal(clients[9_999]?.secret.toString(), "ABCDEF");
});

test("the secrets of one file share a few chunks, each exactly its own bytes, one too large for a chunk in its own", () => {
  const sections: string[] = [];
  const secrets: Buffer[] = [];
  for (let i = 0; i < 1_000; i++) {
    const secret = Buffer.alloc(400 + (i % 150), i);
    secrets.push(secret);
    sections.push(`[c${i}]\nkey_id = ${KEY_ID}\nsecret = ${secret.toString("base64")}\n`);
  }
  const large = Buffer.alloc(SECRET_CHUNK_BYTES, 7);
  sections.push(`[large]\nkey_id = ${KEY_ID}\nsecret = ${large.toString("base64")}\n`);
  const clients = parseClientsConfig(sections.join(""), "c.conf");
  const chunks = new Set(clients.slice(0, 1_000).map((c) => c.secret.buffer));
  const bytes = secrets.reduce((n, s) => n + s.length, 0);
  assert.ok(chunks.size <= Math.ceil(bytes / SECRET_CHUNK_BYTES) + 1, `${chunks.size} chunks for ${bytes} bytes`);
  for (const [i, c] of clients.slice(0, 1_000).entries()) assert.deepEqual(c.secret, secrets[i], c.name);
  // Writing one secret's view leaves its neighbours as they were.
  clients[0]!.secret.fill(0xee);
  assert.deepEqual(clients[1]!.secret, secrets[1]);
  const big = clients[1_000]!.secret;
  assert.deepEqual(big, large);
  assert.ok(!chunks.has(big.buffer as ArrayBuffer), "a large secret is not in a shared chunk");
});

const KEYGEN = "/usr/sbin/mandos-keygen";

test("mandos-keygen --password output is a valid client", { skip: existsSync(KEYGEN) ? undefined : `${KEYGEN} is not installed` }, () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-keygen-"));
  try {
    const made = spawnSync(KEYGEN, ["--dir", dir], { encoding: "utf8" });
    assert.equal(made.status, 0, made.stderr);
    writeFileSync(join(dir, "pw"), "demo password");
    const section = spawnSync(KEYGEN, ["--dir", dir, "--passfile", join(dir, "pw"), "--no-ssh", "--name", "demo", "--password"], { encoding: "utf8" });
    assert.equal(section.status, 0, section.stderr);
    writeFileSync(join(dir, "clients.conf"), section.stdout);
    const [client] = loadClientsConfig(join(dir, "clients.conf"));
    assert.ok(client);
    assert.equal(client.name, "demo");
    assert.match(client.keyId, /^[0-9A-F]{64}$/);
    assert.match(client.fingerprint, /^[0-9A-F]{40}$/);
    const base64 = section.stdout.split(/^secret =$/m)[1] ?? "";
    assert.deepEqual(client.secret, Buffer.from(base64.replace(/\s+/g, ""), "base64"));
    assert.ok(client.secret.length > 100, "an OpenPGP message");
    assert.ok(readFileSync(join(dir, "tls-pubkey.pem"), "utf8").includes("PUBLIC KEY"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
