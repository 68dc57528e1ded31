// clients.conf's values (src/main/config/duration.ts, python-values.ts): durations,
// booleans and base64 secrets as the reference reads them, python3 as the oracle.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseDuration } from "../src/main/config/duration.js";
import { pyBase64Decode, pyBoolean } from "../src/main/config/python-values.js";
import { askOracle, oracleMissing } from "./config-oracle.js";

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

test("durations as mandos-clients.conf(5) spells them", () => {
  assert.equal(parseDuration("PT5M"), 5 * M);
  assert.equal(parseDuration("P1DT2H"), D + 2 * H);
  assert.equal(parseDuration("P2W"), 14 * D);
  assert.equal(parseDuration("P1M"), 28 * D, "the reference's month is 4 weeks");
  assert.equal(parseDuration("P1Y"), 364 * D, "the reference's year is 52 weeks");
  assert.equal(parseDuration("1d 2h"), D + 2 * H);
  assert.equal(parseDuration("5m 30s"), 5 * M + 30 * S);
  assert.equal(parseDuration(""), 0);
  assert.equal(parseDuration("1d2h"), undefined);
  assert.equal(parseDuration("PT1H30S"), undefined, "the reference allows only minutes after hours");
  assert.equal(parseDuration("5x"), undefined);
  // Deliberately stricter than the reference, whose int() and \d take any Unicode digit.
  assert.equal(parseDuration("\u0663s"), undefined);
});

const DURATIONS = [
  "PT5M", "PT15M", "PT2M", "PT0S", "PT1S", "P1DT2H", "P2W", "P1W2D", "P1Y", "P1Y2M", "P1Y2D", "P1M2D", "P1MT1H", "P", "PT",
  "P1D", "PT1H", "PT1H2M", "PT1H2M3S", "PT1H30S", "PT2M3S", "PT3S", "P0D", "pt5m", "PT5m", " PT5M", "PT5M ", "P1DT", "PT-1S",
  "1d 2h", "1d2h", "5m 30s", "60s", "1w", "7d", "24h", "-5m", "+5m", "1_0s", "1__0s", "_1s", "s", "5", "", "  ", "5m\t2s",
  "10 s", "0x10s", "99999999999999999999d", "P99999999999999999999D", "3M", "1y", "1.5h",
];

test("durations as the reference's string_to_delta reads them", { skip: oracleMissing() }, (t) => {
  const answer = askOracle({ durations: DURATIONS });
  if (answer.durations.every((d) => d === null)) {
    t.skip("/usr/sbin/mandos is not installed");
    return;
  }
  DURATIONS.forEach((text, i) => {
    const expected = answer.durations[i];
    const actual = parseDuration(text);
    if (typeof expected === "number") assert.equal(actual, expected, JSON.stringify(text));
    else assert.equal(actual, undefined, JSON.stringify(text));
  });
});

test("booleans as ConfigParser.getboolean", () => {
  for (const yes of ["1", "yes", "True", "ON", "true"]) assert.equal(pyBoolean(yes), true, yes);
  for (const no of ["0", "No", "false", "OFF"]) assert.equal(pyBoolean(no), false, no);
  for (const bad of ["", "y", "2", " true", "enabled"]) assert.equal(pyBoolean(bad), undefined, bad);
});

const BASE64 = [
  "QUJD", "QUI=", "QUI", "QQ", "Q", "QUI=QUI=", "QU=I", "Q===", "QUJD=", "QUJDQ", "Q!U#I=", "==QUI=", "QUI=x", "QQ==QQ==", "QQ=",
  "QUI==", "", "QUJD\nREVG\n", "QU JD", "QUé=", "QU=x=", "////", "++++",
  // Plain base64 as mandos-keygen writes it (Node's own decoder reads it):
  // wrapped, padded or not, the padded group's unused bits set or not.
  "\nQUJD\nREVG", "QR==", "QUJ=", "QUJDRB==", "QUJDREV=", "QUJD\nRA==", "QUJDRE\nU=", "QUJDR\n", "QUJDR=", "QUJDRE==", "QUJ\n=",
  ...Array.from({ length: 60 }, (_, i) => {
    const text = Buffer.from(Array.from({ length: i * 7 }, (_, j) => (j * 37 + i) & 0xff)).toString("base64");
    // Every other one with its last letter's unused bits set, as binascii ignores them.
    const odd = i % 2 === 1 && text.endsWith("=") ? text.replace(/[A-Za-z0-9+/](?==+$)/, (c) => "BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz13579/"[c.charCodeAt(0) % 47]!) : text;
    return odd.replace(/(.{64})/g, "$1\n");
  }),
];

test("secrets decode as the reference's base64 codec", { skip: oracleMissing() }, () => {
  const answer = askOracle({ base64: BASE64 });
  BASE64.forEach((text, i) => {
    const expected = answer.base64[i];
    const actual = pyBase64Decode(text);
    if (typeof expected === "string") assert.equal(actual?.toString("hex"), expected, JSON.stringify(text));
    else assert.equal(actual, undefined, JSON.stringify(text));
  });
});
