// The state file is read as root at start-up: a symbolic link is not
// followed, a file others may write or that a stranger owns is refused, and
// no warning ever quotes the file's bytes. (Found by review: a state file
// linked to a root-only file had its first bytes logged in the parse error.)

import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, chownSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readState } from "../src/main/state/state-file.js";
import { silentLogger } from "../src/main/daemon/log.js";

const SECRET = "root-only-bytes-4f1c9a";

function scratch(t: { after(fn: () => void): void }): { dir: string; warnings: string[]; logger: typeof silentLogger } {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-state-trust-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const warnings: string[] = [];
  return { dir, warnings, logger: { ...silentLogger, warning: (m: string) => void warnings.push(m) } };
}

test("a state file that is a symbolic link is not followed, and nothing of its target is logged", (t) => {
  const { dir, warnings, logger } = scratch(t);
  const target = join(dir, "shadow");
  writeFileSync(target, `${SECRET}\n`, { mode: 0o600 });
  symlinkSync(target, join(dir, "clients.json"));
  assert.equal(readState(join(dir, "clients.json"), logger), null);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /clients\.json: it is a symbolic link, which is not followed/);
  assert.doesNotMatch(warnings.join("\n"), new RegExp(SECRET));
});

test("a state file that is not JSON is refused without quoting it", (t) => {
  const { dir, warnings, logger } = scratch(t);
  const path = join(dir, "clients.json");
  writeFileSync(path, `${SECRET} is not JSON`, { mode: 0o600 });
  assert.equal(readState(path, logger), null);
  assert.match(warnings[0]!, /clients\.json: not valid JSON; starting from clients\.conf$/);
  assert.doesNotMatch(warnings.join("\n"), new RegExp(SECRET));
});

test("a state file others may write is refused", (t) => {
  const { dir, warnings, logger } = scratch(t);
  const path = join(dir, "clients.json");
  writeFileSync(path, '{"format":"mandos-ts-state","version":1,"clients":{}}');
  chmodSync(path, 0o666);
  assert.equal(readState(path, logger), null);
  assert.match(warnings[0]!, /writable by others \(mode 666\)/);
  chmodSync(path, 0o600);
  assert.notEqual(readState(path, logger), null);
});

test("a state file owned by a stranger is refused; by the server's user it is read", { skip: process.getuid?.() !== 0 ? "needs root (chown)" : false }, (t) => {
  const { dir, warnings, logger } = scratch(t);
  const path = join(dir, "clients.json");
  writeFileSync(path, '{"format":"mandos-ts-state","version":1,"clients":{}}', { mode: 0o600 });
  chownSync(path, 12345, 12345);
  assert.equal(readState(path, logger), null);
  assert.match(warnings[0]!, /owned by uid 12345, not by root or the server's user/);
  assert.notEqual(readState(path, logger, [12345]), null);
});

// Found by running the migration against crafted state directories: the
// pickle was read with none of these checks, and the unpickler's errors
// quoted what it read ("refusing global <first line> <second line>").
test("the reference's clients.pickle, read when migrating, gets the same care", async (t) => {
  const { migrateReferenceState } = await import("../src/main/state/pickle-import.js");
  const { dir, warnings, logger } = scratch(t);
  const target = join(dir, "shadow");
  // A GLOBAL opcode's two lines are the first bytes an unpickler would quote.
  writeFileSync(target, `c${SECRET}\nsecond-line\n`, { mode: 0o600 });
  const pickle = join(dir, "clients.pickle");
  symlinkSync(target, pickle);
  const ours = join(dir, "clients.json");
  assert.deepEqual(await migrateReferenceState(dir, ours, [], 0, logger), { state: null });
  assert.match(warnings[0]!, /clients\.pickle: it is a symbolic link, which is not followed; starting from clients\.conf$/);
  // The same bytes in a file of its own: refused by the unpickler, still unquoted.
  rmSync(pickle);
  writeFileSync(pickle, `c${SECRET}\nsecond-line\n`, { mode: 0o600 });
  assert.deepEqual(await migrateReferenceState(dir, ours, [], 0, logger), { state: null });
  assert.match(warnings[1]!, /clients\.pickle: refusing global \(not a Python name\); starting from clients\.conf$/);
  chmodSync(pickle, 0o666);
  await migrateReferenceState(dir, ours, [], 0, logger);
  assert.match(warnings[2]!, /writable by others \(mode 666\)/);
  assert.doesNotMatch(warnings.join("\n"), new RegExp(SECRET));
  // No pickle: nothing to migrate, nothing said.
  rmSync(pickle);
  assert.equal(await migrateReferenceState(dir, ours, [], 0, logger), null);
  assert.equal(warnings.length, 3);
});
