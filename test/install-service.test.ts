// scripts/install-service.sh: after `npm install -g` from this checkout, the
// systemd unit it installs starts our server, not the Python server of
// Debian's mandos package (/usr/sbin/mandos), and it leaves the admin's
// own /etc/default/mandos and the package's D-Bus policy as they are, but
// for one DAEMON= line naming ours, which Debian's init script runs.
// Into a scratch root (DESTDIR) and a scratch npm prefix, or a private
// mount namespace: nothing of the machine's own /etc or npm is touched.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { BIN_MANDOS, REPO, run } from "./helpers/server.js";

const SCRIPT = join(REPO, "scripts/install-service.sh");
const UNIT = readFileSync(join(REPO, "contrib/systemd/mandos.service"), "utf8");
/** systemd's unit checker (Debian's systemd package); it needs no running systemd. */
const SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze";

const execStart = (unit: string): string | undefined => /^ExecStart=(\S+)/m.exec(unit)?.[1];
/** What the script adds to /etc/default/mandos for Debian's /etc/init.d/mandos. */
const daemonLines = (bin: string): string => `# Our mandos, for /etc/init.d/mandos (set by mandos-ts's install-service.sh).\nDAEMON=${bin}\n`;

test("install-service.sh: the unit names our mandos where npm install -g put it", { timeout: 180_000 }, async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), "mandos-ts-install-"));
  t.after(() => rmSync(scratch, { recursive: true, force: true }));
  const prefix = join(scratch, "npm");
  const root = join(scratch, "root");
  // From this checkout, as the admin does (a folder installs as a link to
  // it; its scripts have run already, at npm ci).
  const installed = await run("npm", ["install", "-g", "--prefix", prefix, "--ignore-scripts", "--offline", "--no-audit", "--no-fund", REPO], 150_000);
  assert.equal(installed.code, 0, installed.stderr);

  const env = { DESTDIR: root, npm_config_prefix: prefix };
  const result = await run("sh", [SCRIPT], 60_000, env);
  assert.equal(result.code, 0, result.stderr);

  const unit = readFileSync(join(root, "etc/systemd/system/mandos.service"), "utf8");
  const bin = execStart(unit);
  assert.equal(bin, join(prefix, "bin/mandos"));
  // The same unit but for the program: its options and sandboxing as shipped.
  assert.equal(unit.replace(/^ExecStart=\S+/m, ""), UNIT.replace(/^ExecStart=\S+/m, ""));
  assert.match(unit, /^ExecStart=\S+ --foreground \$DAEMON_ARGS$/m);
  // systemd's own parser takes it: no line it would ignore, an ExecStart it can run.
  if (!missing(SYSTEMD_ANALYZE)) {
    const verify = await run(SYSTEMD_ANALYZE, ["verify", join(root, "etc/systemd/system/mandos.service")], 60_000);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal(verify.stderr.trim(), "", "systemd-analyze verify has nothing to say");
  }
  const version = await run(bin!, ["--version"]);
  assert.match(version.stdout.toString() + version.stderr, /^mandos 1\.8\.16 \(mandos-ts /);

  // The shipped defaults, and for Debian's init script a DAEMON= naming ours.
  assert.equal(readFileSync(join(root, "etc/default/mandos"), "utf8"), readFileSync(join(REPO, "contrib/default/mandos"), "utf8") + daemonLines(bin!));
  assert.equal(
    readFileSync(join(root, "etc/dbus-1/system.d/mandos-ts.conf"), "utf8"),
    readFileSync(join(REPO, "contrib/dbus/mandos-ts.conf"), "utf8"),
  );
  assert.doesNotMatch(result.stdout.toString(), /systemctl/, "with DESTDIR it names no systemctl step");

  // Run again over an admin's own defaults and the Debian package's policy:
  // both kept, and no second policy beside the package's.
  const again = join(scratch, "again");
  mkdirSync(join(again, "etc/default"), { recursive: true });
  mkdirSync(join(again, "etc/dbus-1/system.d"), { recursive: true });
  writeFileSync(join(again, "etc/default/mandos"), 'DAEMON_ARGS="--debuglevel INFO"\nDAEMON=/usr/sbin/mandos\n', { mode: 0o640 });
  writeFileSync(join(again, "etc/dbus-1/system.d/mandos.conf"), "<busconfig/>\n");
  const kept = await run("sh", [SCRIPT], 60_000, { ...env, DESTDIR: again });
  assert.equal(kept.code, 0, kept.stderr);
  // The admin's settings kept, its mode too; its DAEMON= now ours.
  assert.equal(readFileSync(join(again, "etc/default/mandos"), "utf8"), `DAEMON_ARGS="--debuglevel INFO"\n${daemonLines(bin!)}`);
  assert.equal(statSync(join(again, "etc/default/mandos")).mode & 0o777, 0o640);
  assert.match(kept.stdout.toString(), new RegExp(`^set DAEMON=${bin} in .*/etc/default/mandos \\(was: DAEMON=/usr/sbin/mandos\\)$`, "m"));
  // The package's version of the file, taken at its upgrade, has no DAEMON=.
  assert.match(kept.stdout.toString(), /^note: .*\/etc\/default\/mandos is a conffile of Debian's mandos package: .*keep your version/m);
  // A third run changes nothing.
  const third = await run("sh", [SCRIPT], 60_000, { ...env, DESTDIR: again });
  assert.equal(third.code, 0, third.stderr);
  assert.match(third.stdout.toString(), new RegExp(`^kept DAEMON=${bin} in `, "m"));
  assert.doesNotMatch(third.stdout.toString(), /conffile/, "the file unchanged, nothing to say of it");
  assert.equal(readFileSync(join(again, "etc/default/mandos"), "utf8"), `DAEMON_ARGS="--debuglevel INFO"\n${daemonLines(bin!)}`);
  assert.ok(!existsSync(join(again, "etc/dbus-1/system.d/mandos-ts.conf")));
  assert.equal(execStart(readFileSync(join(again, "etc/systemd/system/mandos.service"), "utf8")), join(prefix, "bin/mandos"));
});

test("install-service.sh with DESTDIR looks for our mandos where npm put it, not under DESTDIR", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-install-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  // npm's default global prefix (from node's path), which npm 11 puts under
  // $DESTDIR; a prefix configured otherwise it leaves alone.
  const defaultPrefix = { npm_config_prefix: undefined, PREFIX: undefined, MANDOS_BIN: undefined };
  const npmPrefix = await run("npm", ["prefix", "-g"], 60_000, { ...defaultPrefix, DESTDIR: undefined });
  assert.equal(npmPrefix.code, 0, npmPrefix.stderr);
  const prefix = npmPrefix.stdout.toString().trim();
  const result = await run("sh", [SCRIPT], 60_000, { ...defaultPrefix, DESTDIR: root });
  // Installed there or not (then the script stops), it is that mandos it names.
  const bin = `${prefix}/bin/mandos`.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  assert.match(result.stdout.toString() + result.stderr, new RegExp(`(ExecStart=|install-service: )${bin}[ )]`));
});

test("install-service.sh refuses a mandos that is not ours, and writes nothing", { skip: missing(MANDOS_REFERENCE) }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-install-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const result = await run("sh", [SCRIPT], 60_000, { DESTDIR: root, MANDOS_BIN: MANDOS_REFERENCE });
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /\/usr\/sbin\/mandos is not mandos-ts/);
  assert.ok(!existsSync(join(root, "etc")));
});

test("install-service.sh warns when the unit's sandbox would hide our mandos", async (t) => {
  // A stand-in that answers --version as ours does, under /tmp, which the
  // unit's PrivateTmp=yes replaces with an empty one.
  const scratch = mkdtempSync(join("/tmp", "mandos-ts-install-"));
  t.after(() => rmSync(scratch, { recursive: true, force: true }));
  const bin = join(scratch, "mandos");
  writeFileSync(bin, "#!/bin/sh\necho 'mandos 1.8.16 (mandos-ts 0.1.0)'\n", { mode: 0o755 });
  const result = await run("sh", [SCRIPT], 60_000, { DESTDIR: join(scratch, "root"), MANDOS_BIN: bin });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /warning: .*mandos-ts-install-.*\/mandos is .*, which the unit's PrivateTmp=yes hides: the service would not start/);
  assert.equal(execStart(readFileSync(join(scratch, "root/etc/systemd/system/mandos.service"), "utf8")), bin);
});

/** Where the script writes without DESTDIR; a private mount namespace lays an empty tmpfs over each, and over /run. */
const SYSTEM_DIRS = ["/etc/systemd/system", "/etc/default", "/etc/dbus-1/system.d"];
const ownMounts = process.getuid?.() !== 0 ? "needs root (a mount namespace)"
  : missing("/usr/bin/unshare") || (SYSTEM_DIRS.every((d) => existsSync(d)) ? false : `missing one of ${SYSTEM_DIRS.join(", ")}`);

test("install-service.sh says to restart mandos: enable --now would leave the package's Python server serving", { skip: ownMounts }, async () => {
  // Without DESTDIR, as the admin runs it, so that it says what to run
  // next: first where systemd runs (/run/systemd/system), then where not.
  const steps = [
    ...[...SYSTEM_DIRS, "/run"].map((d) => `mount -t tmpfs tmpfs ${d}`),
    "mkdir -p /run/systemd/system",
    `sh '${SCRIPT}'`,
    "echo ---",
    "rmdir /run/systemd/system",
    `sh '${SCRIPT}'`,
  ];
  const result = await run("unshare", ["--mount", "--propagation", "private", "sh", "-c", steps.join(" && ")], 60_000, { DESTDIR: undefined, MANDOS_BIN: BIN_MANDOS });
  assert.equal(result.code, 0, result.stderr);
  const [withSystemd, without] = result.stdout.toString().split("---\n");
  assert.match(withSystemd!, /^next: systemctl daemon-reload && systemctl enable mandos && systemctl restart mandos$/m);
  assert.doesNotMatch(withSystemd!, /--now/);
  assert.match(without!, /^next \(no systemd runs here\): \/etc\/init\.d\/mandos restart$/m);
});

test("the shipped unit does not start the Python server", () => {
  // Where Debian's npm installs ours; /usr/sbin/mandos is the mandos package's.
  assert.equal(execStart(UNIT), "/usr/local/bin/mandos");
});
