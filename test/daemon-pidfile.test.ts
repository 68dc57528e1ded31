// The pid file (src/main/daemon/pidfile.ts): where it goes, what it holds, when it goes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PidFile, defaultPidFilePath } from "../src/main/daemon/pidfile.js";
import { PidFileError } from "../src/main/daemon/errors.js";

function scratch(): string {
  return mkdtempSync(join(tmpdir(), "mandos-pid-"));
}

test("the pid file is /run/mandos.pid, or /var/run/mandos.pid without /run", (t) => {
  const dir = scratch();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, "run"));
  assert.equal(defaultPidFilePath(join(dir, "run"), join(dir, "var/run")), join(dir, "run/mandos.pid"));
  assert.equal(defaultPidFilePath(join(dir, "none"), join(dir, "var/run")), join(dir, "var/run/mandos.pid"));
});

test("opened early, it holds the pid and a newline once written, and goes at exit", (t) => {
  const dir = scratch();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "mandos.pid");
  const pidFile = PidFile.open(path);
  assert.equal(readFileSync(path, "utf8"), "", "created empty when opened");
  pidFile.write(4242);
  assert.equal(readFileSync(path, "utf8"), "4242\n");
  assert.equal(statSync(path).mode & 0o022, 0, "not writable by group or others");
  pidFile.remove();
  assert.equal(existsSync(path), false);
});

test("an unopenable pid file is an error with a stable code", () => {
  assert.throws(
    () => PidFile.open("/nonexistent/dir/mandos.pid"),
    (err: unknown) => err instanceof PidFileError && err.code === "MANDOS_PIDFILE" &&
      err.message === "Could not open file '/nonexistent/dir/mandos.pid': No such file or directory",
  );
});
