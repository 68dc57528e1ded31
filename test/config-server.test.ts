// mandos.conf (src/main/config/server-config.ts): the reference's defaults, typed settings
// marked as set in the file, interpolation, and bad values or bytes refused by line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../src/main/config/errors.js";
import { DEFAULT_PRIORITY, loadServerConfig, parseServerConfig } from "../src/main/config/server-config.js";

test("a missing mandos.conf gives the reference's defaults", () => {
  const config = loadServerConfig("/nonexistent/mandos.conf");
  assert.equal(config.found, false);
  assert.deepEqual(config.settings, {
    interface: "", address: "", port: undefined, debug: false, priority: DEFAULT_PRIORITY, servicename: "Mandos",
    useDbus: true, useIpv6: true, debuglevel: "", restore: true, socket: undefined, statedir: "/var/lib/mandos",
    foreground: false, zeroconf: true, maxPerSource: undefined,
    // Ours, not the reference's (docs/OBSERVABILITY.md): off.
    metrics: "", auditLog: "", auditSyslog: false,
    // Ours, not the reference's: the shared registry (docs/ETCD.md), off.
    etcd: "", etcdPrefix: "", etcdCa: "", etcdCert: "", etcdKey: "", etcdUser: "", etcdPasswordFile: "",
  });
  assert.equal(config.setInFile.size, 0);
});

test("the observability options are read from the file and marked as set there", () => {
  const config = parseServerConfig("[DEFAULT]\nmetrics = [::1]:9100\naudit_log = /var/log/mandos/audit.jsonl\naudit_syslog = yes\n", "mandos.conf");
  assert.equal(config.settings.metrics, "[::1]:9100");
  assert.equal(config.settings.auditLog, "/var/log/mandos/audit.jsonl");
  assert.equal(config.settings.auditSyslog, true);
  assert.deepEqual([...config.setInFile].sort(), ["auditLog", "auditSyslog", "metrics"]);
});

test("settings in the file are typed and marked as set there", () => {
  const text = "[DEFAULT]\ninterface = eth0\nport = 1234\nuse_dbus = no\nzeroconf: off\nservicename = Mandos %(port)s %%\nstatedir = /tmp/x\n";
  const config = parseServerConfig(text, "mandos.conf");
  assert.equal(config.settings.interface, "eth0");
  assert.equal(config.settings.port, 1234);
  assert.equal(config.settings.useDbus, false);
  assert.equal(config.settings.zeroconf, false);
  assert.equal(config.settings.servicename, "Mandos %(port)s %%", "the reference takes strings raw, uninterpolated");
  assert.equal(config.settings.statedir, "/tmp/x");
  assert.deepEqual([...config.setInFile].sort(), ["interface", "port", "servicename", "statedir", "useDbus", "zeroconf"]);
});

test("booleans and integers are interpolated, and bad ones fail with their line", () => {
  assert.equal(parseServerConfig("[DEFAULT]\nyes = true\ndebug = %(yes)s\n", "m.conf").settings.debug, true);
  assert.throws(() => parseServerConfig("[DEFAULT]\n\nport = eighty\n", "m.conf"), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, "CONFIG_BAD_INTEGER");
    assert.equal(error.line, 3);
    assert.equal(error.key, "port");
    return true;
  });
  assert.throws(() => parseServerConfig("[DEFAULT]\nuse_ipv6 = sometimes\n", "m.conf"), { code: "CONFIG_BAD_BOOLEAN" });
  // Out of range: the reference fails only at bind(), naming nothing; here the line.
  assert.throws(() => parseServerConfig("[DEFAULT]\nport = 99999\n", "m.conf"), {
    code: "CONFIG_BAD_INTEGER",
    message: 'm.conf:2 [DEFAULT] key "port": not a port number (0 to 65535): 99999',
  });
  assert.equal(parseServerConfig("[DEFAULT]\nport = 21_110\n", "m.conf").settings.port, 21110, "Python's int() reads underscores");
  assert.throws(() => parseServerConfig("port = 1\n", "m.conf"), { code: "CONFIG_MISSING_SECTION_HEADER" });
});

test("a mandos.conf that is not UTF-8 is refused naming the line of the first bad byte", async (t) => {
  const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-conf-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "mandos.conf");
  writeFileSync(path, Buffer.concat([Buffer.from("[DEFAULT]\nport = 1\nservicename = M"), Buffer.from([0xe9]), Buffer.from("\n")]));
  assert.throws(() => loadServerConfig(path), { code: "CONFIG_UNREADABLE", message: `${path}:3: not valid UTF-8` });
});

test("debuglevel takes every name the reference's getattr(logging, ...) does", async () => {
  const { mergeSettings } = await import("../src/main/config/server-settings.js");
  const level = (name: string): string =>
    mergeSettings({ check: false, configdir: "" }, { debuglevel: name, zeroconf: true }, { priority: DEFAULT_PRIORITY, workers: 0, maxPerSource: 0 }).debuglevel;
  assert.deepEqual(["info", "Warn", "FATAL", "notset", "error", "critical"].map(level), ["INFO", "WARNING", "CRITICAL", "WARNING", "ERROR", "CRITICAL"]);
  assert.throws(() => level("verbose"), /unknown debug level "verbose"/);
});
