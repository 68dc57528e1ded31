// When a start imports the Python server's clients.pickle beside our
// clients.json (src/main/state/pickle-import.ts, decideMigration): only a
// pickle the reference wrote after this server last saved, told by its
// bytes (not the one clients.json records) and its time together. Found
// by review: by time alone, a pickle copied back from a backup after
// clients.json replaced it, and brought back the clients disabled or
// removed under this server.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../src/main/daemon/log.js";
import { decideMigration } from "../src/main/state/pickle-import.js";
import type { StateFile } from "../src/main/state/state-file.js";

const sha = (data: string): string => createHash("sha256").update(data).digest("hex");
const ours = (importedPickle?: string): StateFile => ({ format: "mandos-ts-state", version: 1, saved: "2026-12-06T00:00:00.000Z", clients: {}, ...(importedPickle ? { importedPickle } : {}) });

function scratch(t: { after(fn: () => void): void }): { pickle: string; json: string; write(pickle: string, pickleAt: number, jsonAt: number): void } {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-pickle-decision-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pickle = join(dir, "clients.pickle");
  const json = join(dir, "clients.json");
  return {
    pickle,
    json,
    write(bytes, pickleAt, jsonAt) {
      writeFileSync(pickle, bytes, { mode: 0o600 });
      writeFileSync(json, "{}", { mode: 0o600 });
      utimesSync(pickle, pickleAt, pickleAt);
      utimesSync(json, jsonAt, jsonAt);
    },
  };
}

test("no clients.json: the pickle is imported, whatever its time", (t) => {
  const f = scratch(t);
  f.write("pickled", 1_000, 2_000);
  assert.deepEqual(decideMigration(f.pickle, join(f.pickle, "..", "absent.json"), null, []), { kind: "import", data: Buffer.from("pickled"), pickleSha256: sha("pickled"), replaces: false });
});

test("the pickle clients.json records, made newer (a backup copied back, a touch): kept, not imported", (t) => {
  const f = scratch(t);
  f.write("pickled", 2_000, 1_000);
  assert.deepEqual(decideMigration(f.pickle, f.json, ours(sha("pickled")), []), { kind: "keep", pickleSha256: sha("pickled") });
});

test("another pickle, newer than clients.json (the reference ran since): imported in its place", (t) => {
  const f = scratch(t);
  f.write("pickled again", 2_000, 1_000);
  const d = decideMigration(f.pickle, f.json, ours(sha("pickled")), []);
  assert.deepEqual(d, { kind: "import", data: Buffer.from("pickled again"), pickleSha256: sha("pickled again"), replaces: true });
});

test("another pickle, older than clients.json: kept, and recorded from now on", (t) => {
  const f = scratch(t);
  f.write("an old backup", 1_000, 2_000);
  assert.deepEqual(decideMigration(f.pickle, f.json, ours(sha("pickled")), []), { kind: "keep", pickleSha256: sha("an old backup") });
});

test("a clients.json from before the record: judged by time once, then recorded", (t) => {
  const f = scratch(t);
  f.write("pickled", 1_000, 2_000);
  assert.deepEqual(decideMigration(f.pickle, f.json, ours(), []), { kind: "keep", pickleSha256: sha("pickled") });
  f.write("pickled", 2_000, 1_000);
  assert.equal(decideMigration(f.pickle, f.json, ours(), []).kind, "import");
});

test("an empty or unreadable pickle beside clients.json is said and ignored; clients.json is restored", (t) => {
  const f = scratch(t);
  const warnings: string[] = [];
  const logger = { ...silentLogger, warning: (m: string) => void warnings.push(m) };
  f.write("", 2_000, 1_000);
  assert.deepEqual(decideMigration(f.pickle, f.json, ours(sha("pickled")), [], logger), { kind: "keep", pickleSha256: sha("pickled") });
  assert.deepEqual(warnings, [`${f.pickle} is empty: ignored, ${f.json} is restored`]);
  f.write("pickled again", 2_000, 1_000);
  chmodSync(f.pickle, 0o666);
  assert.deepEqual(decideMigration(f.pickle, f.json, ours(sha("pickled")), [], logger), { kind: "keep", pickleSha256: sha("pickled") });
  assert.match(warnings[1]!, /^Not comparing .*clients\.pickle with .*clients\.json, which is restored: writable by others \(mode 666\)$/);
  // With no clients.json, the same pickle stops the start.
  assert.equal(decideMigration(f.pickle, f.json, null, []).kind, "unreadable");
});
