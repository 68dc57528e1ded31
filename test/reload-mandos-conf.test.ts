// A SIGHUP re-reads clients.conf only; the reference quits at SIGHUP and so
// takes a new mandos.conf when systemd starts it again. Ours says, at
// SIGHUP, that mandos.conf changed and needs a restart (naming what
// changed), or that the new file is broken (naming file, line and key),
// and changes nothing.

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hangUp, startServer, type RunningServer } from "./helpers/server.js";

const RELOADED = /Reloaded clients\.conf: /;

/** The server started on `text` as mandos.conf, stopped and cleaned up after the test. */
async function startWith(t: TestContext, text: string): Promise<{ server: RunningServer; mandosConf: string; since: (mark: number) => string }> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-reload-conf-"));
  const conf = join(root, "conf");
  const state = join(root, "state");
  mkdirSync(conf);
  mkdirSync(state);
  const mandosConf = join(conf, "mandos.conf");
  writeFileSync(mandosConf, text);
  writeFileSync(join(conf, "clients.conf"), "", { mode: 0o600 });
  const server = await startServer(["--configdir", conf, "--statedir", state, "--port", "0", "--address", "::1"]);
  t.after(async () => {
    await server.stop();
    rmSync(root, { recursive: true, force: true });
  });
  return { server, mandosConf, since: (mark) => server.log().slice(mark) };
}

test("SIGHUP: a changed mandos.conf is named as needing a restart, a broken one by file, line and key; neither is applied", async (t) => {
  const { server, mandosConf, since } = await startWith(t, "[DEFAULT]\nservicename = Before\nmax_per_source = 7\n");

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

// A file the server read at start and cannot read now (config/server-recheck.ts;
// test/server-recheck.test.ts for one removed).
test("mandos.conf 0600 root, the server run as another user: Permission denied, whom to open it to, once", { skip: process.getuid?.() !== 0 && "needs root (the server drops it)" }, async (t) => {
  const { server, mandosConf, since } = await startWith(t, "[DEFAULT]\nservicename = Before\n");

  chmodSync(mandosConf, 0o600); // root's, read at start before the drop
  let mark = server.log().length;
  await hangUp(server, RELOADED);
  assert.match(since(mark), new RegExp(`WARNING: ${mandosConf.replace(/[.]/g, "\\.")} cannot be read now \\(Permission denied\\); ` +
    "the server goes on with the settings it started with; make it readable by the user the server runs as \\(\\d+:\\d+\\), as Debian ships it \\(root:root 0644\\)"));
  mark = server.log().length;
  await hangUp(server, RELOADED);
  assert.doesNotMatch(since(mark), /mandos\.conf/);
  // Readable again: nothing to say; closed again: said again.
  chmodSync(mandosConf, 0o644);
  mark = server.log().length;
  await hangUp(server, RELOADED);
  assert.doesNotMatch(since(mark), /mandos\.conf/);
  chmodSync(mandosConf, 0o600);
  mark = server.log().length;
  await hangUp(server, RELOADED);
  assert.match(since(mark), /cannot be read now \(Permission denied\)/);
});

test("mandos.conf replaced by a FIFO: refused as not a regular file at SIGHUP, where reading it held the server for ever", async (t) => {
  const { server, mandosConf, since } = await startWith(t, "[DEFAULT]\nservicename = Before\n");
  rmSync(mandosConf);
  execFileSync("mkfifo", [mandosConf]);
  const mark = server.log().length;
  await hangUp(server, RELOADED);
  assert.match(since(mark), new RegExp(`WARNING: ${mandosConf.replace(/[.]/g, "\\.")} cannot be read now \\(a FIFO, not a regular file\\); the server goes on with the settings it started with`));
  assert.equal(server.process.exitCode, null);
});
