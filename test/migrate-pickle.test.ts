// Migration from the Python server: the real reference (/usr/sbin/mandos)
// serves a fleet, the real mandos-ctl changes its state (a client disabled,
// one removed, settings changed), the reference writes clients.pickle as it
// stops, and our server started on the same configuration and state
// directory shows mandos-ctl the state the reference itself restores from
// that pickle (started again on a copy of it), refuses the client disabled
// by hand and the one removed, and serves the others to the real
// mandos-client. Also: our unpickler against pickles Python itself writes.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { threadId } from "node:worker_threads";
import { join } from "node:path";
import { dumpJson, makeFleetRoot, mandosCtl, startOurServer, startPrivateBus, startReference, DBUS_DAEMON, type Fleet, type PrivateBus } from "./helpers/dbus.js";
import { GPG, MANDOS_CLIENT, MANDOS_CTL, MANDOS_KEYGEN, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { receiveDatagrams } from "./helpers/datagram-receiver.js";
import { REPO, run, runMandosClient, startServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";
import { PyDatetime, PyTimedelta, PyTuple, unpickle, type PyDict } from "../src/main/state/unpickle.js";
import { openReferenceSecrets, passwordEncode } from "../src/main/state/reference-secret.js";

const skip = missing(DBUS_DAEMON, MANDOS_CTL, MANDOS_KEYGEN, MANDOS_REFERENCE, MANDOS_CLIENT) ||
  (process.getuid?.() === 0 ? false : "needs root: the reference server must drop to _mandos");

/** Clients in the big pickle: enough that their opening takes a few seconds on 2 cores. */
const BIG = 48;
/** The big pickle's last client: the real client delta's key, and a secret set at run time (see SCALE_PICKLE). */
const LAST = `many0${BIG - 1}`;

/**
 * argv: the reference's pickle, a count, the pickle to write, a gpg home,
 * gpg, the real clients.conf, a real client's name. Writes a pickle of that
 * many copies of its client delta, named many000..., each with its own
 * secret sealed as PGPEngine.encrypt seals it (gpg --symmetric under
 * password_encode's passphrase), one in four disabled; prints their
 * clients.conf sections. The last one has the real client's key, and its
 * pickled secret is that client's real one while its clients.conf secret
 * is another: as if set with mandos-ctl --secret before the switch, so only
 * the opened secret unlocks it.
 */
const SCALE_PICKLE = `
import base64, binascii, configparser, copy, os, pickle, subprocess, sys
template, count, out, home, gpg, real_conf, real_name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
with open(template, "rb") as f:
    clients, settings = pickle.load(f)
model, model_settings = clients["delta"], settings["delta"]
real = configparser.RawConfigParser()
real.read(real_conf)
clients, settings, conf = {}, {}, []
for i in range(count):
    name = "many%03d" % i
    secret = os.urandom(48)
    fingerprint = binascii.hexlify(os.urandom(20)).decode().upper()
    key_id = binascii.hexlify(os.urandom(32)).decode()
    pickled = secret
    if i == count - 1:
        key_id, fingerprint = real.get(real_name, "key_id"), real.get(real_name, "fingerprint")
        pickled = base64.b64decode(real.get(real_name, "secret"))
    passphrase = os.path.join(home, "pass")
    with open(passphrase, "wb") as f:
        f.write(b"mandos" + binascii.hexlify(secret))
    sealed = subprocess.run([gpg, "--homedir", home, "--batch", "--quiet", "--symmetric", "--passphrase-file", passphrase, "--output", "-"],
                            input=pickled, stdout=subprocess.PIPE, check=True).stdout
    c = copy.deepcopy(model)
    c.update(name=name, fingerprint=fingerprint, key_id=key_id, encrypted_secret=sealed, enabled=(i % 4 != 0))
    clients[name] = c
    s = copy.deepcopy(model_settings)
    s.update(fingerprint=fingerprint, key_id=key_id, secret=secret)
    settings[name] = s
    conf.append("[%s]\\nkey_id = %s\\nfingerprint = %s\\nsecret = %s\\nhost = %s.example\\n" % (name, key_id, fingerprint, base64.b64encode(secret).decode(), name))
with open(out, "wb") as f:
    pickle.dump((clients, settings), f, protocol=2)
sys.stdout.write("".join(conf))
`;

/** --dump-json fields that hold a time, or that a checker run after the restart may change. */
const VOLATILE = new Set(["Created", "LastEnabled", "Expires", "LastCheckedOK", "LastCheckerStatus", "CheckerRunning"]);

function stable(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([k]) => !VOLATILE.has(k)));
}

describe("switching from the Python server: our server takes over its clients.pickle", { skip }, () => {
  let root = "";
  let fleet: Fleet;
  let bus: PrivateBus;
  let state = "";
  let before_: Record<string, Record<string, unknown>> = {};
  /** What the reference shows once started again on its own pickle: the oracle. */
  let restarted_: Record<string, Record<string, unknown>> = {};
  let pickle = Buffer.alloc(0);
  let ours: Awaited<ReturnType<typeof startOurServer>> | undefined;

  before(async () => {
    ({ root, fleet } = makeFleetRoot("mandos-ts-migrate-"));
    state = join(root, "state");
    mkdirSync(state);
    bus = await startPrivateBus();
    const reference = await startReference(fleet.conf, state, bus.address, true);
    try {
      for (const change of [
        ["--disable", "alpha"],
        ["--timeout", "PT7M", "delta"],
        ["--interval", "PT3M", "delta"],
        ["--approval-delay", "PT2S", "charlie"],
        ["--approve-by-default", "charlie"],
        ["--remove", "bravo"],
      ]) {
        const r = await mandosCtl(bus.address, ...change);
        assert.equal(r.code, 0, `mandos-ctl ${change.join(" ")}: ${r.stderr}`);
      }
      before_ = await dumpJson(bus.address);
    } finally {
      await reference.stop();
    }
    assert.ok(existsSync(join(state, "clients.pickle")), `the reference wrote no clients.pickle; its log:\n${reference.log().slice(-4000)}`);
    pickle = readFileSync(join(state, "clients.pickle"));
    // The reference restarted on a copy (it removes the pickle it reads).
    const copy = join(root, "state-reference-again");
    cpSync(state, copy, { recursive: true });
    const { uid, gid } = statSync(join(state, "clients.pickle"));
    chownSync(join(copy, "clients.pickle"), uid, gid);
    const again = await startReference(fleet.conf, copy, bus.address, true);
    try {
      restarted_ = await dumpJson(bus.address);
    } finally {
      await again.stop();
    }
    ours = await startOurServer(fleet.conf, state, bus.address, true);
  });

  after(async () => {
    await ours?.stop();
    await bus?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("the reference's changes were real (so the comparison below means something)", () => {
    assert.equal(before_.alpha!.Enabled, false);
    assert.equal(before_.delta!.Timeout, 420_000);
    assert.equal(before_.delta!.Interval, 180_000);
    assert.equal(before_.charlie!.ApprovalDelay, 2_000);
    assert.equal(before_.charlie!.ApprovedByDefault, true);
    assert.equal(before_.bravo, undefined);
    assert.deepEqual(Object.keys(restarted_).sort(), ["alpha", "charlie", "delta"], "the reference keeps bravo removed");
  });

  test("mandos-ctl --dump-json on ours shows the state the reference restores (timestamps aside)", async () => {
    const after_ = await dumpJson(bus.address);
    assert.deepEqual(Object.keys(after_).sort(), Object.keys(restarted_).sort());
    for (const name of Object.keys(restarted_)) {
      assert.deepEqual(stable(after_[name]!), stable(restarted_[name]!), `client ${name}`);
      // Set or not as the reference restores them (a disabled client has neither).
      for (const f of ["LastEnabled", "Expires"]) assert.equal(after_[name]![f] === "", restarted_[name]![f] === "", `${name}.${f}`);
    }
    assert.equal(String(after_.delta!.Created).slice(0, 23), String(before_.delta!.Created).slice(0, 23), "Created carried over, to the millisecond");
  });

  test("the import is logged, and the pickle is left as it was", () => {
    assert.match(ours!.log(), /Imported alpha from clients\.pickle: disabled, stored secret/);
    assert.match(ours!.log(), /Not importing bravo from clients\.pickle: removed at run time/);
    assert.match(ours!.log(), /Imported the Python server's state of 3 clients/);
    assert.deepEqual(readFileSync(join(state, "clients.pickle")), pickle);
  });

  test("mandos-keygen --import-pickle shows the same import as a dry run", async () => {
    const r = await run(process.execPath, [`${REPO}bin/mandos-keygen`, "--import-pickle", join(state, "clients.pickle"), "--clients-conf", join(fleet.conf, "clients.conf")]);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout.toString("utf8");
    assert.match(out, /^\[alpha\] disabled; from the pickle: enabled true -> false$/m);
    assert.match(out, /^\[delta\] enabled; from the pickle: timeout 300000 -> 420000, interval 120000 -> 180000$/m);
    assert.match(out, /^\[charlie\] enabled; from the pickle: approvalDelay 30000 -> 2000, approvedByDefault false -> true$/m);
    assert.match(out, /^\[bravo\] removed at run time \(mandos-ctl --remove\): stays removed while clients\.conf keeps its section$/m);
    assert.doesNotMatch(out, /secret =/);
    assert.deepEqual(readFileSync(join(state, "clients.pickle")), pickle);
  });

  test("the client disabled with mandos-ctl is refused", async () => {
    const alpha = fleet.clients.find((c) => c.name === "alpha")!;
    const r = await runMandosClient(alpha.dir, "::1", ours!.port, 4_000);
    assert.equal(r.stdout.length, 0);
    await ours!.waitForLog(/Client alpha is disabled/);
  });

  test("the client removed with mandos-ctl stays removed: refused as unknown", async () => {
    const bravo = fleet.clients.find((c) => c.name === "bravo")!;
    const r = await runMandosClient(bravo.dir, "::1", ours!.port, 4_000);
    assert.equal(r.stdout.length, 0);
    await ours!.waitForLog(/Client not found/);
  });

  test("a big fleet's pickle: served at once, each asking client's secret opened first, followed in systemd's status; a stop meanwhile keeps the rest sealed for the next start", async () => {
    // The reference's own pickle, its client delta copied as BIG clients,
    // each secret sealed by gpg as the reference's PGPEngine.encrypt seals
    // it; one in four disabled, so that the import shows in the state; the
    // last with the real delta's key and a pickled secret that differs from
    // its clients.conf secret.
    const big = join(root, "big");
    const bigConf = join(big, "conf");
    const bigState = join(big, "state");
    mkdirSync(bigConf, { recursive: true });
    mkdirSync(bigState);
    const home = mkdtempSync(join(tmpdir(), "mandos-ts-gpg-"));
    const template = join(big, "template.pickle");
    writeFileSync(template, pickle);
    const sections = execFileSync("python3", ["-c", SCALE_PICKLE, template, String(BIG), join(bigState, "clients.pickle"), home, GPG, join(fleet.conf, "clients.conf"), "delta"]).toString("utf8");
    execFileSync("gpgconf", ["--homedir", home, "--kill", "all"], { stdio: "ignore" });
    rmSync(home, { recursive: true, force: true });
    writeFileSync(join(bigConf, "mandos.conf"), "[DEFAULT]\n");
    writeFileSync(join(bigConf, "clients.conf"), sections, { mode: 0o600 });
    const { uid, gid } = statSync(join(state, "clients.pickle"));
    chownSync(join(bigState, "clients.pickle"), uid, gid);
    const delta = fleet.clients.find((c) => c.name === "delta")!;
    const notify = join(big, "notify");
    const rx = await receiveDatagrams(notify);
    chmodSync(notify, 0o777);
    const said = (): string[] => rx.received.map((b) => b.toString("utf8"));
    const args = ["--configdir", bigConf, "--statedir", bigState, "--port", "0", "--address", "::1"];
    const statePath = join(bigState, "clients.json");
    const check = async (): Promise<string> => {
      const r = await run(process.execPath, [`${REPO}bin/mandos`, "--check", "--configdir", bigConf, "--statedir", bigState]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.toString("utf8");
    };
    const stillSealed = (): string[] => {
      const file = JSON.parse(readFileSync(statePath, "utf8")) as { clients: Record<string, { referenceSecret?: string; secret?: string }> };
      return Object.entries(file.clients).filter(([, c]) => c.referenceSecret !== undefined).map(([name]) => name);
    };
    try {
      // Told ahead: what the first start imports, and how long it will open secrets while serving.
      assert.match(await check(), new RegExp(`^ok: the first start imports ${bigState}/clients\\.pickle: ${BIG} clients; it serves at once and opens their ${BIG} sealed secrets meanwhile, each asking client's first \\(about \\d+ (s|min) in all on \\d+ threads?, more while connections are served; one took \\d+ ms here\\)$`, "m"));

      // The dry run tells which secret the pickle holds is not clients.conf's (without printing either).
      const dry = await run(process.execPath, [`${REPO}bin/mandos-keygen`, "--import-pickle", join(bigState, "clients.pickle"), "--clients-conf", join(bigConf, "clients.conf")], 120_000);
      assert.equal(dry.code, 0, dry.stderr);
      const dryOut = dry.stdout.toString("utf8");
      assert.match(dryOut, new RegExp(`^\\[${LAST}\\] enabled; from the pickle: timeout 300000 -> 420000, interval 120000 -> 180000, secret \\(set at run time; not clients\\.conf's\\)$`, "m"));
      assert.match(dryOut, /^\[many001\] enabled; from the pickle: timeout 300000 -> 420000, interval 120000 -> 180000$/m);
      assert.ok(!dryOut.includes(delta.password), "the dry run printed a secret");

      // Stopped as the opening begins: a normal stop; the state file keeps the unopened secrets as the pickle sealed them.
      const first = await startServer(args, { NOTIFY_SOCKET: notify }, { startedWhen: new RegExp(`Opening the ${BIG} secrets the Python server sealed in clients\\.pickle`) });
      assert.equal(await first.stop(), 0, first.log());
      assert.match(first.log(), new RegExp(`Imported the Python server's state of ${BIG} clients`));
      assert.match(first.log(), /Imported many000 from clients\.pickle: disabled, stored secret, opened once serving/);
      assert.match(first.log(), /Imported many001 from clients\.pickle: enabled, stored secret, opened once serving/);
      assert.doesNotMatch(first.log(), new RegExp(`Opened the ${BIG} sealed secrets`));
      const sealedLeft = stillSealed();
      assert.ok(sealedLeft.length > 0 && sealedLeft.includes(LAST), `still sealed: ${sealedLeft.join(", ")}`);
      assert.ok(said().indexOf("READY=1") >= 0 && said().indexOf("READY=1") < said().findIndex((m) => m.startsWith("STATUS=Opening")), `READY=1 before the opening: ${said().join(" | ")}`);
      rx.received.length = 0;

      // Started again (clients.json now, no migration): serves at once; a
      // real mandos-client of the last client gets the pickled secret, its
      // opening moved ahead of the others'.
      const server = await startServer(args, { NOTIFY_SOCKET: notify });
      try {
        assert.doesNotMatch(server.log(), /Imported/, "no second migration: the state file carries the sealed secrets");
        const served = await runMandosClient(delta.dir, "::1", server.port, 30_000);
        assert.equal(served.stdout.toString("utf8"), delta.password, `mandos-client: ${served.stderr.slice(-2_000)}`);
        await server.waitForLog(new RegExp(`Opened the ${sealedLeft.length} sealed secrets in \\d+ s`), 60_000);
        assert.match(server.log(), new RegExp(`Opening the ${sealedLeft.length} secrets the Python server sealed in clients\\.pickle, on \\d+ threads?; clients are served meanwhile, each one's secret opened first as it asks`));
        const log = server.log();
        assert.ok(log.includes(`Opened ${LAST}'s sealed secret ahead of the others: a connection waits for it`), "the waiting client's secret went first");
        assert.ok(log.indexOf(`Sending secret to ${LAST}`) < log.indexOf(`Opened the ${sealedLeft.length} sealed secrets`), "served before the opening ended");
        await rx.heard("STATUS=");
        const messages = said();
        assert.equal(messages[0], "READY=1", "ready before the opening");
        assert.equal(messages[1], `STATUS=Opening the secrets sealed in clients.pickle: 0 of ${sealedLeft.length}`);
        const counts = messages.slice(1, messages.indexOf("STATUS=")).map((m) => Number(/: (\d+) of /.exec(m)?.[1]));
        assert.equal(counts.at(-1), sealedLeft.length);
        assert.deepEqual(counts, [...counts].sort((a, b) => a - b), "the count only rises");
      } finally {
        await server.stop();
      }
      assert.deepEqual(stillSealed(), [], "every secret open and stored as ours");
      assert.doesNotMatch(await check(), /clients\.pickle/, "nothing to import once clients.json is there");
      // The next start serves the opened secret from clients.json.
      const third = await startServer(args);
      try {
        assert.doesNotMatch(third.log(), /Opening the/);
        const again = await runMandosClient(delta.dir, "::1", third.port, 30_000);
        assert.equal(again.stdout.toString("utf8"), delta.password);
      } finally {
        await third.stop();
      }
    } finally {
      await rx.close();
    }
  });

  test("the others are served by the real mandos-client, with the secrets the pickle held", async () => {
    for (const name of ["delta", "charlie"]) {
      const c = fleet.clients.find((x) => x.name === name)!;
      const r = await runMandosClient(c.dir, "::1", ours!.port, 30_000);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      assert.equal(r.stdout.toString("utf8"), c.password, name);
    }
  });
});

// Found by an audit: an admin gone back to the Python server for a while
// and then to ours found ours on its old clients.json, the changes made
// under the reference lost without a word.
describe("back to the Python server and to ours again: the state of the server that ran last is kept", { skip }, () => {
  test("a clients.pickle newer than clients.json is imported again, in its place, and said; once saved, it is not imported again", async () => {
    const { root, fleet } = makeFleetRoot("mandos-ts-again-");
    const bus = await startPrivateBus();
    try {
      const state = join(root, "state");
      mkdirSync(state);
      const first = await startReference(fleet.conf, state, bus.address, true);
      await first.stop();
      const ours1 = await startOurServer(fleet.conf, state, bus.address, true);
      try {
        await ours1.waitForLog(/Imported the Python server's state of 4 clients/);
        await eventually(() => existsSync(join(state, "clients.json")), { what: "clients.json saved" });
      } finally {
        await ours1.stop();
      }
      // Back to the reference: it reads its old pickle, the admin disables alpha, it writes a new one as it stops.
      const reference = await startReference(fleet.conf, state, bus.address, true);
      try {
        const r = await mandosCtl(bus.address, "--disable", "alpha");
        assert.equal(r.code, 0, r.stderr);
      } finally {
        await reference.stop();
      }
      assert.ok(statSync(join(state, "clients.pickle")).mtimeMs > statSync(join(state, "clients.json")).mtimeMs);
      const check = await run(process.execPath, [`${REPO}bin/mandos`, "--check", "--configdir", fleet.conf, "--statedir", state]);
      assert.match(check.stdout.toString("utf8"), /^ok: the next start imports .*clients\.pickle in place of .*clients\.json \(the Python server ran after this one last saved\): 4 clients/m);
      const ours2 = await startOurServer(fleet.conf, state, bus.address, true);
      try {
        await ours2.waitForLog(/WARNING: .*clients\.pickle is newer than .*clients\.json and not the one imported before: the Python server ran after this one last saved; importing its state in place of clients\.json's/);
        await ours2.waitForLog(/WARNING: Clients whose state the Python server's replaces: alpha \(enabled -> disabled\)$/m);
        assert.equal((await dumpJson(bus.address)).alpha!.Enabled, false, "alpha, disabled under the reference");
        // Enabled here, and saved: the next start keeps this, not the pickle's.
        const r = await mandosCtl(bus.address, "--enable", "alpha");
        assert.equal(r.code, 0, r.stderr);
        const saved = statSync(join(state, "clients.json")).mtimeMs;
        await eventually(() => statSync(join(state, "clients.json")).mtimeMs > saved, { what: "the enable saved" });
      } finally {
        await ours2.stop();
      }
      const recorded = (JSON.parse(readFileSync(join(state, "clients.json"), "utf8")) as { importedPickle?: string }).importedPickle;
      assert.equal(recorded, createHash("sha256").update(readFileSync(join(state, "clients.pickle"))).digest("hex"), "clients.json records the pickle it replaced");
      // The same pickle made newer (a backup copied back, a touch): not the reference's doing, not imported.
      const later = Date.now() / 1000 + 60;
      utimesSync(join(state, "clients.pickle"), later, later);
      const ours3 = await startOurServer(fleet.conf, state, bus.address, true);
      try {
        assert.equal((await dumpJson(bus.address)).alpha!.Enabled, true, "alpha, enabled under ours");
        assert.doesNotMatch(ours3.log(), /Imported the Python server's state|is newer than/);
      } finally {
        await ours3.stop();
      }
    } finally {
      await bus.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("a pickle that cannot be imported", { skip: missing(MANDOS_KEYGEN) }, () => {
  // As the reference stops on a pickle it cannot read: a start from
  // clients.conf would bring back the clients disabled or removed under it.
  test("stops the start with a clear error, and is left alone; --check says so; --no-restore starts from clients.conf", async () => {
    const { root, fleet } = makeFleetRoot("mandos-ts-badpickle-");
    try {
      const state = join(root, "state");
      mkdirSync(state);
      const evil = execFileSync("python3", ["-c", "import pickle,os,sys; sys.stdout.buffer.write(pickle.dumps(os.system, protocol=2))"]);
      writeFileSync(join(state, "clients.pickle"), evil);
      const check = await run(process.execPath, [`${REPO}bin/mandos`, "--check", "--configdir", fleet.conf, "--statedir", state]);
      assert.notEqual(check.code, 0, "--check passed a start that stops");
      assert.match(check.stdout.toString("utf8"), /^FAILED: state: .*clients\.pickle cannot be imported \(refusing global posix system\): a start stops on it; move it, or start with --no-restore to begin from clients\.conf alone$/m);
      const start = await run(process.execPath, [`${REPO}bin/mandos`, "--foreground", "--no-dbus", "--no-zeroconf", "--configdir", fleet.conf, "--statedir", state, "--port", "0", "--address", "::1"], 20_000);
      assert.equal(start.code, 1, start.stderr);
      assert.match(start.stderr, /Could not import the Python server's state from .*clients\.pickle: refusing global posix system; not started, since starting without it would bring back the clients disabled or removed at run time: repair or move the file, or start with --no-restore to begin from clients\.conf/);
      assert.equal(existsSync(join(state, "clients.json")), false);
      const server = await startServer(["--configdir", fleet.conf, "--statedir", state, "--port", "0", "--address", "::1", "--no-restore"]);
      try {
        const delta = fleet.clients.find((c) => c.name === "delta")!;
        const r = await runMandosClient(delta.dir, "::1", server.port, 30_000);
        assert.equal(r.stdout.toString("utf8"), delta.password);
        assert.deepEqual(readFileSync(join(state, "clients.pickle")), evil, "left alone while serving");
      } finally {
        await server.stop();
      }
      // As the reference's stop replaces it with the state it leaves (docs/STATE.md).
      assert.match(server.log(), /clients\.pickle is not read, and is replaced as the server stops/);
      assert.ok(unpickle(readFileSync(join(state, "clients.pickle"))) instanceof PyTuple, "replaced by the state this server left");
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("the unpickler, against pickles Python writes", () => {
  const python = (code: string): Buffer => execFileSync("python3", ["-c", `import pickle,sys,datetime\n${code}`]);

  test("reads protocol 2 dicts, lists, tuples, bytes, datetimes and timedeltas, from Python 3 and in Python 2's form", () => {
    const data = python(
      "sys.stdout.buffer.write(pickle.dumps(({'a': {'when': datetime.datetime(2026, 11, 30, 4, 57, 28, 476283), " +
        "'for': datetime.timedelta(days=1, seconds=2, microseconds=3000), 'raw': b'\\x00\\xff', 'n': -2, 'big': 2**40, " +
        "'none': None, 'yes': True, 'l': ['x', 1]}}, {}), protocol=2))",
    );
    const v = unpickle(data);
    assert.ok(v instanceof PyTuple);
    const a = (v.items[0] as PyDict).get("a") as PyDict;
    assert.deepEqual(a.get("when"), new PyDatetime(Date.UTC(2026, 10, 30, 4, 57, 28, 476)));
    assert.deepEqual(a.get("for"), new PyTimedelta(86_400_000 + 2_003));
    assert.deepEqual(a.get("raw"), Buffer.from([0, 255]));
    assert.equal(a.get("n"), -2);
    assert.equal(a.get("big"), 2 ** 40);
    assert.equal(a.get("none"), null);
    assert.equal(a.get("yes"), true);
    assert.deepEqual(a.get("l"), ["x", 1]);
  });

  test("refuses globals other than the reference's, and objects it would have to build", () => {
    const system = python("import os; sys.stdout.buffer.write(pickle.dumps(os.system, protocol=2))");
    assert.throws(() => unpickle(system), { code: "PICKLE_UNSUPPORTED" });
    const obj = python("class C: pass\nsys.stdout.buffer.write(pickle.dumps(C(), protocol=2))");
    assert.throws(() => unpickle(obj), { code: "PICKLE_UNSUPPORTED" });
    assert.throws(() => unpickle(Buffer.from([0x80, 0x02, 0x7d])), { code: "PICKLE_UNSUPPORTED" });
  });

  test("the passphrase is the reference's password_encode", () => {
    assert.equal(passwordEncode(Buffer.from("ab")).toString(), "mandos6162");
    const long = Buffer.alloc(1100, 0x41);
    long[0] = 0x0a;
    long[1] = 0x5c;
    long[2] = 0;
    assert.equal(passwordEncode(long).toString("latin1"), `mandos\\n\\\\\\x00${"A".repeat(1097)}`);

    // Against the reference's three replaces (on latin1 text, as ours did
    // before), around the 2048-byte limit, with many bytes to escape.
    const replaces = (b: Buffer): string => `mandos${b.toString("latin1").replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\0/g, "\\x00")}`;
    for (const size of [1020, 1021, 1022, 1023, 5000]) {
      const b = randomBytes(size);
      for (let i = 0; i < size; i += 3) b[i] = [0x00, 0x0a, 0x5c][i % 9 / 3]!;
      const want = 6 + 2 * size <= 2048 ? `mandos${b.toString("hex")}` : replaces(b);
      assert.equal(passwordEncode(b).toString("latin1"), want, `${size} bytes`);
    }
  });

  // Found by session 56's secrets audit: as JS strings and regex replaces,
  // a 30 MB secret of NULs took the server's heap past 1 GB as it stopped
  // (no clients.pickle, no last save). Now in a 64 MB heap.
  test("the passphrase of a 30 MB secret of NULs is made outside the JS heap", () => {
    const module = new URL("../src/main/state/reference-secret.js", import.meta.url).href;
    const script = `import(${JSON.stringify(module)}).then(({ passwordEncode }) => { const p = passwordEncode(Buffer.alloc(30 * 2 ** 20)); process.stdout.write(String(p.length)); })`;
    const out = execFileSync(process.execPath, ["--max-old-space-size=64", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    assert.equal(out, String(6 + 4 * 30 * 2 ** 20));
  });
});

describe("the secrets a pickle holds, opened on every core", { skip: missing(GPG) }, () => {
  test("each opens as gpg sealed it, on worker threads, in order; a wrong passphrase gives null", async (t) => {
    const home = mkdtempSync(join(tmpdir(), "mandos-ts-gpg-"));
    t.after(() => {
      try { execFileSync("gpgconf", ["--homedir", home, "--kill", "all"], { stdio: "ignore" }); } catch { /* no agent */ }
      rmSync(home, { recursive: true, force: true });
    });
    const items = Array.from({ length: 6 }, (_, i) => {
      const configSecret = randomBytes(i === 5 ? 1100 : 48); // the last past password_encode's hex limit
      const plain = `secret number ${i}`;
      // As the reference's PGPEngine.encrypt seals it: gpg --symmetric, its passphrase password_encode's.
      const passphrase = join(home, `pass${i}`);
      writeFileSync(passphrase, passwordEncode(configSecret));
      const sealed = execFileSync(GPG, ["--homedir", home, "--batch", "--quiet", "--symmetric", "--passphrase-file", passphrase, "--output", "-"], { input: plain });
      return { sealed, configSecret: i === 2 ? randomBytes(48) : configSecret, plain: i === 2 ? null : plain };
    });
    const heard: string[] = [];
    const watch = { begin: (n: number, threads: number) => void heard.push(`${n} on ${threads}`), opened: (done: number, n: number) => void heard.push(`${done}/${n}`) };
    const opened = await openReferenceSecrets(items, 2, undefined, watch);
    assert.deepEqual(opened.map((o) => (o.secret ? Buffer.from(o.secret).toString() : null)), items.map((i) => i.plain));
    assert.deepEqual(heard, ["6 on 2", "1/6", "2/6", "3/6", "4/6", "5/6", "6/6"], "told as it begins and as each opens");
    const threads = new Set(opened.map((o) => o.threadId));
    assert.equal(threads.size, 2, "two worker threads shared the work");
    assert.ok(!threads.has(threadId), "none on the main thread");
    const none: string[] = [];
    assert.deepEqual(await openReferenceSecrets([], 2, undefined, { begin: () => void none.push("begin") }), []);
    assert.deepEqual(none, [], "no secrets: no opening to tell of");
    const here = await openReferenceSecrets(items.slice(0, 3), 1);
    assert.deepEqual(here.map((o) => o.threadId), [threadId, threadId, threadId]);
    assert.deepEqual(here.map((o) => (o.secret ? Buffer.from(o.secret).toString() : null)), items.slice(0, 3).map((i) => i.plain));
    // Workers that cannot load their files (a damaged installation): every secret opened here instead, none lost, nothing thrown.
    const unloadable = new URL("./helpers/unloadable-worker.cjs", import.meta.url);
    const fallen = await openReferenceSecrets(items, 2, unloadable);
    assert.deepEqual(fallen.map((o) => o.threadId), items.map(() => threadId));
    assert.deepEqual(fallen.map((o) => (o.secret ? Buffer.from(o.secret).toString() : null)), items.map((i) => i.plain));
  });
});
