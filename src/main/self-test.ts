// --check: the reference runs its doctests; we run a short self-test of our
// own pieces and print a summary. More checks (built-in config parse, an
// in-process TLS handshake) join through `extraChecks` once they are wired.

import { createHash } from "node:crypto";
import { EMPTY_KEY_ID, normaliseKeyId } from "./client-settings.js";
import { syslogDatagram } from "./syslog.js";

export interface SelfCheck {
  name: string;
  run(): Promise<void> | void;
}

function expectEqual(actual: unknown, expected: unknown, what: string): void {
  if (actual !== expected) throw new Error(`${what}: got ${String(actual)}, expected ${String(expected)}`);
}

export const BUILTIN_CHECKS: readonly SelfCheck[] = [
  {
    // Key IDs are SHA-256 of the SubjectPublicKeyInfo; the empty input's is a known answer.
    name: "key ID hash known answer",
    run: () => expectEqual(createHash("sha256").update(Buffer.alloc(0)).digest("hex").toUpperCase(), EMPTY_KEY_ID, "SHA-256()"),
  },
  {
    name: "key ID normalisation",
    run: () => expectEqual(normaliseKeyId(" ab cd\tEF "), "ABCDEF", "normaliseKeyId"),
  },
  {
    name: "syslog record format",
    run: () => expectEqual(syslogDatagram("WARNING", "x", "Mandos", 7).toString("latin1"), "<28>Mandos [7]: WARNING: x\0", "syslogDatagram"),
  },
];

export async function runSelfTest(extraChecks: readonly SelfCheck[] = [],
  out: NodeJS.WritableStream = process.stdout): Promise<boolean> {
  let failed = 0;
  const checks = [...BUILTIN_CHECKS, ...extraChecks];
  for (const check of checks) {
    try {
      await check.run();
      out.write(`ok   ${check.name}\n`);
    } catch (err) {
      failed += 1;
      out.write(`FAIL ${check.name}: ${(err as Error).message}\n`);
    }
  }
  out.write(`${checks.length - failed}/${checks.length} self-checks passed\n`);
  return failed === 0;
}
