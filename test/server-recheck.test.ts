// mandos.conf at SIGHUP (src/main/config/server-recheck.ts): a file that
// the server read at start and cannot read now is said with why and what
// to do, once until it reads again (logrotate's weekly reload would repeat
// it). Mode 0600 root, with a server that has dropped root, is in
// reload-mandos-conf.test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCommandLine } from "../src/main/config/cli.js";
import { loadServerConfig } from "../src/main/config/server-config.js";
import { ServerConfigRecheck } from "../src/main/config/server-recheck.js";
import { silentLogger, type Logger } from "../src/main/daemon/log.js";

const DEFAULTS = { priority: "NORMAL:+CTYPE-RAWPK", workers: 0, maxPerSource: 128, serveThreads: 0 };

test("mandos.conf gone: said with the reason and what to do, once until it reads again", (t) => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-recheck-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const path = join(root, "mandos.conf");
  writeFileSync(path, "[DEFAULT]\nservicename = Before\n");
  const parsed = parseCommandLine(["--port", "1"]);
  assert.equal(parsed.kind, "run");
  if (parsed.kind !== "run") return;
  const recheck = new ServerConfigRecheck(path, parsed.options, DEFAULTS, loadServerConfig(path));
  const warnings: string[] = [];
  const logger: Logger = { ...silentLogger, warning: (m) => void warnings.push(m) };

  renameSync(path, `${path}.moved`);
  recheck.check(logger);
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0], `${path} cannot be read now (No such file or directory); the server goes on with the settings it started with; ` +
    "put it back: a restart without it would run with the defaults (said once until it can be read again)");
  // The next SIGHUPs, the file still gone: nothing more.
  recheck.check(logger);
  recheck.check(logger);
  assert.equal(warnings.length, 1);
  // Back, as at start: nothing; gone again: said again.
  renameSync(`${path}.moved`, path);
  recheck.check(logger);
  assert.equal(warnings.length, 1);
  rmSync(path);
  recheck.check(logger);
  assert.equal(warnings.length, 2);
  assert.match(warnings[1]!, /cannot be read now \(No such file or directory\)/);
  // Another reason while unreadable is said too: a directory there.
  mkdirSync(path);
  recheck.check(logger);
  assert.equal(warnings.length, 3);
  assert.match(warnings[2]!, /cannot be read now \(Is a directory\); the server goes on with the settings it started with \(said once/);
});
