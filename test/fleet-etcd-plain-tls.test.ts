// TLS asked of an etcd that serves plain http: `mandos --check` says the
// endpoint closed the connection during the handshake, and what turns TLS
// on, rather than that a handshake it never finished was over.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { makeFleetRoot, type Fleet } from "./helpers/dbus.js";
import { etcdForFile, etcdMissing } from "./helpers/etcd.js";
import { BIN_MANDOS, run } from "./helpers/server.js";

const skip = etcdMissing() ? "etcd is not installed" : false;
const cluster = etcdForFile();
let root = "";
let fleet: Fleet;

before(() => {
  ({ root, fleet } = makeFleetRoot("mandos-ts-fleet-plain-"));
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

test("https:// to a plain etcd, or http:// with etcd_ca: it says the handshake was cut short, and why", { skip }, async () => {
  const plain = cluster().endpoints.split(",")[0]!;
  const https = plain.replace(/^http:/, "https:");
  for (const args of [["--etcd", https], ["--etcd", plain, "--etcd_ca", "/etc/ssl/certs/ca-certificates.crt"]]) {
    const r = await run(process.execPath, [BIN_MANDOS, "--check", "--configdir", fleet.conf, "--etcd_prefix", "/plain-tls-test/", ...args], 30_000);
    const out = r.stdout.toString("utf8");
    assert.match(out, /^WARNING: etcd unreachable at .*; TLS to .*: the endpoint closed the connection during the TLS handshake: does etcd serve plain http:\/\/ there\?/m, out);
    assert.doesNotMatch(out, /after the TLS handshake/);
  }
});
