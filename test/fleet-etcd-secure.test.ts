// A fleet on a secured etcd (issue 15, docs/ETCD.md "Securing etcd"): a
// real one-member etcd with TLS on its client URL and client certificates
// demanded, then one with password authentication and a user limited to
// the fleet's prefix. Our servers (one set up on the command line, one in
// mandos.conf) share state through it, watched by the real mandos-ctl;
// `--check` says whether etcd answers, and why not; a server with the
// wrong CA or password starts degraded and still gives the real
// mandos-client its secret; the password is never printed. Keys and
// certificates are made for the test (openssl) in its own directory.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { DBUS_DAEMON, DBUS_SEND, makeFleetRoot, mandosCtl, openToServerUser, startPrivateBus, waitForBusName, propertiesSeen, type Fleet, type PrivateBus } from "./helpers/dbus.js";
import { etcdMissing, serversRegistered, startEtcdCluster, type EtcdCluster } from "./helpers/etcd.js";
import { makeEtcdPki, OPENSSL, type EtcdPki } from "./helpers/etcd-pki.js";
import { MANDOS_CLIENT, MANDOS_CTL, missing } from "./helpers/peers.js";
import { BIN_MANDOS, run, runMandosClient, startServer, type RunningServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const PREFIX = "/mandos-secure-test/";

interface Member {
  readonly bus: PrivateBus;
  readonly server: RunningServer;
}

/** A copy of the fleet's configuration in `dir`, with `mandosConf` as its mandos.conf. */
function confWith(fleet: Fleet, dir: string, mandosConf: Record<string, string>): string {
  cpSync(fleet.conf, dir, { recursive: true });
  writeFileSync(join(dir, "mandos.conf"), ["[DEFAULT]", ...Object.entries(mandosConf).map(([k, v]) => `${k} = ${v}`), ""].join("\n"));
  return dir;
}

/** Our server on a private bus of its own, serving `conf` with the extra `args` (the etcd options, or none when mandos.conf has them). */
async function startMember(conf: string, state: string, args: readonly string[]): Promise<Member> {
  const bus = await startPrivateBus();
  mkdirSync(state, { recursive: true });
  openToServerUser(conf, state);
  const server = await startServer(
    ["--configdir", conf, "--statedir", state, "--no-restore", "--port", "0", "--address", "::1", ...args],
    { DBUS_SYSTEM_BUS_ADDRESS: bus.address },
    { dbus: true },
  );
  await waitForBusName(bus.address);
  return { bus, server };
}

/** Waits until `client`'s properties on `m` satisfy `pred`; fails with the last ones seen. */
function seen(m: Member, client: string, pred: (p: Record<string, unknown>) => boolean, what: string): Promise<void> {
  return propertiesSeen(m.bus.address, client, pred, what);
}

async function ctl(m: Member, ...args: string[]): Promise<void> {
  const r = await mandosCtl(m.bus.address, ...args);
  assert.equal(r.code, 0, `mandos-ctl ${args.join(" ")}: ${r.stderr}`);
}

/** `mandos --check`'s standard output with `args`, and the environment `env`. */
async function check(conf: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await run(process.execPath, [BIN_MANDOS, "--check", "--configdir", conf, ...args], 30_000, env);
  return r.stdout.toString("utf8") + r.stderr;
}

/** A server whose link to etcd fails: it says so, and why, and still serves. */
async function assertServesDegraded(server: RunningServer, fleet: Fleet, why: RegExp): Promise<void> {
  await server.waitForLog(/etcd unreachable .*DEGRADED/);
  await server.waitForLog(why);
  const alpha = fleet.clients.find((c) => c.name === "alpha")!;
  const r = await runMandosClient(alpha.dir, "::1", server.port, 20_000);
  assert.ok(r.stdout.length > 0, `no secret from a degraded server: ${r.stderr.slice(-500)}`);
}

/**
 * A and B act as one through etcd: a Host set through A shows on B and in
 * etcd (read by `cluster`'s etcdctl), alpha disabled through B shows on A
 * (alpha stays disabled), both hold their leases, and neither is degraded.
 */
async function assertSharing(a: Member, b: Member, cluster: EtcdCluster, host: string): Promise<void> {
  await ctl(a, "--host", host, "delta");
  await seen(b, "delta", (p) => p.Host === host, "A's change on B");
  await ctl(b, "--disable", "alpha");
  await seen(a, "alpha", (p) => p.Enabled === false, "B's change on A");
  const stored = new RegExp(`clients/delta/Host\\n\\{"value":"${host.replace(/\./g, "\\.")}"`);
  await eventually(async () => stored.test(await cluster.dump(PREFIX)), { what: "delta's Host in etcd" });
  await serversRegistered(cluster, PREFIX, 2);
  for (const m of [a, b]) assert.doesNotMatch(m.server.log(), /DEGRADED/);
}

const skip = etcdMissing() || missing(OPENSSL, DBUS_DAEMON, DBUS_SEND, MANDOS_CTL, MANDOS_CLIENT);

describe("a fleet on etcd over TLS, with client certificates (which log in as their CN)", { skip }, () => {
  let root = "";
  let fleet: Fleet;
  let pki: EtcdPki;
  let cluster: EtcdCluster;
  const members: Member[] = [];
  const servers: RunningServer[] = [];
  const tlsArgs = (ca: string | null, withCert = true): string[] => [
    "--etcd", cluster.endpoints, "--etcd_prefix", PREFIX,
    ...(ca ? ["--etcd_ca", ca] : []),
    ...(withCert ? ["--etcd_cert", pki.clientCert, "--etcd_key", pki.clientKey] : []),
  ];

  before(async () => {
    ({ root, fleet } = makeFleetRoot("mandos-ts-fleet-tls-"));
    const dir = join(root, "pki");
    mkdirSync(dir);
    pki = await makeEtcdPki(dir);
    // As an admin keeps them: the key readable by root only (the server reads it before it drops privileges).
    chmodSync(pki.clientKey, 0o600);
    // Authentication on too: the servers log in by their certificate's CN, as the user whose role holds PREFIX.
    cluster = await startEtcdCluster(1, { tls: pki, auth: { rootPassword: randomBytes(9).toString("hex"), user: "mandos", password: randomBytes(9).toString("hex"), prefix: PREFIX } });
  });

  after(async () => {
    // Together: after an etcd restart a server takes seconds to exit (etcd3's sockets linger).
    await Promise.all([...members.map((m) => m.server.stop()), ...servers.map((s) => s.stop())]);
    for (const m of members) await m.bus.stop();
    await cluster?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("--check: reachable with etcd's CA and our certificate; unreachable, saying why, with the wrong CA or no client certificate", async () => {
    assert.match(await check(fleet.conf, tlsArgs(pki.ca)), /^ok: etcd reachable at https:\/\/\[::1\]:\d+$/m);
    assert.match(await check(fleet.conf, tlsArgs(pki.otherCa)), /^WARNING: etcd unreachable at https:.*: .*etcd's certificate is not signed by etcd_ca/m);
    assert.match(await check(fleet.conf, tlsArgs(pki.ca, false)), /^WARNING: etcd unreachable at https:.*: .*etcd refused the client certificate/m);
    // Logged in by the certificate's CN ("mandos"), limited to PREFIX: another prefix is refused.
    assert.match(await check(fleet.conf, [...tlsArgs(pki.ca), "--etcd_prefix", "/other-fleet/"]), /^WARNING: etcd unreachable at https:.*permission denied/m);
    // A certificate without its key would connect without a certificate: refused as settings.
    assert.match(await check(fleet.conf, [...tlsArgs(pki.ca, false), "--etcd_cert", pki.clientCert]), /^FAILED: settings: --etcd_cert: needs etcd_key$/m);
  });

  test("a client certificate without etcd_ca: etcd's certificate is checked against gRPC's default CAs, and our certificate is still sent", async () => {
    // The test's CA made gRPC's default for this process only.
    const out = await check(fleet.conf, tlsArgs(null), { GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: pki.ca });
    assert.match(out, /^ok: etcd reachable at https:/m);
  });

  test("two servers share state over TLS, one set up on the command line and one in mandos.conf; etcd holds it", async () => {
    const a = await startMember(fleet.conf, join(root, "state-a"), tlsArgs(pki.ca));
    members.push(a);
    const confB = confWith(fleet, join(root, "conf-b"), {
      etcd: cluster.endpoints, etcd_prefix: PREFIX, etcd_ca: pki.ca, etcd_cert: pki.clientCert, etcd_key: pki.clientKey,
    });
    assert.match(await check(confB, []), /^ok: etcd reachable at https:/m, "mandos.conf's etcd_ca, etcd_cert, etcd_key");
    const b = await startMember(confB, join(root, "state-b"), []);
    members.push(b);

    // Read with etcdctl and the same certificates.
    await assertSharing(a, b, cluster, "tls-a.example.org");
  });

  test("with the wrong CA, or no client certificate, a server starts degraded, says why, and still serves", async () => {
    const wrongCa = await startServer(["--configdir", fleet.conf, "--statedir", join(root, "state-c"), "--no-restore", "--port", "0", "--address", "::1", ...tlsArgs(pki.otherCa)]);
    servers.push(wrongCa);
    await assertServesDegraded(wrongCa, fleet, /etcd: TLS to https:.*etcd's certificate is not signed by etcd_ca/);
    const noCert = await startServer(["--configdir", fleet.conf, "--statedir", join(root, "state-d"), "--no-restore", "--port", "0", "--address", "::1", ...tlsArgs(pki.ca, false)]);
    servers.push(noCert);
    await noCert.waitForLog(/etcd unreachable .*DEGRADED/);
    await noCert.waitForLog(/etcd: TLS to https:.*etcd refused the client certificate/);
  });
});

describe("a fleet on etcd with password authentication", { skip }, () => {
  // Distinctive, so that any trace of them in a log or an output is found.
  const password = `pw-${randomBytes(9).toString("base64url")}`;
  const wrongPassword = `wrong-${randomBytes(9).toString("base64url")}`;
  let root = "";
  let fleet: Fleet;
  let cluster: EtcdCluster;
  let passwordFile = "";
  let wrongFile = "";
  const members: Member[] = [];
  const servers: RunningServer[] = [];
  const authArgs = (file: string): string[] => ["--etcd", cluster.endpoints, "--etcd_prefix", PREFIX, "--etcd_user", "mandos", "--etcd_password_file", file];
  const assertNoPassword = (text: string, where: string): void => {
    for (const p of [password, wrongPassword]) assert.ok(!text.includes(p), `a password in ${where}:\n${text}`);
  };

  before(async () => {
    ({ root, fleet } = makeFleetRoot("mandos-ts-fleet-auth-"));
    cluster = await startEtcdCluster(1, { auth: { rootPassword: randomBytes(9).toString("hex"), user: "mandos", password, prefix: PREFIX } });
    // As `echo PASSWORD > FILE` leaves it: one line, its newline, root only.
    passwordFile = join(root, "etcd-password");
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    wrongFile = join(root, "etcd-wrong-password");
    writeFileSync(wrongFile, `${wrongPassword}\n`, { mode: 0o600 });
  });

  after(async () => {
    // Together: after an etcd restart a server takes seconds to exit (etcd3's sockets linger).
    await Promise.all([...members.map((m) => m.server.stop()), ...servers.map((s) => s.stop())]);
    for (const m of members) await m.bus.stop();
    await cluster?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("--check: reachable with the password; with a wrong one it says authentication failed; no password printed", async () => {
    const good = await check(fleet.conf, authArgs(passwordFile));
    assert.match(good, /^ok: etcd reachable at http:\/\/\[::1\]:\d+$/m);
    assert.equal(await cluster.dump(PREFIX), "", "--check wrote to etcd");
    const bad = await check(fleet.conf, authArgs(wrongFile));
    assert.match(bad, /^WARNING: etcd unreachable at http:.*: .*authentication failed, invalid user ID or password/m);
    const missingFile = await check(fleet.conf, authArgs(join(root, "absent")));
    assert.match(missingFile, /^WARNING: etcd unreachable at .*: cannot read etcd_password_file .*absent: ENOENT/m);
    // The server itself refuses to start, saying the same.
    const started = await run(process.execPath, [BIN_MANDOS, "--debug", "--no-zeroconf", "--no-dbus", "--configdir", fleet.conf, "--statedir", join(root, "state-x"), "--no-restore", "--port", "0", "--address", "::1", ...authArgs(join(root, "absent"))], 30_000);
    assert.equal(started.code, 1);
    assert.match(started.stderr, /^mandos: cannot read etcd_password_file .*absent: ENOENT/m);
    // Another prefix than the role grants.
    const elsewhere = await check(fleet.conf, [...authArgs(passwordFile), "--etcd_prefix", "/other-fleet/"]);
    assert.match(elsewhere, /^WARNING: etcd unreachable at .*permission denied/m);
    for (const out of [good, bad, missingFile, elsewhere]) assertNoPassword(out, "--check's output");
  });

  test("two servers logged in as the prefix's user share state, watch and hold leases, and go on after etcd restarts; no password logged", async () => {
    const a = await startMember(fleet.conf, join(root, "state-a"), authArgs(passwordFile));
    members.push(a);
    const confB = confWith(fleet, join(root, "conf-b"), { etcd: cluster.endpoints, etcd_prefix: PREFIX, etcd_user: "mandos", etcd_password_file: passwordFile });
    const b = await startMember(confB, join(root, "state-b"), []);
    members.push(b);

    await assertSharing(a, b, cluster, "auth-a.example.org");

    // etcd forgets the tokens it gave on a restart: the servers must log in again.
    const member = cluster.members[0]!;
    await member.stop();
    member.start();
    await cluster.healthy();
    await ctl(a, "--host", "after-restart.example.org", "delta");
    await seen(b, "delta", (p) => p.Host === "after-restart.example.org", "A's change on B after etcd restarted");
    await ctl(b, "--enable", "alpha");
    await seen(a, "alpha", (p) => p.Enabled === true, "B's change on A after etcd restarted");
    await serversRegistered(cluster, PREFIX, 2);
    for (const [name, m] of [["A", a], ["B", b]] as const) assertNoPassword(m.server.log(), `${name}'s log`);
  });

  test("a user who may only read the prefix: --check and the server say permission denied; the server serves degraded and keeps no lease it cannot use", async () => {
    // An operator's slip: the role reads the fleet but may not write. The
    // server gets a lease, cannot bind its servers/ key to it, and tries
    // again every second.
    const steps = [
      ["role", "add", "mandos-reader"],
      ["role", "grant-permission", "mandos-reader", "read", "--prefix=true", PREFIX],
      ["user", "add", "mandos-reader", `--new-user-password=${password}`],
      ["user", "grant-role", "mandos-reader", "mandos-reader"],
    ];
    for (const step of steps) {
      const r = await cluster.ctl(step);
      assert.equal(r.code, 0, `etcdctl ${step.slice(0, 2).join(" ")}: ${r.stderr}`);
    }
    const leases = async (): Promise<number> => {
      const r = await cluster.ctl(["lease", "list"]);
      assert.equal(r.code, 0, `etcdctl lease list: ${r.stderr}`);
      return Number(/found (\d+) leases/.exec(r.stdout.toString())?.[1] ?? NaN);
    };
    const already = await leases();
    const args = ["--etcd", cluster.endpoints, "--etcd_prefix", PREFIX, "--etcd_user", "mandos-reader", "--etcd_password_file", passwordFile];
    assert.match(await check(fleet.conf, args), /^WARNING: etcd unreachable at .*permission denied/m);
    const server = await startServer(["--configdir", fleet.conf, "--statedir", join(root, "state-r"), "--no-restore", "--port", "0", "--address", "::1", ...args]);
    servers.push(server);
    await assertServesDegraded(server, fleet, /permission denied/);
    // Eight retries or more: without the revoke each left a lease kept alive.
    await new Promise((resolve) => setTimeout(resolve, 8_000));
    const held = (await leases()) - already;
    assert.ok(held <= 1, `the degraded server holds ${held} leases it cannot use`);
    assertNoPassword(server.log(), "the read-only server's log");
  });

  test("a wrong password: the server serves degraded, saying authentication failed, and never logs the password", async () => {
    const server = await startServer(["--configdir", fleet.conf, "--statedir", join(root, "state-c"), "--no-restore", "--port", "0", "--address", "::1", ...authArgs(wrongFile)]);
    servers.push(server);
    await assertServesDegraded(server, fleet, /authentication failed, invalid user ID or password/);
    assertNoPassword(server.log(), "the degraded server's log");
  });
});
