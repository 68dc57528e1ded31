// A reload's parse of clients.conf in a worker thread
// (src/main/config/clients-off-thread.ts): the clients come back as the
// same parse on this thread gives them, the unchanged ones as the running
// objects themselves, failures as reasons; and this thread goes on
// running while a fleet's file is parsed.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseClientsConfig, parsedTextDigest, textDigest } from "../src/main/config/clients-config.js";
import { packClients, parseClientsFile, unpackClients } from "../src/main/config/clients-off-thread.js";
import { SECRET_CHUNK_BYTES } from "../src/main/config/secret-arena.js";

const FILE = "/etc/mandos/clients.conf";

function fleet(n: number, changed = -1): string {
  let text = "[DEFAULT]\ntimeout = PT5M\nchecker = fping -q -- %%(host)s\n\n";
  for (let i = 0; i < n; i++) {
    const keyId = createHash("sha256").update(`key ${i}`).digest("hex");
    const secret = createHash("sha512").update(`secret ${i}${i === changed ? " changed" : ""}`).digest().toString("base64");
    text += `[host-${i}]\nkey_id = ${keyId}\nsecret = ${secret}\n\t${secret}\nhost = host-${i}.example.org\n\n`;
  }
  return text;
}

const VARIED = [
  "[DEFAULT]\ninterval = 1d\n",
  "[plain]\nkey_id = ab cd\nsecret = QUJD\n",
  "[legacy]\nfingerprint = 0123 4567\nsecret =\n",
  "[set]\nkey_id = EF\nfingerprint = 12\nsecret = w6k=\nhost = h.example.org\nchecker = ssh %%(host)s\n" +
    "timeout = 99999w\nextended_timeout = 1s\napproval_delay = PT1S\napproval_duration = 3m\napproved_by_default = no\nenabled = false\n",
  `[big]\nkey_id = 77\nsecret = ${Buffer.alloc(SECRET_CHUNK_BYTES, 7).toString("base64")}\n`,
  "[ünïcode name]\nkey_id = 88\nsecret = AAAA\nhost = ẞ.example\n",
].join("\n");

test("packed and unpacked, the clients are those the parse gave, each secret in memory of its own", () => {
  const parsed = parseClientsConfig(VARIED, FILE);
  const packed = packClients(parsed);
  const unpacked = unpackClients(packed);
  assert.deepEqual(unpacked, parsed);
  for (const c of unpacked) assert.notEqual(c.secret.buffer, packed.secrets, `${c.name}'s secret is not a view on the packed buffer`);
  // The packed copy of the secrets is wiped once unpacked.
  assert.ok(new Uint8Array(packed.secrets).every((b) => b === 0));
});

test("an unchanged client is the running object itself; a changed or new one a new object", () => {
  const running = parseClientsConfig(fleet(4), FILE);
  const next = parseClientsConfig(fleet(4, 2) + "[new]\nkey_id = 99\nsecret = AAAA\n", FILE);
  const unpacked = unpackClients(packClients(next), running);
  assert.deepEqual(unpacked, next);
  assert.deepEqual(unpacked.map((c, i) => c === running[i]), [true, true, false, true, false]);
  // The new ones' secrets take memory of their size, not a 64 KiB chunk each reload: it lives as long as they do.
  const made = [unpacked[2]!, unpacked[4]!];
  assert.equal(made[0]!.secret.buffer, made[1]!.secret.buffer, "side by side");
  assert.equal(made[0]!.secret.buffer.byteLength, made[0]!.secret.length + made[1]!.secret.length);
  // Made as the file's parse makes them: keys in one order, one object shape for every client.
  for (const c of made) assert.deepEqual(Object.keys(c), Object.keys(next[0]!));
  // Any one setting differing makes it new: the key, the secret, a duration, a flag, a string.
  const base = "[c]\nkey_id = 11\nsecret = AAAA\n";
  const before = parseClientsConfig(base, FILE);
  assert.equal(unpackClients(packClients(parseClientsConfig(base, FILE)), before)[0], before[0]);
  for (const edit of ["key_id = 12\nsecret = AAAA\n", "key_id = 11\nsecret = AAAB\n", "key_id = 11\nsecret = AAAA\nfingerprint = CD\n",
    "key_id = 11\nsecret = AAAA\ninterval = 3m\n", "key_id = 11\nsecret = AAAA\nenabled = no\n", "key_id = 11\nsecret = AAAA\nhost = x\n",
    "key_id = 11\nsecret = AAAA\napproved_by_default = no\n", "key_id = 11\nsecret = AAAA\nchecker = true\n"]) {
    const edited = parseClientsConfig(`[c]\n${edit}`, FILE);
    assert.notEqual(unpackClients(packClients(edited), before)[0], before[0], edit);
  }
});

test("parsed in a worker thread: the same clients, the digest kept, the unchanged text not parsed, warnings given", async () => {
  const text = VARIED + "\n[twin]\nkey_id = ab cd\nsecret = AAAA\n";
  const here = parseClientsConfig(text, FILE);
  const there = await parseClientsFile(Buffer.from(text), FILE, undefined, []);
  assert.equal(there.kind, "parsed");
  assert.ok(there.kind === "parsed");
  assert.deepEqual(there.clients, here);
  assert.equal(parsedTextDigest(there.clients), textDigest(text));
  // The secrets here are no OpenPGP messages: each is warned of, as from a parse on the main thread.
  const notOpenPgp = (name: string): string =>
    `Client ${name}'s secret in clients.conf is not an OpenPGP message (a passphrase as it is? mandos-keygen --password encrypts one): mandos-client cannot decrypt it and asks again, for ever; the machine never unlocks unless a secret set over D-Bus (mandos-ctl --secret) is in effect`;
  assert.deepEqual(there.warnings, [
    notOpenPgp("plain"),
    "Client legacy's secret in clients.conf is empty: mandos-client takes an empty secret as a failure and asks again, for ever; the machine never unlocks unless a secret set over D-Bus (mandos-ctl --secret) is in effect",
    notOpenPgp("set"),
    notOpenPgp("big"),
    notOpenPgp("ünïcode name"),
    notOpenPgp("twin"),
    "Clients plain, twin have the same key ID ABCD: only one of them can be served",
  ]);
  assert.deepEqual(await parseClientsFile(Buffer.from(text), FILE, textDigest(text), there.clients), { kind: "unchanged" });
});

test("a thread that fails leaves the parse to this one, on the file's bytes as read; they are wiped after", async () => {
  // Large enough to be a buffer of its own (Node cuts small ones from a shared pool).
  const text = fleet(50);
  for (const failing of ["throw new Error('no')", "process.exit(3)"]) {
    const bytes = Buffer.from(text);
    const parsed = await parseClientsFile(bytes, FILE, undefined, [], {}, new URL(`data:text/javascript,${encodeURIComponent(failing)}`));
    assert.ok(parsed.kind === "parsed", failing);
    assert.deepEqual(parsed.clients, parseClientsConfig(text, FILE));
    assert.ok(bytes.every((b) => b === 0));
  }
});

test("a reload's parse failures are reasons naming the file and line, for bad UTF-8 too", async () => {
  const badUtf8 = Buffer.concat([Buffer.from("[host]\nsecret = ü\nhost = "), Buffer.from([0xe9]), Buffer.from("\n")]);
  assert.deepEqual(await parseClientsFile(badUtf8, FILE, undefined, []), { kind: "failed", reason: `${FILE}: line 3 is not valid UTF-8` });
  const parsed = await parseClientsFile(Buffer.from("[a]\nkey_id = 1\nsecret = QUJ\n"), FILE, undefined, []);
  assert.equal(parsed.kind, "failed");
  assert.equal(parsed.kind === "failed" && parsed.reason, `${FILE}:3 [a] key "secret": secret is not valid base64 (incomplete last group)`);
});

test("a secfile is read by the worker as by this thread, relative ones from the base given", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-offthread-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "s"), "from a secfile\n");
  const text = "[a]\nkey_id = 1\nsecfile = s\n[b]\nkey_id = 2\nsecfile = $SECRETS/s\n";
  const parsed = await parseClientsFile(Buffer.from(text), FILE, undefined, [], { secfileBase: dir, env: { SECRETS: dir } });
  assert.ok(parsed.kind === "parsed");
  assert.deepEqual(parsed.clients.map((c) => c.secret.toString()), ["from a secfile\n", "from a secfile\n"]);
  // A secfile's contents are not in the text: such a file is always parsed again.
  assert.equal(parsedTextDigest(parsed.clients), undefined);
});

test("this thread goes on running while a fleet's clients.conf is parsed", async () => {
  const bytes = Buffer.from(fleet(5_000));
  // Event-loop turns taken while the parse runs: a parse on this thread
  // would let none (or one) happen before it is done.
  let turns = 0;
  let done = false;
  const turn = (): void => {
    turns++;
    if (!done) setImmediate(turn);
  };
  setImmediate(turn);
  const parsed = await parseClientsFile(bytes, FILE, undefined, []);
  done = true;
  assert.equal(parsed.kind === "parsed" && parsed.clients.length, 5_000);
  assert.ok(turns >= 10, `${turns} event-loop turns during the parse`);
});
