// Link-local peers count one by one (src/main/serve/source.ts). A fleet
// that finds the server by Zeroconf on a link without a router connects
// from IPv6 link-local addresses, all in fe80::/64; counted as one source
// the whole link shared one cap of open connections. Here, in two network
// namespaces this test makes, the server allows one connection per
// source, another machine on the link holds one open, and the real
// mandos-client still gets its password over link-local. Nothing leaves
// the namespaces.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { NetnsPair, netnsUnavailable, waitForLine } from "./helpers/netns.js";
import { BIN_MANDOS, REPO } from "./helpers/server.js";
import { serverNodeFlags } from "../bench/reboot.js";

const CLIENT_KEYS = join(REPO, "example/client");
/** Inside the test's own namespaces: no other listener can hold it. */
const PORT = 7999;
/** Another machine on the link: a second link-local address on the client's side. */
const NEIGHBOUR = "fe80::4d:1";

test("one machine on a link holding its connection leaves the others on that link theirs", {
  skip: netnsUnavailable() || missing(MANDOS_CLIENT),
  timeout: 120_000,
}, async (t) => {
  const pair = NetnsPair.create();
  t.after(() => pair.cleanup());
  const serverAddress = await pair.waitForLinkLocal(pair.server);
  await pair.waitForLinkLocal(pair.client);
  // Deprecated, so that the kernel never picks it for mandos-client's connection.
  pair.ip(pair.client, "-6", "addr", "add", `${NEIGHBOUR}/64`, "dev", pair.client.link, "nodad", "preferred_lft", "0");
  const server = pair.spawn(pair.server, process.execPath, [
    ...serverNodeFlags(), BIN_MANDOS, "--debug", "--no-dbus", "--no-zeroconf", "--configdir", join(REPO, "example"),
    "--statedir", pair.tempDir(), "--port", String(PORT), "--max-per-source", "1",
  ]);
  let log = "";
  server.stderr!.setEncoding("utf8").on("data", (chunk: string) => { log += chunk; });
  await waitForLine(server, (line) => /Now listening on address/.test(line), 20_000, "stderr")
    .catch((error: unknown) => assert.fail(`${String(error)}\nlog:\n${log}`));

  // The neighbour connects, sends its version line and then nothing: its
  // connection stays open until the handshake's deadline (20 s).
  const holder = pair.spawn(pair.client, process.execPath, ["-e", `
    const s = require("node:net").connect({ host: "${serverAddress}%${pair.client.link}", port: ${PORT}, localAddress: "${NEIGHBOUR}%${pair.client.link}" });
    s.on("connect", () => { s.write("1\\r\\n"); console.log("held"); }); s.on("close", () => process.exit(0)); s.on("error", (e) => { console.log(String(e)); process.exit(1); });
  `]);
  await waitForLine(holder, (line) => line === "held", 10_000);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.match(log, new RegExp(`TCP connection from: \\('${NEIGHBOUR}', `), "the neighbour's connection is open");

  const result = await pair.run(pair.client, MANDOS_CLIENT, [
    `--connect=${serverAddress}:${PORT}`, `--interface=${pair.client.link}`,
    `--pubkey=${CLIENT_KEYS}/pubkey.txt`, `--seckey=${CLIENT_KEYS}/seckey.txt`,
    `--tls-privkey=${CLIENT_KEYS}/tls-privkey.pem`, `--tls-pubkey=${CLIENT_KEYS}/tls-pubkey.pem`,
  ], 15_000);
  assert.equal(result.code, 0, `mandos-client: ${result.stderr}\nserver log:\n${log}`);
  assert.equal(result.stdout, readFileSync(join(CLIENT_KEYS, "password"), "utf8"));
  assert.doesNotMatch(log, /too many connections from/);
});
