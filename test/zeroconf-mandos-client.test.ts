// The whole rebooting-client path, as mandos(8) and intro(8mandos) describe
// it: bin/mandos announces itself by Zeroconf in one network namespace, and
// the real mandos-client, *without* --connect, finds it through avahi-daemon
// in another namespace, connects, and prints the password. Nothing here
// multicasts outside the namespaces this test makes.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { AVAHI_BROWSE, AVAHI_DAEMON, DBUS_DAEMON, NetnsPair, netnsUnavailable, waitForLine } from "./helpers/netns.js";
import { BIN_MANDOS, REPO } from "./helpers/server.js";

const skip = netnsUnavailable(AVAHI_DAEMON, AVAHI_BROWSE, DBUS_DAEMON) || missing(MANDOS_CLIENT);
const CLIENT_KEYS = join(REPO, "example/client");

let pair: NetnsPair;

before(() => {
  if (!skip) pair = NetnsPair.create();
});

after(async () => {
  await pair?.cleanup();
});

test("the real mandos-client without --connect finds bin/mandos by Zeroconf and gets its password", { skip }, async () => {
  const bus = await pair.startSystemBus();
  await pair.startAvahi(pair.client, bus);

  const server = pair.spawn(pair.server, process.execPath, [
    BIN_MANDOS, "--debug", "--no-dbus", "--configdir", join(REPO, "example"), "--statedir", pair.tempDir(),
    "--servicename", "Mandos", // no --interface: the default, on every interface
  ]);
  let serverLog = "";
  server.stderr!.setEncoding("utf8").on("data", (chunk: string) => { serverLog += chunk; });
  await waitForLine(server, (line) => line.includes("Zeroconf service established."), 20_000, "stderr")
    .catch((error: unknown) => assert.fail(`${String(error)}\nserver log:\n${serverLog}`));

  const result = await pair.run(pair.client, MANDOS_CLIENT, [
    `--interface=${pair.client.link}`,
    "--delay=5",
    `--network-hook-dir=${pair.tempDir()}`,
    `--pubkey=${CLIENT_KEYS}/pubkey.txt`,
    `--seckey=${CLIENT_KEYS}/seckey.txt`,
    `--tls-privkey=${CLIENT_KEYS}/tls-privkey.pem`,
    `--tls-pubkey=${CLIENT_KEYS}/tls-pubkey.pem`,
  ], 45_000, { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus } });
  assert.equal(result.code, 0, `mandos-client: ${result.stderr}\nserver log:\n${serverLog}`);
  assert.equal(result.stdout, readFileSync(join(CLIENT_KEYS, "password"), "utf8"));

  // Shutting down withdraws the service (goodbye packets), as the reference's cleanup() does.
  const browser = pair.spawn(pair.client, AVAHI_BROWSE, ["-p", "_mandos._tcp"], {
    env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus },
  });
  await waitForLine(browser, (line) => line.startsWith("+;") && line.includes(";Mandos;"), 20_000);
  server.kill("SIGTERM");
  await waitForLine(browser, (line) => line.startsWith("-;") && line.includes(";Mandos;"), 20_000);
});
