// Whether a secret is an OpenPGP message mandos-client can decrypt
// (src/main/config/openpgp-message.ts): known answers from
// test/data/secrets/, each made by gpg and served to the real mandos-client
// (its README says what the client did with each), and the framings RFC
// 9580 §4.2 allows that gpg did not make there.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { secretForm, secretWarning, type SecretForm } from "../src/main/config/openpgp-message.js";
import { clientKeyWarnings, parseClientsConfig } from "../src/main/config/clients-config.js";
import { openPgpShaped } from "./helpers/keys.js";

const DATA = fileURLToPath(new URL("../../test/data/secrets/", import.meta.url));
const data = (name: string): Buffer => readFileSync(DATA + name);

const KNOWN: Record<string, SecretForm> = {
  // mandos-client decrypted these.
  "keygen-password.pgp": "encrypted",
  "encrypted.pgp": "encrypted",
  "encrypted.asc": "encrypted",
  "encrypted-no-crc.asc": "encrypted",
  "encrypted-text-before.asc": "encrypted",
  "marker-then-encrypted.pgp": "encrypted",
  "encrypted-key-and-passphrase.pgp": "encrypted",
  // It failed on these, and asked again every 10 s.
  "plain-passphrase": "not-openpgp",
  "keygen-password.base64": "bare-base64",
  "stored.pgp": "not-encrypted",
  "stored-zlib.pgp": "not-encrypted",
  "signed.pgp": "not-encrypted",
  "clearsigned.asc": "not-encrypted",
  "symmetric.pgp": "passphrase-only",
  "symmetric.asc": "passphrase-only",
  "encrypted-cut-short.pgp": "cut-short",
  "encrypted-then-2-bytes.pgp": "trailing-bytes",
};

test("each secret gpg made is judged as the real mandos-client took it", () => {
  for (const [file, form] of Object.entries(KNOWN)) assert.equal(secretForm(data(file)), form, file);
  assert.equal(secretForm(Buffer.alloc(0)), "empty");
});

test("the other framings of RFC 9580 §4.2: legacy lengths of 1, 2 and 4 octets, OpenPGP lengths of 1, 2 and 5, partial chunks", () => {
  const pkesk = Buffer.from([3, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0xaa]);
  const legacy = (tag: number, body: Buffer, type: 0 | 1 | 2): Buffer => {
    const octets = 1 << type;
    const length = Buffer.alloc(octets);
    length.writeUIntBE(body.length, 0, octets);
    return Buffer.concat([Buffer.from([0x80 | (tag << 2) | type]), length, body]);
  };
  const seipd = Buffer.concat([Buffer.from([1]), Buffer.alloc(300, 0x55)]);
  // Legacy tags are 4 bits: SEIPD (18) only comes in the OpenPGP format, SED (9) in either.
  for (const type of [0, 1, 2] as const) {
    // A 1-octet length cannot hold the data packet's 301: the ESK alone in it.
    const data = type === 0 ? legacy(9, seipd, 1) : legacy(9, seipd, type);
    assert.equal(secretForm(Buffer.concat([legacy(1, pkesk, type), data])), "encrypted", `legacy length type ${type}`);
  }
  // Legacy indeterminate length: the data runs to the end.
  assert.equal(secretForm(Buffer.concat([legacy(1, pkesk, 0), Buffer.from([0x80 | (9 << 2) | 3]), seipd])), "encrypted");
  // OpenPGP format: 2-octet length (192..8383), then partial chunks of 256 and a last of 45.
  const twoOctet = Buffer.from([0xc0 | 18, 0xc0 + ((seipd.length - 192) >> 8), (seipd.length - 192) & 0xff]);
  assert.equal(secretForm(Buffer.concat([Buffer.from([0xc1, pkesk.length]), pkesk, twoOctet, seipd])), "encrypted");
  const partial = Buffer.concat([Buffer.from([0xc0 | 18, 0xe8]), seipd.subarray(0, 256), Buffer.from([45]), seipd.subarray(256)]);
  assert.equal(secretForm(Buffer.concat([Buffer.from([0xc1, pkesk.length]), pkesk, partial])), "encrypted");
  assert.equal(secretForm(Buffer.concat([Buffer.from([0xc1, pkesk.length]), pkesk, partial.subarray(0, 200)])), "cut-short", "a partial chunk cut short");
  // An ESK packet may not come in partial lengths.
  assert.equal(secretForm(Buffer.concat([Buffer.from([0xc1, 0xe0]), pkesk.subarray(0, 1), Buffer.from([0xc1, 10])])), "not-openpgp");
  // The tests' stand-in, 5-octet lengths.
  assert.equal(secretForm(openPgpShaped(Buffer.from("x"))), "encrypted");
  // No ESK at all: a key derived from a passphrase (§5.7), which mandos-client has not.
  assert.equal(secretForm(legacy(9, seipd, 1)), "passphrase-only");
  // Text that happens to start with what reads as a header (é is 0xC3: an SKESK's).
  assert.equal(secretForm(Buffer.from("été au lac, ma phrase")), "not-openpgp");
});

test("a warning names the client and says why, never a byte of the secret", () => {
  const passphrase = "hunter2 plain passphrase";
  const text = [
    `[plainb64]\nkey_id = 01\nsecret = ${Buffer.from(passphrase).toString("base64")}\n`,
    `[good]\nkey_id = 02\nsecret = ${data("keygen-password.pgp").toString("base64")}\n`,
    `[armored]\nkey_id = 03\nsecret = ${data("encrypted.asc").toString("base64")}\n`,
    `[symmetric]\nkey_id = 04\nsecret = ${data("symmetric.pgp").toString("base64")}\n`,
  ].join("\n");
  const warnings = clientKeyWarnings(parseClientsConfig(text, "c.conf"));
  assert.deepEqual(warnings, [
    "Client plainb64's secret in clients.conf is not an OpenPGP message (a passphrase as it is? mandos-keygen --password encrypts one): mandos-client cannot decrypt it and asks again, for ever; the machine never unlocks unless a secret set over D-Bus (mandos-ctl --secret) is in effect",
    "Client symmetric's secret in clients.conf is an OpenPGP message encrypted to a passphrase only (gpg --symmetric), not to the client's key: mandos-client cannot decrypt it and asks again, for ever; the machine never unlocks unless a secret set over D-Bus (mandos-ctl --secret) is in effect",
  ]);
  for (const w of warnings) assert.ok(!w.includes("hunter2") && !w.includes(Buffer.from(passphrase).toString("base64")), w);
  for (const form of Object.values(KNOWN)) {
    const said = secretWarning(form);
    assert.equal(said === null, form === "encrypted", form);
  }
});
