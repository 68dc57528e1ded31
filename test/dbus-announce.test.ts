// At start-up every client is announced on the bus (InterfacesAdded,
// ClientAdded), as the reference does, but only as fast as the bus takes
// them (DBUS.md, "Announcing the clients"): 10,000 clients' announcements
// written at once waited in the socket's queue (~21 MB) and left the
// server's memory ~40 MiB higher. Here the bus daemon is paused (SIGSTOP)
// as the announcement begins: the queue must stay short, the service must
// not count as up, and registry changes meanwhile wait; resumed, every
// client is announced once, in order, and the changes come after.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { ANNOUNCE_QUEUE_BYTES, startDbusService } from "../src/main/dbus/service.js";
import { clientObjectPath } from "../src/main/clients/object-path.js";
import { clientSettings } from "./helpers/clients.js";
import { DBUS_DAEMON, DBUS_MONITOR, DBUS_SEND, startPrivateBus } from "./helpers/dbus.js";
import { run } from "./helpers/server.js";
import { missing } from "./helpers/peers.js";
import { eventually } from "./helpers/wait.js";

const COUNT = 10_000;
const never: CheckerSpawner = () => ({ kill() {} });

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Buffers alive in this process, after a full collection. */
function liveBufferBytes(): number {
  gc();
  return process.memoryUsage().arrayBuffers;
}

test(`${COUNT} clients are announced in order as the bus takes them; changes meanwhile come after`, { skip: missing(DBUS_DAEMON, DBUS_MONITOR, DBUS_SEND), timeout: 120_000 }, async (t) => {
  const bus = await startPrivateBus();
  t.after(() => bus.stop());
  // ClientAdded (sent right after each InterfacesAdded) and the client's PropertyChanged, in the bus's order.
  const env = { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus.address };
  const monitor = spawn(
    DBUS_MONITOR,
    ["--system", "type='signal',interface='se.recompile.Mandos',member='ClientAdded'", "type='signal',interface='se.recompile.Mandos.Client',member='PropertyChanged'", "type='signal',interface='se.recompile.MandosTsTest'"],
    { stdio: ["ignore", "pipe", "ignore"], env },
  );
  t.after(() => monitor.kill());
  let text = "";
  monitor.stdout.on("data", (d: Buffer) => (text += d.toString("utf8")));
  await eventually(async () => {
    await run(DBUS_SEND, ["--system", "--type=signal", "/", "se.recompile.MandosTsTest.Ready"], 5_000, env);
    return text.includes("member=Ready");
  }, { what: "dbus-monitor listening" });

  const names = Array.from({ length: COUNT }, (_, i) => `machine-${String(i).padStart(5, "0")}`);
  const registry = new ClientRegistry(
    names.map((name) => clientSettings(name, { keyId: createHash("sha256").update(name).digest("hex").toUpperCase() })),
    { logger: silentLogger, clock: new ManualClock(), spawner: never },
  );
  // The service lists the clients to announce them: the bus stops reading then.
  const list = registry.list.bind(registry);
  registry.list = () => {
    bus.pause();
    return list();
  };
  const before = liveBufferBytes();
  let up = false;
  const started = startDbusService(registry, { logger: silentLogger, busAddress: bus.address }).then((s) => {
    up = true;
    return s;
  });
  try {
    await eventually(() => process.memoryUsage().arrayBuffers - before > ANNOUNCE_QUEUE_BYTES / 2, { what: "the announcement begun" });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const waiting = liveBufferBytes() - before;
    assert.ok(waiting < 3 * ANNOUNCE_QUEUE_BYTES, `${waiting} bytes wait for the paused bus (all of it is ~21 MB)`);
    assert.equal(up, false, "up before every client was announced");
    registry.disable(names[0]!); // announced already
    registry.disable(names[COUNT - 1]!); // not yet
  } finally {
    bus.resume();
  }
  const service = await started;
  assert.ok(service);
  t.after(() => service.stop());
  const first = clientObjectPath(names[0]!);
  // Each signal: "PATH INTERFACE.MEMBER FIRST-ARGUMENT".
  const signals = (): string[] =>
    text.split(/\n(?=signal )/).flatMap((block) => {
      const m = /path=([^;]+); interface=([^;]+); member=(\S+)\n\s*(?:object path|string) "([^"]*)"/.exec(block);
      return m ? [`${m[1]} ${m[2]}.${m[3]} ${m[4]}`] : [];
    });
  const change = `${first} se.recompile.Mandos.Client.PropertyChanged Enabled`;
  await eventually(() => signals().includes(change), { what: "the held change announced", timeoutMs: 60_000 });

  const seen = signals();
  const added = seen.filter((l) => l.startsWith("/ se.recompile.Mandos.ClientAdded ")).map((l) => l.split(" ")[2]);
  assert.deepEqual(added, names.map(clientObjectPath), "every client announced once, in order");
  const lastAdded = seen.findLastIndex((l) => l.startsWith("/ se.recompile.Mandos.ClientAdded "));
  assert.ok(seen.indexOf(change) > lastAdded, "a change made during the announcement comes after it");
});
