// The real mandos-monitor (in a tmux pane) and dbus-monitor watching our
// D-Bus service while the real mandos-client and mandos-ctl act on it: the
// configured clients shown, then GotSecret, NeedApproval, Rejected,
// ClientNotFound, PropertiesChanged and a removal, as the monitor prints
// them (mandos-monitor's log lines, from its source); and the first
// checkers' signals of a server as it starts.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DBUS_DAEMON, DBUS_MONITOR, DBUS_SEND, MANDOS_MONITOR, TMUX, makeFleetRoot, mandosCtl, recordSignals, startOurServer, startPrivateBus,
  type Fleet, type PrivateBus, type SignalRecorder,
} from "./helpers/dbus.js";
import { writeTlsKey } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_CTL, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { REPO, run, runMandosClient, type RunningServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const noService = existsSync(join(REPO, "dist/src/main/dbus")) ? false : "D-Bus service not on this branch yet";
const skip = missing(DBUS_DAEMON, DBUS_SEND, DBUS_MONITOR, MANDOS_CTL, MANDOS_MONITOR, TMUX, MANDOS_CLIENT, MANDOS_KEYGEN) || noService;

/** Polls `read` until it matches `pattern` (bounded), returning that text. */
function untilText(read: () => Promise<string> | string, pattern: RegExp, what: string, ms = 15_000): Promise<string> {
  let text = "";
  return eventually(async () => {
    text = await read();
    return pattern.test(text) && text;
  }, { what: `${what}: ${pattern}`, timeoutMs: ms, context: () => text });
}

describe("mandos-monitor and D-Bus signals from our server", { skip }, () => {
  let root = "";
  let fleet: Fleet;
  let bus: PrivateBus;
  let server: RunningServer;
  let tmuxSocket = "";
  let signals: ChildProcess | undefined;
  let signalText = "";
  const client = (name: string) => fleet.clients.find((c) => c.name === name)!;
  const pane = async (): Promise<string> => {
    const r = await run(TMUX, ["-S", tmuxSocket, "capture-pane", "-p", "-S", "-200"], 5_000);
    return r.stdout.toString("utf8");
  };

  before(async () => {
    ({ root, fleet } = makeFleetRoot("mandos-ts-dbusmon-"));
    bus = await startPrivateBus();
    server = await startOurServer(fleet.conf, join(root, "state"), bus.address);
    signals = spawn(DBUS_MONITOR, ["--system", "type='signal',path_namespace='/'"], {
      stdio: ["ignore", "pipe", "ignore"],
      env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus.address },
    });
    signals.stdout?.on("data", (d: Buffer) => (signalText += d.toString("utf8")));
    // A tmux server of the test's own (its own socket), killed in after().
    tmuxSocket = join(root, "tmux.sock");
    const socket = tmuxSocket;
    process.once("exit", () => {
      // Should the test process end before after() runs.
      try {
        execFileSync(TMUX, ["-S", socket, "kill-server"], { stdio: "ignore" });
      } catch {
        // already gone
      }
    });
    const started = await run(TMUX, [
      "-S", tmuxSocket, "-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "50",
      "-e", `DBUS_SYSTEM_BUS_ADDRESS=${bus.address}`, MANDOS_MONITOR,
    ], 10_000);
    assert.equal(started.code, 0, started.stderr);
  });

  after(async () => {
    if (tmuxSocket) await run(TMUX, ["-S", tmuxSocket, "kill-server"], 5_000);
    signals?.kill("SIGTERM");
    await server?.stop();
    await bus?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("mandos-monitor shows the configured clients", async () => {
    const text = await untilText(pane, /^delta: /m, "the client list");
    for (const name of ["alpha", "bravo", "charlie", "delta"]) assert.match(text, new RegExp(`^${name}: `, "m"));
    assert.match(text, /^bravo: DISABLED$/m);
    assert.match(text, /Mandos Monitor version/);
  });

  test("a real mandos-client gets its secret: GotSecret shown by mandos-monitor and seen on the bus", async () => {
    const r = await runMandosClient(client("alpha").dir, "::1", server.port, 30_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), client("alpha").password);
    await untilText(pane, /Client alpha received its secret/, "mandos-monitor");
    await untilText(() => signalText, /path=\/clients\/alpha; interface=se\.recompile\.Mandos\.Client; member=GotSecret/, "dbus-monitor");
    // The deprecated mirror signal goes out too.
    await untilText(() => signalText, /path=\/clients\/alpha; interface=se\.bsnet\.fukt\.Mandos\.Client; member=GotSecret/, "dbus-monitor");
  });

  test("mandos-ctl --disable: PropertiesChanged on the bus, DISABLED in mandos-monitor", async () => {
    const r = await mandosCtl(bus.address, "--disable", "alpha");
    assert.equal(r.code, 0, r.stderr);
    await untilText(pane, /^alpha: DISABLED$/m, "mandos-monitor");
    await untilText(
      () => signalText,
      /path=\/clients\/alpha; interface=org\.freedesktop\.DBus\.Properties; member=PropertiesChanged\s+string "se\.recompile\.Mandos\.Client"[\s\S]*?string "Enabled"\s+variant\s+boolean false/,
      "dbus-monitor",
    );
  });

  test("a client waiting for approval, then denied: NeedApproval and Rejected shown", async () => {
    const waiting = runMandosClient(client("charlie").dir, "::1", server.port, 8_000);
    await untilText(pane, /Client charlie needs approval within 30\.0+ seconds/, "mandos-monitor");
    await untilText(pane, /^charlie: Denial in 0:00:\d\d\. \(a\)pprove\?$/m, "mandos-monitor");
    const r = await mandosCtl(bus.address, "--deny", "charlie");
    assert.equal(r.code, 0, r.stderr);
    await untilText(pane, /Client charlie was rejected; reason: Denied/, "mandos-monitor");
    assert.equal((await waiting).stdout.length, 0);
  });

  test("an unknown key: ClientNotFound with its key ID, shown by mandos-monitor", async () => {
    const stranger = join(root, "stranger");
    mkdirSync(stranger);
    for (const f of ["pubkey.txt", "seckey.txt"]) copyFileSync(join(client("alpha").dir, f), join(stranger, f));
    writeTlsKey(stranger);
    const r = await runMandosClient(stranger, "::1", server.port, 4_000);
    assert.equal(r.stdout.length, 0);
    const log = await server.waitForLog(/Client not found for key ID: [0-9A-Fa-f]+/);
    const keyId = /([0-9A-Fa-f]{64})/.exec(log)?.[1] ?? "";
    await untilText(pane, new RegExp(`Client with address \\S+ and key ID ${keyId} could\\s+not be found`, "i"), "mandos-monitor");
    await untilText(() => signalText, new RegExp(`member=ClientNotFound\\s+string "${keyId}"`, "i"), "dbus-monitor");
  });

  test("mandos-ctl --remove: the client leaves mandos-monitor's list", async () => {
    const r = await mandosCtl(bus.address, "--remove", "delta");
    assert.equal(r.code, 0, r.stderr);
    await untilText(() => signalText, /member=InterfacesRemoved\s+object path "\/clients\/delta"/, "dbus-monitor");
    const text = await untilText(pane, /^charlie: /m, "mandos-monitor");
    await untilText(async () => ((await pane()).match(/^delta: /m) ? "still there" : "gone"), /gone/, "delta removed from the list");
    assert.match(text, /^alpha: /m);
  });
});

// The reference exports every client before it schedules its first checker
// (init_checker with a random delay within the interval), so a watcher
// never sees a checker end that it did not see start. Ours connects to the
// bus after it listens and drops privileges; its checkers must wait for
// that. Many clients with a one-second interval (the shortest there is):
// some first checkers fall due within the ~0.1 s it takes to get on the bus
// (all 31 miss it once in a hundred runs), and each checker outlasts that.
// Fewer than MAX_CONCURRENT_CHECKERS, so that none waits its turn.
describe("the first checkers of a starting server, as seen on the bus", { skip }, () => {
  const CLIENTS = 31;
  let root = "";
  let bus: PrivateBus;
  let signals: SignalRecorder;
  let server: RunningServer;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-dbusfirst-"));
    chmodSync(root, 0o755);
    const conf = join(root, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
    const sections = Array.from({ length: CLIENTS }, (_, i) =>
      `[c${i}]\nkey_id = ${(i + 1).toString(16).padStart(64, "0")}\nsecret = ${Buffer.from(`secret ${i}`).toString("base64")}\nhost = c${i}.example.org\n`);
    writeFileSync(join(conf, "clients.conf"), ["[DEFAULT]", "timeout = PT5M", "interval = PT1S", "checker = sleep 0.5", "", ...sections].join("\n"), { mode: 0o600 });
    bus = await startPrivateBus();
    signals = await recordSignals(bus.address);
    server = await startOurServer(conf, join(root, "state"), bus.address);
  });

  after(async () => {
    signals?.stop();
    await server?.stop();
    await bus?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("every client's object is added before its checker signals, and CheckerStarted comes before CheckerCompleted", async () => {
    // Until every client's first checker has ended (started within 1 s, ended 0.5 s later).
    const seen: string[] = [];
    await eventually(async () => {
      seen.push(...(await signals.mark("checkers")));
      return Array.from({ length: CLIENTS }, (_, i) => `/clients/c${i} `).every((p) => seen.some((l) => l.startsWith(p) && l.includes(".CheckerCompleted ")));
    }, { what: "every client's first CheckerCompleted", timeoutMs: 20_000, context: () => seen.join("\n") });
    for (let i = 0; i < CLIENTS; i++) {
      const path = `/clients/c${i}`;
      const mine = seen.filter((l) => l.startsWith(`${path} `) || l.includes(`object path "${path}"`));
      const kinds = mine.map((l) => /\.(InterfacesAdded|CheckerStarted|CheckerCompleted) /.exec(l)?.[1]).filter((k) => k !== undefined);
      assert.equal(kinds[0], "InterfacesAdded", `${path}:\n${mine.join("\n")}`);
      let running = 0;
      for (const k of kinds) {
        if (k === "CheckerStarted") running++;
        if (k === "CheckerCompleted") assert.ok(--running >= 0, `${path}: CheckerCompleted without CheckerStarted:\n${mine.join("\n")}`);
      }
    }
  });
});
