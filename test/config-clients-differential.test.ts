// clients.conf read as the reference's Client.config_parser reads it: generated files,
// python3 running the reference's own code as the oracle (test/config-oracle.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseClientsConfig } from "../src/main/config/clients-config.js";
import { ConfigError } from "../src/main/config/errors.js";
import { askOracle, oracleMissing, random } from "./config-oracle.js";

/** Values the reference accepts, per option. */
const POOLS: Record<string, readonly string[]> = {
  key_id: ["edf2f0a493dadee6bc27774957904f4e300d0cbe4962e0420a7361ad0d0ebe9e", "AB CD ef", "%(host)s", ""],
  fingerprint: ["D4BED6DCB0F4679DF37C54D410B63A1FAD59AF45", "d4be d6dc b0f4"],
  secret: ["QUJD", "\n  QUJD\n  REVG\n  Rw==", "c2VjcmV0\n\n  X19f", "%(other)s", "QU=x=", "Q!U#I="],
  secfile: ["$MANDOS_CONFIG_TEST/secret", "${MANDOS_CONFIG_TEST}/secret"],
  host: ["", "foo.example", "%(name)s.example", "::1"],
  timeout: ["PT5M", "1d 2h", "P1Y2M", "", "-5m", "P2W"],
  extended_timeout: ["PT15M", "7d"],
  interval: ["PT2M", "30s", "P1DT2H"],
  approval_delay: ["PT0S", "PT10S"],
  approval_duration: ["PT1S", "1m"],
  checker: ["fping -q -- %%(host)s", "ssh %%(host)s %(host)s", "true"],
  approved_by_default: ["True", "no", "ON"],
  enabled: ["yes", "0", "False"],
  name: ["n1", "%(host)s"],
  other: ["QUJD", "%%"],
};
/** Values it rejects. */
const BAD: Record<string, readonly string[]> = {
  secret: ["QUI", "Q", "%"],
  secfile: ["$MANDOS_CONFIG_TEST/absent"],
  timeout: ["1d2h", "PT1H30S", "5x"],
  extended_timeout: ["bad"],
  approval_delay: ["10"],
  checker: ["x %(missing)s", "100%"],
  approved_by_default: ["maybe"],
  enabled: ["nah"],
  name: ["%(name)s"],
};
const KEYS = Object.keys(POOLS);

function generateClients(next: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T;
  const option = (key: string): string => {
    const bad = BAD[key];
    const value = bad !== undefined && next() < 0.04 ? pick(bad) : pick(POOLS[key] as readonly string[]);
    return `${next() < 0.2 ? key.toUpperCase() : key} = ${value}`;
  };
  const lines: string[] = [];
  if (next() < 0.7) {
    lines.push("[DEFAULT]");
    for (const key of KEYS) if (key !== "fingerprint" && next() < 0.15) lines.push(option(key));
  }
  const clients = 1 + Math.floor(next() * 3);
  for (let c = 0; c < clients; c++) {
    lines.push(`[client ${c}${next() < 0.2 ? "X" : ""}]`);
    // The reference insists on fingerprint (we do not): always give one here.
    lines.push(`fingerprint = ${pick(POOLS["fingerprint"] as readonly string[])}`);
    for (const key of KEYS) if (key !== "fingerprint" && next() < 0.35) lines.push(option(key));
    if (next() < 0.97) lines.push(option(next() < 0.8 ? "secret" : "secfile"));
  }
  return `${lines.join("\n")}\n`;
}

test("generated clients.conf files read as the reference's Client.config_parser reads them", { skip: oracleMissing() }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-clients-diff-"));
  try {
    writeFileSync(join(dir, "secret"), Buffer.from([1, 2, 3, 0xfe]));
    const env = { ...process.env, MANDOS_CONFIG_TEST: dir };
    const next = random(0x636c6e74);
    const files = Array.from({ length: 300 }, () => generateClients(next));
    const answer = askOracle({ clients: files }, env);
    if (answer.clients.every((c) => c === null)) {
      t.skip("/usr/sbin/mandos is not installed");
      return;
    }
    let errors = 0;
    files.forEach((text, i) => {
      const expected = answer.clients[i];
      const label = `generated file ${i}:\n${text}`;
      let actual;
      try {
        actual = parseClientsConfig(text, "clients.conf", { env });
      } catch (error) {
        assert.ok(error instanceof ConfigError, `${label}\n${String(error)}`);
        assert.ok(expected !== null && "error" in expected, `${label}\nwe fail (${error.code}) where the reference does not`);
        errors++;
        return;
      }
      assert.ok(expected !== null && !("error" in expected), `${label}\nthe reference fails (${JSON.stringify(expected)}) where we do not`);
      assert.deepEqual(actual.map((c) => c.name), Object.keys(expected), label);
      for (const client of actual) {
        const py = expected[client.name] as Record<string, unknown>;
        assert.deepEqual(
          {
            host: client.host, approved_by_default: client.approvedByDefault, enabled: client.enabled, key_id: client.keyId,
            fingerprint: client.fingerprint, secret: client.secret.toString("hex"), timeout: client.timeout,
            extended_timeout: client.extendedTimeout, interval: client.interval, approval_delay: client.approvalDelay,
            approval_duration: client.approvalDuration, checker_command: client.checker,
          },
          {
            host: py["host"], approved_by_default: py["approved_by_default"], enabled: py["enabled"], key_id: py["key_id"],
            fingerprint: py["fingerprint"], secret: py["secret"], timeout: py["timeout"], extended_timeout: py["extended_timeout"],
            interval: py["interval"], approval_delay: py["approval_delay"], approval_duration: py["approval_duration"],
            checker_command: py["checker_command"],
          },
          `${label}\nclient ${client.name}`,
        );
      }
    });
    // The generator must exercise both outcomes.
    assert.ok(errors > 30 && errors < 270, `${errors} of 300 files failed`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
