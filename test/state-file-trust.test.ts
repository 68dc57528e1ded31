// The state file is read as root at start-up: a symbolic link is not
// followed, a file others may write or that a stranger owns is refused, and
// no message ever quotes the file's bytes. (Found by review: a state file
// linked to a root-only file had its first bytes logged in the parse error.)
// A file refused stops the start, naming the path, the reason and what to
// do: read as none, clients disabled or removed at run time would come back
// (docs/STATE.md).

import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, chownSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NOT_STARTED, readState } from "../src/main/state/state-file.js";
import { silentLogger } from "../src/main/daemon/log.js";

const SECRET = "root-only-bytes-4f1c9a";

/** readState's error for `path` refused for `reason` (a pattern), after which the admin is told what to do. */
function refused(path: string, reason: string): RegExp {
  const quote = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^Could not load persistent state from ${quote(path)}: ${reason}; ${quote(NOT_STARTED)} \\(the file is then replaced\\)$`);
}

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
  const path = join(dir, "clients.json");
  symlinkSync(target, path);
  assert.throws(() => readState(path, logger), (error: Error) => {
    assert.match(error.message, refused(path, "it is a symbolic link, which is not followed"));
    assert.doesNotMatch(error.message, new RegExp(SECRET));
    return true;
  });
  assert.deepEqual(warnings, []);
});

test("a state file that is not JSON is refused without quoting it", (t) => {
  const { dir, warnings, logger } = scratch(t);
  const path = join(dir, "clients.json");
  writeFileSync(path, `${SECRET} is not JSON`, { mode: 0o600 });
  assert.throws(() => readState(path, logger), (error: Error) => {
    assert.match(error.message, refused(path, "not valid JSON"));
    assert.doesNotMatch(error.message, new RegExp(SECRET));
    return true;
  });
  assert.deepEqual(warnings, []);
});

test("a state file others may write is refused", (t) => {
  const { dir, warnings, logger } = scratch(t);
  const path = join(dir, "clients.json");
  writeFileSync(path, '{"format":"mandos-ts-state","version":1,"clients":{}}');
  chmodSync(path, 0o666);
  assert.throws(() => readState(path, logger), { message: refused(path, "writable by others \\(mode 666\\)") });
  chmodSync(path, 0o600);
  assert.notEqual(readState(path, logger), null);
  assert.deepEqual(warnings, []);
});

test("a state file owned by a stranger is refused; by the server's user it is read", { skip: process.getuid?.() !== 0 ? "needs root (chown)" : false }, (t) => {
  const { dir, warnings, logger } = scratch(t);
  const path = join(dir, "clients.json");
  writeFileSync(path, '{"format":"mandos-ts-state","version":1,"clients":{}}', { mode: 0o600 });
  chownSync(path, 12345, 12345);
  assert.throws(() => readState(path, logger), { message: refused(path, "owned by uid 12345, not by root or the server's user") });
  assert.notEqual(readState(path, logger, [12345]), null);
  assert.deepEqual(warnings, []);
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
  const stops = async (reason: string): Promise<void> => {
    await assert.rejects(migrateReferenceState(dir, ours, null, [], 0, logger), (error: Error) => {
      assert.match(error.message, new RegExp(`^Could not import the Python server's state from ${pickle}: ${reason}; not started, `));
      assert.match(error.message, /--no-restore/);
      assert.doesNotMatch(error.message, new RegExp(SECRET));
      return true;
    });
  };
  await stops("it is a symbolic link, which is not followed");
  // The same bytes in a file of its own: refused by the unpickler, still unquoted.
  rmSync(pickle);
  writeFileSync(pickle, `c${SECRET}\nsecond-line\n`, { mode: 0o600 });
  await stops("refusing global \\(not a Python name\\)");
  chmodSync(pickle, 0o666);
  await stops("writable by others \\(mode 666\\)");
  // An empty pickle is what the reference also reads as none (EOFError): a warning and a fresh start.
  writeFileSync(pickle, "", { mode: 0o600 });
  chmodSync(pickle, 0o600);
  assert.deepEqual(await migrateReferenceState(dir, ours, null, [], 0, logger), { state: null, pickleSha256: createHash("sha256").update("").digest("hex") });
  assert.deepEqual(warnings, [`Could not import the Python server's state from ${pickle}: the file is empty; starting from clients.conf`]);
  // No pickle: nothing to migrate, nothing said.
  rmSync(pickle);
  assert.deepEqual(await migrateReferenceState(dir, ours, null, [], 0, logger), { state: null, pickleSha256: null });
  assert.equal(warnings.length, 1);
});
