// mandos-ctl against a fleet too large for one D-Bus message (DBUS.md,
// "Marshalling"): dbus-daemon drops a connection that sends a message over
// its max_message_size (32 MiB on the system bus), so the server must never
// send one. With 9,000 clients of long host names, GetManagedObjects with
// the deprecated mirror's properties is ~50 MB: it goes without them
// (~26 MB), mandos-ctl lists every client, and the server says so once.
// After a reload to 14,000 clients even that is too long: mandos-ctl is
// told LimitsExceeded. Through all of it the server keeps its connection
// to the bus (the same unique name, no "Lost the D-Bus system bus").

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DBUS_DAEMON, DBUS_SEND, startOurServer, startPrivateBus, type PrivateBus } from "./helpers/dbus.js";
import { MANDOS_CTL, missing } from "./helpers/peers.js";
import { run, type RunningServer } from "./helpers/server.js";
import { openPgpShaped } from "./helpers/keys.js";
import { eventually } from "./helpers/wait.js";

const skip = missing(DBUS_DAEMON, DBUS_SEND, MANDOS_CTL);

let root = "";
let bus: PrivateBus | null = null;
let server: RunningServer | null = null;

/** `count` clients with 2,000-character host names; no checker runs within the test (interval 240 h). */
function clientsConf(count: number): string {
  let text = "[DEFAULT]\ninterval = PT240H\nchecker = true\n";
  for (let i = 0; i < count; i++) {
    const name = `machine-${String(i).padStart(5, "0")}`;
    text += `\n[${name}]\nkey_id = ${createHash("sha256").update(name).digest("hex")}\n`;
    text += `secret = ${openPgpShaped(Buffer.from(`secret of ${name}`)).toString("base64")}\n`;
    text += `host = ${name}.${"rack-0042.hall-7.dc.example.org.".repeat(62)}\n`;
  }
  return text;
}

before(async () => {
  if (skip) return;
  root = mkdtempSync(join(tmpdir(), "mandos-ts-dbus-large-"));
  writeFileSync(join(root, "mandos.conf"), "[DEFAULT]\n");
  writeFileSync(join(root, "clients.conf"), clientsConf(9_000));
  bus = await startPrivateBus();
});

after(async () => {
  await server?.stop();
  await bus?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

async function ctl(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await run(MANDOS_CTL, args, 120_000, { DBUS_SYSTEM_BUS_ADDRESS: bus!.address });
  return { code: r.code, stdout: r.stdout.toString("utf8"), stderr: r.stderr };
}

async function owner(): Promise<string> {
  const r = await run(DBUS_SEND, ["--system", "--print-reply=literal", "--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.GetNameOwner", "string:se.recompile.Mandos"], 10_000, { DBUS_SYSTEM_BUS_ADDRESS: bus!.address });
  return r.stdout.toString("utf8").trim();
}

test("a fleet whose listing the bus would not take whole: mandos-ctl still lists it, or is told why; the server stays on the bus", { skip, timeout: 300_000 }, async () => {
  server = await startOurServer(root, join(root, "state"), bus!.address);
  const name = await owner();
  assert.match(name, /^:1\.\d+$/);

  // 9,000 clients: the listing goes without the deprecated mirror's properties.
  for (let round = 0; round < 2; round++) {
    const listed = await ctl();
    assert.equal(listed.code, 0, listed.stderr);
    const rows = listed.stdout.trim().split("\n").slice(1);
    assert.equal(rows.length, 9_000);
    assert.match(rows[8_999]!, /^\s*machine-08999\s+Yes\b/);
  }
  const warning = /WARNING: D-Bus: the reply to GetManagedObjects for 9000 clients is more than the system bus takes \(33554432 bytes a message\); the deprecated se\.bsnet\.fukt\.Mandos\.Client's properties are left out of it/;
  assert.equal(server.log().split("\n").filter((l) => warning.test(l)).length, 1, "warned once for two listings");
  const one = await ctl("--dump-json", "machine-04321");
  assert.equal(one.code, 0, one.stderr);
  const props = (JSON.parse(one.stdout) as Record<string, Record<string, unknown>>)["machine-04321"]!;
  assert.equal(props.KeyID, createHash("sha256").update("machine-04321").digest("hex").toUpperCase());
  assert.match(String(props.Host), /^machine-04321\.rack-0042/);

  // 14,000 clients: too long even so; refused, and said.
  writeFileSync(join(root, "clients.conf"), clientsConf(14_000));
  server.process.kill("SIGHUP");
  await server.waitForLog(/Reloaded clients\.conf: 5000 added/, 120_000);
  const refused = await ctl();
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /GetManagedObjects for 14000 clients is more than the system bus takes .*; each client's object still answers on its own \(Properties\.GetAll on \/clients\/NAME\)/);
  const warned = /WARNING: D-Bus: the reply to GetManagedObjects for 14000 clients is more than the system bus takes \(33554432 bytes a message\), even without what can be left out; not sent/;
  await eventually(() => warned.test(server!.log()), { what: "the refusal logged", context: () => server!.log().slice(-2_000) });
  const raw = await run(DBUS_SEND, ["--system", "--print-reply", "--dest=se.recompile.Mandos", "/", "org.freedesktop.DBus.ObjectManager.GetManagedObjects"], 60_000, { DBUS_SYSTEM_BUS_ADDRESS: bus!.address });
  assert.match(raw.stderr, /^Error org\.freedesktop\.DBus\.Error\.LimitsExceeded: /);
  // Each client's own object still answers.
  const getAll = await run(DBUS_SEND, ["--system", "--print-reply", "--dest=se.recompile.Mandos", "/clients/machine_13999", "org.freedesktop.DBus.Properties.GetAll", "string:se.recompile.Mandos.Client"], 10_000, { DBUS_SYSTEM_BUS_ADDRESS: bus!.address });
  assert.match(getAll.stdout.toString("utf8"), /machine-13999\.rack-0042/);

  // Never dropped by the bus.
  assert.equal(await owner(), name);
  assert.doesNotMatch(server.log(), /Lost the D-Bus system bus/);
});
