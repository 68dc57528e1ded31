// A SIGHUP re-reads clients.conf only; the reference quits at SIGHUP and so
// takes a new mandos.conf when systemd starts it again. Ours says, at
// SIGHUP, that mandos.conf changed and needs a restart (naming what
// changed), or that the new file is broken (naming file, line and key),
// and changes nothing.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hangUp, startServer } from "./helpers/server.js";

const RELOADED = /Reloaded clients\.conf: /;

test("SIGHUP: a changed mandos.conf is named as needing a restart, a broken one by file, line and key; neither is applied", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-reload-conf-"));
  const conf = join(root, "conf");
  const state = join(root, "state");
  mkdirSync(conf);
  mkdirSync(state);
  const mandosConf = join(conf, "mandos.conf");
  writeFileSync(mandosConf, "[DEFAULT]\nservicename = Before\nmax_per_source = 7\n");
  writeFileSync(join(conf, "clients.conf"), "", { mode: 0o600 });
  const server = await startServer(["--configdir", conf, "--statedir", state, "--port", "0", "--address", "::1"]);
  t.after(async () => {
    await server.stop();
    rmSync(root, { recursive: true, force: true });
  });
  const since = (mark: number): string => server.log().slice(mark);

  // Unchanged: nothing said about mandos.conf.
  let mark = server.log().length;
  await hangUp(server, RELOADED);
  assert.doesNotMatch(since(mark), /mandos\.conf/);

  // Changed (a comment and a reordering change nothing; two values do).
  writeFileSync(mandosConf, "[DEFAULT]\n# edited\nmax_per_source = 8\nservicename = Before\npriority = NORMAL:+CTYPE-RAWPK\n");
  mark = server.log().length;
  await hangUp(server, RELOADED);
  assert.match(since(mark), new RegExp(`WARNING.*${mandosConf.replace(/[.]/g, "\\.")} changed since start \\(priority, max_per_source\\).*restart the server to apply it`));

  // Broken, in its syntax or in a value checked after parsing: the error
  // a start would give, with file, line and key.
  for (const [line, key, why] of [["port = eighty", "port", "not an integer"], ["priority = NORMAL:+FOO", "priority", "bad priority string"]]) {
    writeFileSync(mandosConf, `[DEFAULT]\nservicename = Before\n${line}\n`);
    mark = server.log().length;
    await hangUp(server, RELOADED);
    assert.match(since(mark), new RegExp(`WARNING.*${mandosConf.replace(/[.]/g, "\\.")}:3 \\[DEFAULT\\] key "${key}": ${why}.*not applied`));
  }

  // Still serving, with what it started with: the listening port answers the next SIGHUP as before.
  assert.equal(server.process.exitCode, null);
  writeFileSync(mandosConf, "[DEFAULT]\nservicename = Before\nmax_per_source = 7\n");
  mark = server.log().length;
  await hangUp(server, RELOADED);
  assert.doesNotMatch(since(mark), /mandos\.conf/);
});
