// A checker interval, timeout or extended timeout under a second, set with
// the real mandos-ctl on a private bus, is set as the reference sets it
// and warned of in the log, naming the client: mandos-ctl reads `-i 5` as
// 5 milliseconds and `-t bogus` as 0 (saying so only on its own standard
// error), and such a client's checker then starts back to back, or the
// client is disabled at once. A duration of a second or more is not.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DBUS_DAEMON, dumpJson, mandosCtl, startOurServer, startPrivateBus, type PrivateBus } from "./helpers/dbus.js";
import { machine, machineSection } from "./helpers/keys.js";
import { MANDOS_CTL, missing } from "./helpers/peers.js";
import { logCount, type RunningServer } from "./helpers/server.js";

const HINT = "\\(mandos-ctl reads a bare number as milliseconds and text it cannot parse as 0; PT5M or 5m is five minutes\\)$";

describe("durations under a second set over D-Bus", { skip: missing(DBUS_DAEMON, MANDOS_CTL) }, () => {
  let root = "";
  let bus: PrivateBus;
  let server: RunningServer;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-subsecond-"));
    const conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    // A checker that takes a while: one started back to back is still running when looked at.
    writeFileSync(join(conf, "clients.conf"), ["[DEFAULT]\nchecker = sleep 2\n", machineSection(machine("busy")), machineSection(machine("soon"))].join("\n"), { mode: 0o600 });
    bus = await startPrivateBus();
    server = await startOurServer(conf, join(root, "state"), bus.address);
  });

  after(async () => {
    await server?.stop();
    await bus?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const ctl = async (...args: string[]): Promise<void> => {
    const r = await mandosCtl(bus.address, ...args);
    assert.equal(r.code, 0, `mandos-ctl ${args.join(" ")}: ${r.stderr}`);
  };

  test("mandos-ctl -i 5, --extended-timeout 500 and -t bogus are set, and each warned of once; PT5M, 5m and 1h are not", async () => {
    const from = server.log().length;
    const warned = (): string[] => server.log().slice(from).split("\n").filter((l) => l.includes("under a second"));
    await ctl("-i", "PT5M", "busy");
    await ctl("-i", "5", "busy");
    assert.equal(await logCount(server, new RegExp(`WARNING: Client busy's interval set over D-Bus is 5 ms, under a second: its checker starts again as soon as one ends ${HINT}`, "m"), 1), 1, server.log().slice(from));
    await ctl("--extended-timeout", "500", "busy");
    await ctl("--extended-timeout", "5m", "busy");
    assert.equal(await logCount(server, new RegExp(`WARNING: Client busy's extended timeout set over D-Bus is 500 ms, under a second: once served, it is disabled unless a checker succeeds that soon ${HINT}`, "m"), 1), 1);
    await ctl("-t", "1h", "soon");
    await ctl("-t", "bogus", "soon");
    assert.equal(await logCount(server, new RegExp(`WARNING: Client soon's timeout set over D-Bus is 0 ms, under a second: it is disabled that soon after its last successful check ${HINT}`, "m"), 1), 1);
    // Set all the same, as the reference sets them.
    const seen = await dumpJson(bus.address, "busy", "soon");
    assert.equal(seen.busy!.Interval, 5);
    assert.equal(seen.busy!.ExtendedTimeout, 300_000);
    assert.equal(seen.soon!.Timeout, 0);
    assert.equal(seen.soon!.Enabled, false, "a timeout of 0 disables at once");
    assert.equal(warned().length, 3, warned().join("\n"));
  });
});
