// Our D-Bus service against the Python reference server (/usr/sbin/mandos),
// each on its own private system bus and serving the same fixed clients:
// what mandos-ctl shows (table, --verbose, --dump-json), the introspection
// XML, GetManagedObjects, and a property Set of the wrong type, compared;
// then, on a fresh pair, the signals each sends for the same changes.
//
// Ignored, because they legitimately differ between two servers started at
// different moments: Created and LastEnabled (each server's start time),
// Expires (start time + timeout). Everything else, including empty
// LastCheckedOK/LastApprovalRequest and LastCheckerStatus (-2 before any
// checker ran), must be equal. Each server runs a client's first checker at
// a random moment within its interval, so the fleet here has intervals of
// days: with the 2 minutes it had, the reference's checker now and then ran
// mid-test and its LastCheckedOK and LastCheckerStatus differed from ours.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  BUS_NAME, DBUS_DAEMON, DBUS_MONITOR, DBUS_SEND, dbusSend, dumpJson, introspectionFacts, makeFleetRoot, mandosCtl, parseTable,
  recordSignals, startOurServer, startPrivateBus, startReference, type Fleet, type PrivateBus, type ReferenceServer, type SignalRecorder,
} from "./helpers/dbus.js";
import { MANDOS_CTL, MANDOS_KEYGEN, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { REPO, type RunningServer } from "./helpers/server.js";

const noService = existsSync(join(REPO, "dist/src/main/dbus")) ? false : "D-Bus service not on this branch yet";
const skip = missing(DBUS_DAEMON, DBUS_SEND, DBUS_MONITOR, MANDOS_CTL, MANDOS_KEYGEN, MANDOS_REFERENCE) || noService ||
  (process.getuid?.() === 0 ? false : "needs root: the reference server must drop to _mandos");

/** --dump-json fields that hold a server-start-dependent timestamp. */
const TIMESTAMP_FIELDS = new Set(["Created", "LastEnabled", "Expires"]);
/** The same, as mandos-ctl's --verbose column headers. */
const TIMESTAMP_COLUMNS = new Set(["Created", "Last Enabled", "Expires"]);

function withoutKeys<T>(record: Record<string, T>, drop: Set<string>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).filter(([k]) => !drop.has(k)));
}

describe("our D-Bus service compared with the reference server", { skip }, () => {
  let root = "";
  let fleet: Fleet;
  let ourBus: PrivateBus;
  let refBus: PrivateBus;
  let ours: RunningServer;
  let reference: ReferenceServer;

  before(async () => {
    ({ root, fleet } = makeFleetRoot("mandos-ts-dbuscmp-", true));
    mkdirSync(join(root, "state-ref"));
    ourBus = await startPrivateBus();
    refBus = await startPrivateBus();
    ours = await startOurServer(fleet.conf, join(root, "state-ours"), ourBus.address);
    reference = await startReference(fleet.conf, join(root, "state-ref"), refBus.address);
  });

  after(async () => {
    await ours?.stop();
    await reference?.stop();
    await ourBus?.stop();
    await refBus?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const both = async <T>(f: (address: string) => Promise<T>): Promise<[T, T]> => [await f(ourBus.address), await f(refBus.address)];

  async function assertSameJson(): Promise<void> {
    const [a, b] = await both((address) => dumpJson(address));
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
    for (const name of Object.keys(b)) {
      assert.deepEqual(withoutKeys(a[name]!, TIMESTAMP_FIELDS), withoutKeys(b[name]!, TIMESTAMP_FIELDS), `client ${name}`);
      for (const f of TIMESTAMP_FIELDS) assert.equal(a[name]![f] === "", b[name]![f] === "", `${name}.${f} set on one server only`);
    }
  }

  test("mandos-ctl's table is the same", async () => {
    const [a, b] = await both((address) => mandosCtl(address));
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(a.stdout.split("\n")[0], b.stdout.split("\n")[0], "header line");
    const [ra, rb] = [parseTable(a.stdout), parseTable(b.stdout)];
    assert.deepEqual([...ra.keys()].sort(), [...rb.keys()].sort());
    for (const [name, row] of rb) assert.deepEqual(ra.get(name), row, `row ${name}`);
  });

  test("mandos-ctl --verbose is the same but for start-time timestamps", async () => {
    const [a, b] = await both((address) => mandosCtl(address, "--verbose"));
    assert.equal(a.code, 0, a.stderr);
    const [ra, rb] = [parseTable(a.stdout), parseTable(b.stdout)];
    assert.deepEqual([...ra.keys()].sort(), [...rb.keys()].sort());
    for (const [name, row] of rb) assert.deepEqual(withoutKeys(ra.get(name)!, TIMESTAMP_COLUMNS), withoutKeys(row, TIMESTAMP_COLUMNS), `row ${name}`);
  });

  test("mandos-ctl --dump-json is the same field by field but for start-time timestamps", async () => {
    await assertSameJson();
  });

  test("after the same mandos-ctl changes, --dump-json is still the same", async () => {
    const change = ["--disable", "--timeout", "PT9M", "--host", "elsewhere.example", "--approval-delay", "PT7S", "--deny-by-default", "alpha"];
    const [a, b] = await both((address) => mandosCtl(address, ...change));
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    await assertSameJson();
  });

  const introspect = async (address: string, path: string): Promise<string[]> => {
    const r = await dbusSend(address, `--dest=${BUS_NAME}`, path, "org.freedesktop.DBus.Introspectable.Introspect");
    assert.equal(r.code, 0, r.stderr);
    return introspectionFacts(r.stdout);
  };

  test("Introspect on a client object: the same interfaces, deprecated mirrors and annotations", async () => {
    const [a, b] = await both((address) => introspect(address, "/clients/charlie"));
    assert.ok(b.includes("interface se.bsnet.fukt.Mandos.Client / annotation org.freedesktop.DBus.Deprecated=true"));
    assert.deepEqual(a, b);
  });

  /** Introspect's reply at `path` as dbus-send prints it, without the header line (serials, names). */
  const introspectText = async (address: string, path: string): Promise<string> => {
    const r = await dbusSend(address, `--dest=${BUS_NAME}`, path, "org.freedesktop.DBus.Introspectable.Introspect");
    assert.equal(r.code, 0, `Introspect ${path}: ${r.stderr}`);
    return r.stdout.split("\n").slice(1).join("\n");
  };

  test("Introspect on /clients: the same bare node listing the clients, byte for byte", async () => {
    const [a, b] = await both((address) => introspectText(address, "/clients"));
    assert.match(b, /<node name="delta"\/>/);
    assert.equal(a, b);
  });

  test("Introspect on a path with no object: the same empty node, byte for byte, not an error", async () => {
    for (const path of ["/nothing", "/clients/nobody", "/clients/alpha/below", "/se/recompile"]) {
      const [a, b] = await both((address) => introspectText(address, path));
      assert.match(b, /<node>\s*<\/node>/, path);
      assert.equal(a, b, path);
    }
  });

  test("another method on a path with no object: refused with the reference's error names", async () => {
    const errorName = async (address: string, path: string, ...call: string[]): Promise<string> => {
      const r = await dbusSend(address, `--dest=${BUS_NAME}`, path, ...call);
      assert.notEqual(r.code, 0, `${call[0] ?? ""} on ${path} succeeded`);
      return /^Error (\S+):/m.exec(r.stderr)?.[1] ?? r.stderr;
    };
    const get = ["org.freedesktop.DBus.Properties.Get", "string:se.recompile.Mandos.Client", "string:Name"];
    for (const [path, call] of [["/nothing", get], ["/clients", get], ["/clients/nobody", ["se.recompile.Mandos.Client.CheckedOK"]]] as const) {
      const [a, b] = await both((address) => errorName(address, path, ...call));
      assert.equal(a, b, `${call[0]} on ${path}`);
    }
  });

  test("a method of an interface the object lacks, or of none it has: refused with UnknownMethod, as the reference", async () => {
    const errorName = async (address: string, path: string, ...call: string[]): Promise<string> => {
      const r = await dbusSend(address, `--dest=${BUS_NAME}`, path, ...call);
      assert.notEqual(r.code, 0, `${call[0] ?? ""} on ${path} succeeded`);
      return /^Error (\S+):/m.exec(r.stderr)?.[1] ?? r.stderr;
    };
    const calls: Array<[string, ...string[]]> = [
      ["/", "se.recompile.Mandos.Client.Approve", "boolean:true"],
      ["/", "org.freedesktop.DBus.Properties.Get", "string:se.recompile.Mandos", "string:Name"],
      ["/", "no.such.Interface.Method"],
      ["/clients/alpha", "se.recompile.Mandos.RemoveClient", "objpath:/clients/alpha"],
      ["/clients/alpha", "org.freedesktop.DBus.ObjectManager.GetManagedObjects"],
      ["/clients/alpha", "no.such.Interface.Method"],
      ["/clients/alpha", "se.recompile.Mandos.Client.NoSuchMethod"],
      ["/", "se.bsnet.fukt.Mandos.NoSuchMethod"],
    ];
    for (const [path, ...call] of calls) {
      const [a, b] = await both((address) => errorName(address, path, ...call));
      assert.equal(b, "org.freedesktop.DBus.Error.UnknownMethod", `the reference, ${call[0]} on ${path}`);
      assert.equal(a, b, `${call[0]} on ${path}`);
    }
  });

  test("Introspect on /: the same interfaces, deprecated mirrors and annotations, and ClientAdded marked deprecated", async () => {
    // One deliberate difference: issue #7 asks for every deprecated member
    // the reference keeps, ClientAdded among them, to be marked deprecated
    // in introspection; the reference 1.8.16 leaves that one signal
    // unmarked. An annotation changes no call or signal on the bus.
    const [a, b] = await both((address) => introspect(address, "/"));
    const mark = (prefix: string): string => `interface ${prefix} / signal ClientAdded / annotation org.freedesktop.DBus.Deprecated=true`;
    const marks = [mark("se.recompile.Mandos"), mark("se.bsnet.fukt.Mandos")];
    assert.ok(b.includes("interface se.bsnet.fukt.Mandos / annotation org.freedesktop.DBus.Deprecated=true"));
    for (const m of marks) {
      assert.ok(a.includes(m), `ours lacks: ${m}`);
      assert.ok(!b.includes(m), `the reference now has: ${m}; drop this exception`);
    }
    assert.deepEqual(a.filter((f) => !marks.includes(f)), b);
  });

  /**
   * A method's reply as dbus-send prints it, one value a line, as a sorted
   * multiset (dictionary order is each server's own), timestamps masked.
   */
  const replyLines = async (address: string, ...args: string[]): Promise<string[]> => {
    const r = await dbusSend(address, `--dest=${BUS_NAME}`, ...args);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout
      .split("\n")
      .slice(1)
      .map((l) => l.trim().replace(/"\d{4}-\d\d-\d\dT[\d:.]+"/, '"<timestamp>"'))
      .sort();
  };

  test("GetManagedObjects returns the same objects, interfaces and properties but for timestamps", async () => {
    const [a, b] = await both((address) => replyLines(address, "/", "org.freedesktop.DBus.ObjectManager.GetManagedObjects"));
    assert.ok(b.some((l) => l.includes("/clients/delta")));
    assert.deepEqual(a, b);
  });

  test("GetAll lists the properties in the reference's order (CheckerRunning before Checker), line for line but for timestamps", async () => {
    const lines = async (address: string): Promise<string[]> => {
      const r = await dbusSend(address, `--dest=${BUS_NAME}`, "/clients/charlie", "org.freedesktop.DBus.Properties.GetAll", "string:se.recompile.Mandos.Client");
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.split("\n").slice(1).map((l) => l.trim().replace(/"\d{4}-\d\d-\d\dT[\d:.]+"/, '"<timestamp>"'));
    };
    const [a, b] = await both(lines);
    assert.ok(b.indexOf('string "CheckerRunning"') < b.indexOf('string "Checker"'), b.join("\n"));
    assert.deepEqual(a, b);
  });

  test("the deprecated GetAllClients and GetAllClientsWithProperties, on both interface names, answer the same", async () => {
    for (const iface of ["se.recompile.Mandos", "se.bsnet.fukt.Mandos"]) {
      for (const method of ["GetAllClients", "GetAllClientsWithProperties"]) {
        const [a, b] = await both((address) => replyLines(address, "/", `${iface}.${method}`));
        assert.deepEqual(a, b, `${iface}.${method}`);
      }
    }
  });

  test("a property read through the deprecated se.bsnet.fukt.Mandos.Client interface is the same", async () => {
    for (const property of ["Host", "Checker", "ApprovalDelay", "KeyID"]) {
      const [a, b] = await both((address) =>
        replyLines(address, "/clients/charlie", "org.freedesktop.DBus.Properties.Get", "string:se.bsnet.fukt.Mandos.Client", `string:${property}`));
      assert.deepEqual(a, b, property);
    }
  });

  /** Sets delta's `property` to `variant` on both servers: [ours, reference]. */
  const setOnBoth = (property: string, variant: string) =>
    both((address) =>
      dbusSend(address, `--dest=${BUS_NAME}`, "/clients/delta", "org.freedesktop.DBus.Properties.Set",
        "string:se.recompile.Mandos.Client", `string:${property}`, variant));

  test("a Set of a read-only property is refused by both", async () => {
    const [a, b] = await setOnBoth("Name", "variant:string:other");
    assert.notEqual(b.code, 0, "the reference accepted it");
    assert.notEqual(a.code, 0, "ours let Name be set");
    await assertSameJson();
  });

  test("a property Set with the wrong type is refused and changes nothing", async () => {
    const [a, b] = await setOnBoth("Timeout", "variant:string:PT1M");
    assert.notEqual(b.code, 0, "the reference accepted it");
    assert.notEqual(a.code, 0, "ours accepted a string for a uint64 property");
    assert.match(a.stderr, /^Error org\.freedesktop\.DBus\.Error\.InvalidArgs/m);
    await assertSameJson();
  });

  // Found by session 56's D-Bus audit: the reference's dbus-python takes a
  // Set whose value is not in a variant (dbus-send's `string:x`, a proxy
  // made without introspection); ours answered InvalidArgs.
  test("a Set whose value is not wrapped in a variant is taken by both", async () => {
    for (const [property, value] of [["Host", "string:unwrapped.example.org"], ["ApprovedByDefault", "boolean:false"], ["ApprovalDuration", "uint64:4000"]] as const) {
      const [a, b] = await setOnBoth(property, value);
      assert.equal(b.code, 0, `the reference refused ${property}: ${b.stderr}`);
      assert.equal(a.code, 0, `ours refused ${property}: ${a.stderr}`);
    }
    await assertSameJson();
  });
});

// The signals themselves, in order, as dbus-monitor sees them on each bus:
// for the same mandos-ctl changes both servers send the same sequence,
// deprecated mirrors included. Each server has a fresh bus and fleet of
// its own, as above.
describe("our D-Bus signals compared with the reference server's, in order", { skip }, () => {
  let root = "";
  let fleet: Fleet;
  let ourBus: PrivateBus;
  let refBus: PrivateBus;
  let ourSignals: SignalRecorder;
  let refSignals: SignalRecorder;
  let ours: RunningServer;
  let reference: ReferenceServer;
  /** The signals each server sent as it started: [ours, reference]. */
  let started: [string[], string[]];

  before(async () => {
    ({ root, fleet } = makeFleetRoot("mandos-ts-dbussig-", true));
    mkdirSync(join(root, "state-ref"));
    ourBus = await startPrivateBus();
    refBus = await startPrivateBus();
    ourSignals = await recordSignals(ourBus.address);
    refSignals = await recordSignals(refBus.address);
    ours = await startOurServer(fleet.conf, join(root, "state-ours"), ourBus.address);
    reference = await startReference(fleet.conf, join(root, "state-ref"), refBus.address);
    started = [await ourSignals.mark("started"), await refSignals.mark("started")];
  });

  after(async () => {
    ourSignals?.stop();
    refSignals?.stop();
    await ours?.stop();
    await reference?.stop();
    await ourBus?.stop();
    await refBus?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** Runs `mandos-ctl ...args` on both; resolves with the signals each server sent for it: [ours, reference]. */
  const ctlSignals = async (...args: string[]): Promise<[string[], string[]]> => {
    const out: string[][] = [];
    for (const [address, signals] of [[ourBus.address, ourSignals], [refBus.address, refSignals]] as const) {
      const r = await mandosCtl(address, ...args);
      assert.equal(r.code, 0, r.stderr);
      out.push(await signals.mark(args.join(" ")));
    }
    return [out[0]!, out[1]!];
  };

  /** The client paths in the order of `member` (InterfacesAdded or InterfacesRemoved) among `signals`. */
  const pathsOf = (signals: string[], member: string): string[] =>
    signals.filter((l) => l.startsWith(`/ org.freedesktop.DBus.ObjectManager.${member} `)).map((l) => /object path "([^"]+)"/.exec(l)?.[1] ?? "");

  test("at start-up: each client's InterfacesAdded and ClientAdded, then its first Expires, as the reference's", async () => {
    // The reference adds the clients in an order of its own (a set's): compared client by client.
    const ofClient = (signals: string[], name: string): string[] =>
      signals.filter((l) => l.startsWith(`/clients/${name} `) || l.includes(`object path "/clients/${name}"`));
    for (const name of ["alpha", "bravo", "charlie", "delta"]) {
      const [a, b] = [ofClient(started[0], name), ofClient(started[1], name)];
      assert.ok(b.length > 0, `the reference announced no ${name}`);
      assert.deepEqual(a, b, name);
    }
  });

  test("a checker started by hand: the same signals", async () => {
    const [a, b] = await ctlSignals("--checker", "sleep 60", "alpha");
    assert.deepEqual(a, b);
    const [c, d] = await ctlSignals("--start-checker", "alpha");
    assert.ok(d.some((l) => l.includes("CheckerStarted")), d.join("\n"));
    assert.deepEqual(c, d);
  });

  test("disabling a client with a running checker: Expires, CheckerRunning and Enabled, in the reference's order", async () => {
    const [a, b] = await ctlSignals("--disable", "alpha");
    const changed = b.filter((l) => l.includes("PropertiesChanged")).map((l) => /string "(\w+)" variant/.exec(l)?.[1]);
    assert.deepEqual(changed, ["Expires", "CheckerRunning", "Enabled"], b.join("\n"));
    assert.deepEqual(a, b);
  });

  test("disabling a client without a checker: Expires, then Enabled", async () => {
    const [a, b] = await ctlSignals("--disable", "delta");
    assert.deepEqual(a, b);
  });

  test("removing an enabled client with a running checker: its removal, and no property change", async () => {
    await ctlSignals("--checker", "sleep 60", "charlie");
    await ctlSignals("--start-checker", "charlie");
    const [a, b] = await ctlSignals("--remove", "charlie");
    assert.deepEqual(b.map((l) => l.split(" ")[1]), [
      "org.freedesktop.DBus.ObjectManager.InterfacesRemoved", "se.recompile.Mandos.ClientRemoved", "se.bsnet.fukt.Mandos.ClientRemoved",
    ], b.join("\n"));
    assert.deepEqual(a, b);
  });

  test("a Timeout that has passed the expiry: Timeout, the moved Expires, then the disabling's Expires and Enabled", async () => {
    await ctlSignals("--enable", "bravo");
    await ctlSignals("--bump-timeout", "bravo");
    const [a, b] = await ctlSignals("--timeout", "PT0S", "bravo");
    const changed = b.filter((l) => l.includes("PropertiesChanged")).map((l) => /string "(\w+)" variant/.exec(l)?.[1]);
    assert.deepEqual(changed, ["Timeout", "Expires", "Expires", "Enabled"], b.join("\n"));
    assert.deepEqual(a, b);
  });

  test("at SIGTERM: every client's removal, the last added first", async () => {
    await ours.stop();
    await reference.stop();
    const stopped: [string[], string[]] = [await ourSignals.mark("stopped"), await refSignals.mark("stopped")];
    for (const [i, who] of ["ours", "the reference"].entries()) {
      const added = pathsOf(started[i]!, "InterfacesAdded").filter((p) => p !== "/clients/charlie");
      assert.deepEqual(pathsOf(stopped[i]!, "InterfacesRemoved"), added.reverse(), `${who}:\n${stopped[i]!.join("\n")}`);
    }
    // The same signals for each client, whatever order each server added them in.
    const byClient = (signals: string[]): string[] => [...signals].sort();
    assert.deepEqual(byClient(stopped[0]), byClient(stopped[1]));
  });
});
