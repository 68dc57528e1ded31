// The server on the Node.js releases an operator may run it on besides this
// machine's (package.json "engines"): Node 24 and 26 refuse the way Node 20 and 22
// import raw X25519 keys, and every handshake failed there
// (src/tls/crypto.ts, MONTGOMERY_IMPORTS). For each runtime that
// scripts/install-test-runtimes.sh fetched (run by `npm test`), a copy of
// the build beside that runtime's own dependencies runs the test files below
// under it: they start bin/mandos with the runtime running them, against the
// real peers (mandos-client, gnutls-cli, mandos-ctl, etcd), with this
// machine's build of our addon, as an upgrade of Node.js leaves it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { copyBuild, fetchedRuntime, RUNTIME_MAJORS } from "../bench/runtimes.js";
import { receiveDatagrams } from "./helpers/datagram-receiver.js";
import { oneClientConfig } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { BIN_MANDOS, REPO, run, runMandosClient, startServer } from "./helpers/server.js";

/**
 * What runs under each: the engine's primitives and known answers, a real
 * GnuTLS peer, both protocol generations with the real mandos-client, our
 * datagram addon as this machine built it, worker and serve threads, D-Bus with mandos-ctl,
 * signals and the state file, and the gRPC link to etcd.
 */
const FILES = [
  "tls-key-shares", "tls-rfc8448", "tls-gnutls", "tls12-known-answers", "tls12-openpgp-cert",
  "server-mandos-client", "server-legacy-clients", "syslog-datagram", "serve-threads",
  "dbus-mandos-ctl", "daemon-signals", "fleet-etcd-read",
];

test("the install script fetches the releases that are tested and measured", () => {
  const script = readFileSync(join(REPO, "scripts", "install-test-runtimes.sh"), "utf8");
  const list = /MANDOS_TS_TEST_NODES-([\d ]+)\}/.exec(script)?.[1]?.trim().split(/\s+/);
  assert.deepEqual(list, [...RUNTIME_MAJORS]);
});

for (const major of RUNTIME_MAJORS) {
  const runtime = fetchedRuntime(major);
  const skip = "missing" in runtime ? runtime.missing : false;

  test(`on Node ${major}, the server serves mandos-client, GnuTLS, mandos-ctl and etcd as on this machine's`, { skip, timeout: 900_000 }, async (t) => {
    if ("missing" in runtime) return;
    const { node, app } = runtime;
    copyBuild(runtime);
    assert.match(runtime.version, new RegExp(`^v${major}\\.`));
    const check = await run(node, [join(app, "bin", "mandos"), "--check", "--no-dbus", "--configdir", join(app, "example"), "--statedir", join(app, "state")]);
    assert.equal(check.code, 0, `mandos --check on Node ${major}:\n${check.stdout.toString()}${check.stderr}`);
    const files = FILES.map((f) => join(app, "dist", "test", `${f}.test.js`));
    const suite = await run(
      node, ["--test", "--test-concurrency=1", "--test-reporter=spec", ...files], 840_000,
      // Not as a test file's child: node:test tells its files so through
      // NODE_TEST_CONTEXT, and a runner that inherits it reports to us in
      // its binary form instead of running as one of its own.
      { PATH: `${join(node, "..")}:${process.env.PATH ?? ""}`, NODE_TEST_CONTEXT: undefined }, app,
    );
    const out = suite.stdout.toString();
    const summary = (name: string): number => Number(new RegExp(`^ℹ ${name} (\\d+)$`, "m").exec(out)?.[1] ?? NaN);
    assert.equal(suite.code, 0, `the tests on Node ${major} failed:\n${out.slice(-8_000)}${suite.stderr.slice(-2_000)}`);
    assert.equal(summary("fail"), 0);
    t.diagnostic(`${runtime.version}: ${summary("pass")} passed, ${summary("skipped")} skipped`);
    // Skipped peers would make this test pass on nothing.
    assert.ok(summary("pass") >= 30, `only ${summary("pass")} tests passed on Node ${major}:\n${out.slice(-4_000)}`);
  });
}

// An admin who upgrades Node.js (a Debian release upgrade) and does not run
// npm again keeps this checkout's addon, built by the release before.
// unix-dgram (nan) stopped loading there: no syslog, and under Type=notify
// no READY=1, so systemd restarted the server every 90 s. Ours is
// Node-API only and must go on loading: --check passes, systemd hears.
const thisMajor = Number(/^v(\d+)\./.exec(process.version)?.[1]);
const other = RUNTIME_MAJORS.filter((m) => Number(m) > thisMajor).map((m) => fetchedRuntime(m)).find((r) => !("missing" in r));
test(
  "after an upgrade of Node.js without a rebuild, the addon still loads: --check passes and systemd hears READY=1",
  { skip: other === undefined || "missing" in other ? "no fetched Node.js of a later release (scripts/install-test-runtimes.sh)" : missing(MANDOS_CLIENT, MANDOS_KEYGEN), timeout: 120_000 },
  async () => {
    if (other === undefined || "missing" in other) return;
    const check = await run(other.node, [BIN_MANDOS, "--check"]);
    assert.equal(check.code, 0, check.stdout.toString());
    assert.match(check.stdout.toString(), /^ok: the datagram addon \(syslog, systemd\) loads on this Node\.js$/m);

    const root = mkdtempSync(join(tmpdir(), "mandos-ts-upgrade-"));
    try {
      const { client, conf } = oneClientConfig(root);
      const notify = join(root, "notify");
      const systemd = await receiveDatagrams(notify);
      // The server has dropped to _mandos by the time it is ready.
      chmodSync(notify, 0o777);
      chmodSync(root, 0o755);
      const server = await startServer(
        ["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::1"],
        { NOTIFY_SOCKET: notify },
        { node: other.node },
      );
      try {
        await systemd.heard("READY=1");
        const served = await runMandosClient(client.dir, "::1", server.port);
        assert.equal(served.code, 0, served.stderr);
        assert.equal(served.stdout.toString("utf8"), client.password);
        await server.waitForLog(/Sending secret to /);
        assert.doesNotMatch(server.log(), /addon does not load/);
        await server.stop();
        await systemd.heard("STOPPING=1");
      } finally {
        await server.stop();
        await systemd.close();
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);

// Without a compiler, npm ci stops at the addon's build: in one line that
// says what is missing and what installs it, before node-gyp's traces.
test("the addon's build names what is missing when there is no C compiler", async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-nocc-"));
  try {
    for (const entry of ["package.json", "binding.gyp", "scripts", "src/native"]) cpSync(join(REPO, entry), join(root, entry), { recursive: true });
    const build = await run("npm", ["run", "install"], 60_000, { CC: "/nonexistent/cc" }, root);
    assert.notEqual(build.code, 0);
    assert.match(build.stderr,
      /^mandos-ts: building its addon \(syslog, systemd notifications\) needs a C compiler \(\/nonexistent\/cc\): on Debian, apt install build-essential python3$/m);
    assert.equal(existsSync(join(root, "build")), false, "node-gyp never ran");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

// An installation where node-gyp could not build the addon (no compiler)
// must still serve: without syslog or systemd's notifications, saying once
// what it goes without and how to build it, and --check must fail on it.
test(
  "an installation whose addon was never built serves without syslog and says how to build it",
  { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN), timeout: 120_000 },
  async () => {
    const root = mkdtempSync(join(tmpdir(), "mandos-ts-unbuilt-"));
    try {
      // This checkout's build without its build/ directory.
      const install = join(root, "install");
      for (const dir of ["dist", "bin"]) cpSync(join(REPO, dir), join(install, dir), { recursive: true });
      for (const entry of ["node_modules", "package.json", "example"]) symlinkSync(join(REPO, entry), join(install, entry));
      chmodSync(root, 0o755);
      const bin = join(install, "bin", "mandos");
      const rebuild = new RegExp(
        `the datagram addon does not load on Node\\.js ${process.version.replace(/\./g, "\\.")} \\(Cannot find module '${install}/build/Release/mandos_datagram\\.node'\\); ` +
        `run "npm rebuild" in ${install} \\(it needs a C compiler: Debian's build-essential\\)`,
      );
      const check = await run(process.execPath, [bin, "--check"]);
      assert.equal(check.code, 1, check.stdout.toString());
      assert.match(check.stdout.toString(), new RegExp(`^FAILED: the datagram addon \\(syslog, systemd\\) loads on this Node\\.js: ${rebuild.source}$`, "m"));
      assert.match(check.stdout.toString(), /^4 passed, 1 failed$/m);

      const { client, conf } = oneClientConfig(root);
      const server = await startServer(
        ["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0", "--address", "::1"],
        { NOTIFY_SOCKET: join(root, "notify") },
        { bin },
      );
      try {
        const served = await runMandosClient(client.dir, "::1", server.port);
        assert.equal(served.code, 0, served.stderr);
        assert.equal(served.stdout.toString("utf8"), client.password);
        await server.waitForLog(/Sending secret to /);
        const log = server.log();
        // The reason once, then each further loss once.
        assert.equal(log.match(/the datagram addon does not load on/g)?.length, 1, log);
        assert.match(log, new RegExp(`${rebuild.source}; until then, no syslog$`, "m"));
        assert.match(log, /^Mandos \[\d+\]: the datagram addon does not load \(see above\), so also no systemd notifications; under Type=notify, systemd times the start out/m);
      } finally {
        await server.stop();
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);
