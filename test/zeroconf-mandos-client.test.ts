// The whole rebooting-client path, as mandos(8) and intro(8mandos) describe
// it: bin/mandos announces itself by Zeroconf in one network namespace, and
// the real mandos-client, *without* --connect, finds it through avahi-daemon
// in another namespace, connects, and prints the password. Nothing here
// multicasts outside the namespaces this test makes.

import { after, test } from "node:test";
import type { ChildProcess } from "node:child_process";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { AVAHI_BROWSE, AVAHI_DAEMON, DBUS_DAEMON, NetnsPair, netnsUnavailable, waitForLine } from "./helpers/netns.js";
import { BIN_MANDOS, REPO } from "./helpers/server.js";

const skip = netnsUnavailable(AVAHI_DAEMON, AVAHI_BROWSE, DBUS_DAEMON) || missing(MANDOS_CLIENT);
const CLIENT_KEYS = join(REPO, "example/client");

const pairs: NetnsPair[] = [];

after(async () => {
  for (const pair of pairs) await pair.cleanup();
});

/** Starts bin/mandos in the server namespace and waits until it is announced. */
async function startAnnouncedServer(pair: NetnsPair, extra: readonly string[] = []): Promise<{ server: ChildProcess; log: () => string }> {
  const server = pair.spawn(pair.server, process.execPath, [
    BIN_MANDOS, "--debug", "--no-dbus", "--configdir", join(REPO, "example"), "--statedir", pair.tempDir(),
    "--servicename", "Mandos", // no --interface: the default, on every interface
    ...extra,
  ], {
    // No avahi-daemon on the server's system bus: our own responder (ciao).
    // Never the machine's own bus, whose avahi-daemon would announce on its
    // real interfaces.
    env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${join(pair.tempDir(), "no-bus")}` },
  });
  let serverLog = "";
  server.stderr!.setEncoding("utf8").on("data", (chunk: string) => { serverLog += chunk; });
  await waitForLine(server, (line) => line.includes("Zeroconf service established."), 20_000, "stderr")
    .catch((error: unknown) => assert.fail(`${String(error)}\nserver log:\n${serverLog}`));
  assert.match(serverLog, /Zeroconf: announcing with our own responder \(ciao\)/);
  return { server, log: () => serverLog };
}

/** The real mandos-client, without --connect, on the client end of the link. */
function runMandosClient(pair: NetnsPair, bus: string): ReturnType<NetnsPair["run"]> {
  return pair.run(pair.client, MANDOS_CLIENT, [
    `--interface=${pair.client.link}`,
    "--delay=5",
    `--network-hook-dir=${pair.tempDir()}`,
    `--pubkey=${CLIENT_KEYS}/pubkey.txt`,
    `--seckey=${CLIENT_KEYS}/seckey.txt`,
    `--tls-privkey=${CLIENT_KEYS}/tls-privkey.pem`,
    `--tls-pubkey=${CLIENT_KEYS}/tls-pubkey.pem`,
  ], 45_000, { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus } });
}

test("the real mandos-client without --connect finds bin/mandos by Zeroconf and gets its password", { skip }, async () => {
  const pair = NetnsPair.create();
  pairs.push(pair);
  const bus = await pair.startSystemBus();
  await pair.startAvahi(pair.client, bus);
  const { server, log } = await startAnnouncedServer(pair);

  const result = await runMandosClient(pair, bus);
  assert.equal(result.code, 0, `mandos-client: ${result.stderr}\nserver log:\n${log()}`);
  assert.equal(result.stdout, readFileSync(join(CLIENT_KEYS, "password"), "utf8"));

  // Shutting down withdraws the service (goodbye packets), as the reference's cleanup() does.
  const browser = pair.spawn(pair.client, AVAHI_BROWSE, ["-p", "_mandos._tcp"], {
    env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus },
  });
  await waitForLine(browser, (line) => line.startsWith("+;") && line.includes(";Mandos;"), 20_000);
  server.kill("SIGTERM");
  await waitForLine(browser, (line) => line.startsWith("-;") && line.includes(";Mandos;"), 20_000);
});

test("over IPv6 alone (link-local, no IPv4 on the link) mandos-client finds bin/mandos and gets its password", { skip }, async () => {
  const pair = NetnsPair.create();
  pairs.push(pair);
  for (const side of [pair.server, pair.client]) pair.ip(side, "addr", "del", `${side.address}/16`, "dev", side.link);
  await pair.waitForLinkLocal(pair.server);
  await pair.waitForLinkLocal(pair.client);
  const bus = await pair.startSystemBus();
  await pair.startAvahi(pair.client, bus);
  const { log } = await startAnnouncedServer(pair);

  const result = await runMandosClient(pair, bus);
  assert.equal(result.code, 0, `mandos-client: ${result.stderr}\nserver log:\n${log()}`);
  assert.equal(result.stdout, readFileSync(join(CLIENT_KEYS, "password"), "utf8"));
  // The server saw the client come from its fe80:: address.
  assert.match(log(), /fe80:/i);
});

// IPv6 on (the default) and an IPv4 address: the socket is IPv4, and so
// must the announcement be. It was IPv6 as well, and a mandos-client that
// found it over IPv6 resolved an IPv6 address and was refused.
test("--address 0.0.0.0 with IPv6 on: announced over IPv4 only, and mandos-client gets its password", { skip }, async () => {
  const pair = NetnsPair.create();
  pairs.push(pair);
  await pair.waitForLinkLocal(pair.server);
  await pair.waitForLinkLocal(pair.client);
  const bus = await pair.startSystemBus();
  await pair.startAvahi(pair.client, bus);
  const browser = pair.spawn(pair.client, AVAHI_BROWSE, ["-p", "-r", "_mandos._tcp"], {
    env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus },
  });
  const lines: string[] = [];
  browser.stdout!.setEncoding("utf8").on("data", (chunk: string) => lines.push(...chunk.split("\n").filter(Boolean)));
  const { log } = await startAnnouncedServer(pair, ["--address", "0.0.0.0"]);
  assert.match(log(), /Now listening on address '0\.0\.0\.0', port \d+\n/);
  const result = await runMandosClient(pair, bus);
  assert.equal(result.code, 0, `mandos-client: ${result.stderr}\nserver log:\n${log()}`);
  assert.equal(result.stdout, readFileSync(join(CLIENT_KEYS, "password"), "utf8"));
  const mandos = lines.filter((l) => l.includes(";Mandos;"));
  assert.ok(mandos.some((l) => l.startsWith("=;") && l.split(";")[2] === "IPv4"), mandos.join("\n"));
  assert.ok(!mandos.some((l) => l.split(";")[2] === "IPv6"), mandos.join("\n"));
  browser.kill();
});
