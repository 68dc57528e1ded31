// The tarball `npm pack` makes, as an admin deploys it to a fleet of Mandos
// servers: it holds the built server, its production dependencies and the
// built addon, and none of the tests; it installs with `npm install -g`
// where there is neither a registry nor a compiler; the server it installs
// serves the real mandos-client, and its mandos-keygen makes keys. And the
// addon's build script (scripts/build-addon.sh, the package's install
// script) keeps the addon it finds only when built from the same sources
// and loadable.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { REPO, run, runMandosClient, startServer } from "./helpers/server.js";

interface PackageJson {
  readonly dependencies: Record<string, string>;
  readonly devDependencies: Record<string, string>;
}
const PACKAGE = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as PackageJson;
const ADDON = "build/Release/mandos_datagram.node";
const STAMP = "build/Release/mandos_datagram.sources-sha256";

let scratch = "";
let tarball = "";
let listing: readonly string[] = [];

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), "mandos-ts-pack-"));
  // The server drops root to _mandos, which must still read its own code.
  chmodSync(scratch, 0o755);
  // The checkout is built (npm test compiled it; npm ci built the addon),
  // so its pack scripts (the same two builds) are skipped.
  const packed = await run("npm", ["pack", "--ignore-scripts", "--pack-destination", scratch], 120_000, {}, REPO);
  assert.equal(packed.code, 0, packed.stderr);
  const name = readdirSync(scratch).find((entry) => entry.endsWith(".tgz"));
  assert.ok(name, packed.stdout.toString());
  tarball = join(scratch, name);
  const listed = await run("tar", ["-tzf", tarball]);
  assert.equal(listed.code, 0, listed.stderr);
  listing = listed.stdout.toString().split("\n").filter((line) => line !== "").map((line) => line.replace(/^package\//, ""));
});
after(() => rmSync(scratch, { recursive: true, force: true }));

test("npm pack: the tarball holds the built server, its dependencies and addon, and no test", () => {
  const files = new Set(listing);
  for (const file of [
    "bin/mandos", "bin/mandos-keygen", "bin/mandos-ts-client", "dist/src/main/main.js",
    "dist/src/workers/handshake-entry.cjs", "dist/src/workers/serve.js", "dist/src/workers/checker-host.js", "dist/src/build.json",
    ADDON, STAMP, "src/native/datagram.c", "binding.gyp", "scripts/build-addon.sh",
    "scripts/install-service.sh", "contrib/systemd/mandos.service", "contrib/default/mandos",
    "contrib/dbus/mandos-ts.conf", "example/mandos.conf", "example/clients.conf", "README.md", "COPYING",
  ]) assert.ok(files.has(file), `${file} is in the tarball`);
  // Every production dependency rides along (bundled), as npm ci installed it.
  for (const name of Object.keys(PACKAGE.dependencies)) {
    assert.ok(files.has(`node_modules/${name}/package.json`), `${name} is bundled`);
  }
  // (@types/node is also protobufjs's dependency, through etcd3's gRPC.)
  for (const name of Object.keys(PACKAGE.devDependencies).filter((dev) => dev !== "@types/node")) {
    assert.ok(!files.has(`node_modules/${name}/package.json`), `the dev tool ${name} is not`);
  }
  const strays = listing.filter((file) =>
    /^(dist\/(test|bench)|test|bench|src\/(main|tls|workers))\//.test(file) || /^dist\/.*\.map$/.test(file) || file === "package-lock.json");
  assert.deepEqual(strays, [], "no tests, benchmarks, TypeScript sources or source maps");
});

test(
  "the tarball installs with no registry and no compiler, and its server serves mandos-client",
  { skip: missing(MANDOS_CLIENT), timeout: 240_000 },
  async () => {
    const prefix = join(scratch, "npm");
    // --offline with an empty cache: nothing can come from a registry or
    // from this machine's npm cache. No C compiler: the packed addon stays.
    const installed = await run(
      "npm",
      ["install", "-g", "--offline", "--cache", join(scratch, "cache"), "--prefix", prefix, "--no-audit", "--no-fund", tarball],
      180_000,
      { CC: "/nonexistent/cc" },
    );
    assert.equal(installed.code, 0, installed.stderr);
    const home = join(prefix, "lib/node_modules/mandos-ts");
    assert.deepEqual(readFileSync(join(home, ADDON)), readFileSync(join(REPO, ADDON)), "the packed addon, not rebuilt");
    const bin = join(prefix, "bin/mandos");
    const version = await run(bin, ["--version"]);
    // Stamped as npm pack built it (its prepare script): the build a running server checks what it loads against.
    const stamp = JSON.parse(readFileSync(join(REPO, "dist/src/build.json"), "utf8")) as { version: string; build: string };
    assert.match(stamp.build, /^[0-9a-f]{12}$/);
    assert.equal(version.stdout.toString() + version.stderr, `mandos 1.8.16 (mandos-ts ${stamp.version}, build ${stamp.build})\n`);
    // Its mandos-keygen, with the bundled OpenPGP.js, makes a key set.
    const keys = join(scratch, "keys");
    mkdirSync(keys);
    const keygen = await run(join(prefix, "bin/mandos-keygen"), ["--dir", keys], 60_000);
    assert.equal(keygen.code, 0, keygen.stderr);
    assert.deepEqual(readdirSync(keys).sort(), ["pubkey.txt", "seckey.txt", "tls-privkey.pem", "tls-pubkey.pem"]);
    const check = await run(bin, ["--check", "--configdir", join(home, "example")]);
    assert.match(check.stdout.toString(), /^ok: the datagram addon \(syslog, systemd\) loads on this Node\.js$/m);

    // Its example configuration, served by the installed copy.
    const state = join(scratch, "state");
    mkdirSync(state);
    const server = await startServer(["--configdir", join(home, "example"), "--statedir", state, "--port", "0"], {}, { bin, keepClientsConfPrivate: true });
    try {
      const served = await runMandosClient(join(home, "example/client"), "::1", server.port);
      assert.equal(served.code, 0, served.stderr);
      assert.equal(served.stdout.toString(), readFileSync(join(REPO, "example/client/password"), "utf8"));
      assert.doesNotMatch(server.log(), /addon does not load/);
      // Its install script made the example's secrets file private, as npm ci does in a checkout.
      assert.doesNotMatch(server.log(), /readable by all users/);
      assert.equal(statSync(join(home, "example/clients.conf")).mode & 0o777, 0o600);
    } finally {
      await server.stop();
    }

    // The installed copy's own service installer finds its unit.
    const root = join(scratch, "root");
    const service = await run("sh", [join(home, "scripts/install-service.sh")], 60_000, { DESTDIR: root, npm_config_prefix: prefix });
    assert.equal(service.code, 0, service.stderr);
    assert.match(readFileSync(join(root, "etc/systemd/system/mandos.service"), "utf8"), new RegExp(`^ExecStart=${bin} --foreground `, "m"));
  },
);

test("the addon's build keeps an addon of the same sources that loads, and builds any other", { timeout: 120_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-addon-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (const entry of ["package.json", "binding.gyp", "scripts/build-addon.sh", "src/native", ADDON, STAMP]) {
    cpSync(join(REPO, entry), join(root, entry), { recursive: true });
  }
  const build = async (): Promise<boolean> => {
    const result = await run("npm", ["run", "install"], 90_000, {}, root);
    assert.equal(result.code, 0, result.stderr);
    return /gyp info ok/.test(result.stdout.toString() + result.stderr);
  };
  const stamp = (): string => readFileSync(join(root, STAMP), "utf8");

  assert.equal(await build(), false, "built from these sources and loads: kept");
  assert.equal(existsSync(join(root, "build/Release/obj.target")), false);

  const first = stamp();
  writeFileSync(join(root, "src/native/datagram.c"), "/* changed */\n", { flag: "a" });
  assert.equal(await build(), true, "its source changed: built");
  assert.notEqual(stamp(), first);
  assert.equal(await build(), false, "and then kept");

  writeFileSync(join(root, ADDON), "not an ELF object\n");
  assert.equal(await build(), true, "does not load: built");
  assert.equal(await build(), false);
});
