// On a host that runs avahi-daemon (the Debian mandos package depends on
// it), bin/mandos announces through it, as the reference does: avahi-daemon
// runs in the server's namespace on the system bus bin/mandos uses
// (DBUS_SYSTEM_BUS_ADDRESS), and avahi-daemon, avahi-browse and the real
// mandos-client in the other namespace, on a bus of their own. The reference
// server, in the same place, is the oracle for the log lines. Nothing here
// multicasts outside the namespaces these tests make.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MANDOS_CLIENT, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { AVAHI_BROWSE, AVAHI_DAEMON, DBUS_DAEMON, NetnsPair, netnsUnavailable } from "./helpers/netns.js";
import { MandosBrowser, startHostServer, stopAvahi, zeroconfLines, type HostServer } from "./helpers/avahi-host.js";
import { REPO } from "./helpers/server.js";

const skip = netnsUnavailable(AVAHI_DAEMON, AVAHI_BROWSE, DBUS_DAEMON, "/usr/bin/avahi-publish") || missing(MANDOS_CLIENT, MANDOS_REFERENCE);
const CLIENT_KEYS = join(REPO, "example/client");
/** The host's name as its avahi-daemon has it: the service name, lower-cased, which a second responder beside it collides with. */
const HOST_NAME = "mandos";
/**
 * The log line itself: the reference, with no syslog here, first prints a
 * logging traceback that quotes the message ("Message: '...'").
 */
const ESTABLISHED = /\]: DEBUG: Zeroconf service established\.\n/;

const pairs: NetnsPair[] = [];
after(async () => {
  for (const pair of pairs) await pair.cleanup();
});

interface Hosts {
  pair: NetnsPair;
  /** The server namespace's system bus, with its avahi-daemon on it. */
  serverBus: string;
  clientBus: string;
  serverAvahi: ChildProcess;
  browser: MandosBrowser;
}

async function hosts(): Promise<Hosts> {
  const pair = NetnsPair.create();
  pairs.push(pair);
  // The reference (and so we) announce over IPv6 only: both ends' fe80:: first.
  await pair.waitForLinkLocal(pair.server);
  await pair.waitForLinkLocal(pair.client);
  const serverBus = await pair.startSystemBus();
  const clientBus = await pair.startSystemBus();
  const serverAvahi = await pair.startAvahi(pair.server, serverBus, HOST_NAME);
  await pair.startAvahi(pair.client, clientBus, "client");
  return { pair, serverBus, clientBus, serverAvahi, browser: new MandosBrowser(pair, pair.client, clientBus) };
}

/** Announces `Mandos` from `side`'s avahi-daemon (on `bus`) before the server starts; resolves once Avahi has it. */
async function rivalService(h: Hosts, onServerHost: boolean): Promise<void> {
  const bus = onServerHost ? h.serverBus : h.clientBus;
  const side = onServerHost ? h.pair.server : h.pair.client;
  const rival = h.pair.spawn(side, "/usr/bin/avahi-publish", ["-s", "Mandos", "_mandos._tcp", "1234"], {
    env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus },
  });
  rival.stdout!.resume();
  await new Promise<void>((resolve, reject) => {
    let text = "";
    rival.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      text += chunk;
      if (text.includes("Established under name 'Mandos'")) resolve();
    });
    rival.once("exit", () => reject(new Error(`avahi-publish exited: ${text}`)));
  });
  if (!onServerHost) {
    // Seen from the server's host over IPv6, where ours will probe: else a
    // probe sent before the rival is heard there would find no conflict.
    const seen = new MandosBrowser(h.pair, h.pair.server, h.serverBus);
    await seen.next((s) => s.event === "=" && s.name === "Mandos" && s.protocol === "IPv6" && s.port === 1234);
  }
}

function portOf(server: HostServer): number {
  const m = /Now listening on address .*?, port (\d+)/.exec(server.log());
  assert.ok(m, server.log());
  return Number(m[1]);
}

describe("bin/mandos on a host with avahi-daemon", { skip }, () => {
  let h: Hosts;
  let server: HostServer;

  before(async () => {
    h = await hosts();
    server = startHostServer(h.pair, h.serverBus);
    await server.waitForLog(ESTABLISHED, 0);
  });

  test("announces through it: the SRV target is the host's name, and a host named 'mandos' takes nothing from our name", async () => {
    const service = await h.browser.next((s) => s.event === "=" && s.name.startsWith("Mandos"));
    assert.equal(service.name, "Mandos");
    assert.equal(service.type, "_mandos._tcp");
    assert.equal(service.host, `${HOST_NAME}.local`);
    assert.equal(service.port, portOf(server));
    // The reference asks Avahi for IPv6 only (INET with --no-ipv6).
    assert.equal(service.protocol, "IPv6");
    assert.doesNotMatch(server.log(), /Changing Zeroconf service name/);
    assert.deepEqual(zeroconfLines(server.log()), [
      "DEBUG: Avahi server state change: 2",
      "DEBUG: Adding Zeroconf service 'Mandos' of type '_mandos._tcp' ...",
      "DEBUG: Avahi entry group state change: 1",
      "DEBUG: Avahi entry group state change: 2",
      "DEBUG: Zeroconf service established.",
    ]);
  });

  test("the real mandos-client, without --connect, finds it there and gets its password", async () => {
    const result = await h.pair.run(h.pair.client, MANDOS_CLIENT, [
      `--interface=${h.pair.client.link}`,
      "--delay=5",
      `--network-hook-dir=${h.pair.tempDir()}`,
      `--pubkey=${CLIENT_KEYS}/pubkey.txt`,
      `--seckey=${CLIENT_KEYS}/seckey.txt`,
      `--tls-privkey=${CLIENT_KEYS}/tls-privkey.pem`,
      `--tls-pubkey=${CLIENT_KEYS}/tls-pubkey.pem`,
    ], 45_000, { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: h.clientBus } });
    assert.equal(result.code, 0, `mandos-client: ${result.stderr}\nserver log:\n${server.log()}`);
    assert.equal(result.stdout, readFileSync(join(CLIENT_KEYS, "password"), "utf8"));
  });

  test("announces again when avahi-daemon restarts, as the reference (REGISTERING, then RUNNING)", async () => {
    const before = h.browser.seen.length;
    const logged = server.log().length;
    await stopAvahi(h.serverAvahi);
    await h.browser.next((s) => s.event === "-" && s.name === "Mandos", before);
    const again = h.browser.seen.length;
    h.serverAvahi = await h.pair.startAvahi(h.pair.server, h.serverBus, HOST_NAME);
    const service = await h.browser.next((s) => s.event === "=" && s.name === "Mandos", again);
    assert.equal(service.host, `${HOST_NAME}.local`);
    assert.equal(service.port, portOf(server));
    await server.waitForLog(ESTABLISHED, logged);
    assert.deepEqual(zeroconfLines(server.log().slice(logged)), [
      "DEBUG: Avahi server state change: 1",
      "DEBUG: Avahi server state change: 2",
      "DEBUG: Adding Zeroconf service 'Mandos' of type '_mandos._tcp' ...",
      "DEBUG: Avahi entry group state change: 1",
      "DEBUG: Avahi entry group state change: 2",
      "DEBUG: Zeroconf service established.",
    ]);
  });

  test("withdraws the service on shutdown", async () => {
    const before = h.browser.seen.length;
    server.child.kill("SIGTERM");
    assert.equal(await server.exited, 0, server.log());
    await h.browser.next((s) => s.event === "-" && s.name === "Mandos", before);
  });
});

/**
 * Starts the reference and then bin/mandos, each in namespaces of its own
 * with `arrange` done first, and returns the Zeroconf log lines of each once
 * it is established, with what avahi-browse saw of ours.
 */
async function bothServers(arrange: (h: Hosts) => Promise<void>): Promise<{ ours: string[]; reference: string[]; browsed: string }> {
  const lines: string[][] = [];
  let browsed = "";
  for (const reference of [true, false]) {
    const h = await hosts();
    await arrange(h);
    const server = startHostServer(h.pair, h.serverBus, reference);
    await server.waitForLog(ESTABLISHED, 0);
    lines.push(zeroconfLines(server.log()));
    if (!reference) {
      const service = await h.browser.next((s) => s.event === "=" && s.name === "Mandos #2");
      assert.equal(service.host, `${HOST_NAME}.local`);
      browsed = service.name;
    }
    server.child.kill("SIGTERM");
    await server.exited;
    await h.pair.cleanup();
  }
  return { reference: lines[0]!, ours: lines[1]!, browsed };
}

describe("name collisions through avahi-daemon, as the reference", { skip }, () => {
  test("a rival 'Mandos' on the network: renamed 'Mandos #2' with the reference's log lines", async () => {
    const { ours, reference, browsed } = await bothServers((h) => rivalService(h, false));
    assert.equal(browsed, "Mandos #2");
    assert.ok(reference.includes("INFO: Zeroconf service name collision."), reference.join("\n"));
    assert.ok(reference.includes("INFO: Changing Zeroconf service name to 'Mandos #2' ..."), reference.join("\n"));
    assert.deepEqual(ours, reference);
  });

  test("a 'Mandos' already on this host's avahi-daemon: 'Local Zeroconf service name collision.', renamed 'Mandos #2'", async () => {
    const { ours, reference, browsed } = await bothServers((h) => rivalService(h, true));
    assert.equal(browsed, "Mandos #2");
    assert.ok(reference.includes("INFO: Local Zeroconf service name collision."), reference.join("\n"));
    assert.deepEqual(ours, reference);
  });
});
