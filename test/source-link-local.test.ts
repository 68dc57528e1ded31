// Peers on the server's own link count one by one (src/main/serve/source.ts).
// A fleet that finds the server by Zeroconf is on its link, and connects
// from IPv6 link-local addresses, all in fe80::/64, or from the link's
// global /64; counted as one source, the whole link shared one cap of open
// connections (and a rack rebooting at once was served 128 at a time).
// Here, in two network namespaces this test makes, the server allows one
// connection per source, another machine on the link holds one open, and
// the real mandos-client still gets its password, over link-local and
// over the link's global prefix. Nothing leaves the namespaces.

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { NetnsPair, netnsUnavailable, waitForLine } from "./helpers/netns.js";
import { BIN_MANDOS, REPO } from "./helpers/server.js";
import { serverNodeFlags } from "../bench/reboot.js";
import { eventually } from "./helpers/wait.js";

const CLIENT_KEYS = join(REPO, "example/client");
/** Inside the test's own namespaces: no other listener can hold it. */
const PORT = 7999;
const skip = netnsUnavailable() || missing(MANDOS_CLIENT);

/** Where the server is, and the other machine's address on the same link. */
interface Link {
  /** The server's address as mandos-client's --connect and the neighbour's connect() name it (with its zone, for link-local). */
  readonly server: string;
  /** The server's address for --connect (link-local: with --interface). */
  readonly connect: string;
  /** Another machine on the link: a second address on the client's side. */
  readonly neighbour: string;
}

/** The neighbour holds a connection open on `link`; mandos-client, from its own address on the link, must be served. */
async function neighbourHoldsOne(t: TestContext, pair: NetnsPair, link: Link): Promise<void> {
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
    const s = require("node:net").connect({ host: "${link.server}", port: ${PORT}, localAddress: "${link.neighbour}" });
    s.on("connect", () => { s.write("1\\r\\n"); console.log("held"); }); s.on("close", () => process.exit(0)); s.on("error", (e) => { console.log(String(e)); process.exit(1); });
  `]);
  t.after(() => holder.kill());
  await waitForLine(holder, (line) => line === "held", 10_000);
  // The server says it took the connection once its accept has run, which
  // on a loaded machine may be well after the neighbour's connect: wait for
  // that line (not a fixed 200 ms), so that mandos-client comes only once
  // the neighbour's place is held.
  const neighbour = link.neighbour.replace(/%.*/, "");
  const accepted = new RegExp(`TCP connection from: \\('${neighbour}', `);
  await eventually(() => accepted.test(log), { what: "the server's line for the neighbour's connection", timeoutMs: 10_000, context: () => `log:\n${log}` });

  const result = await pair.run(pair.client, MANDOS_CLIENT, [
    `--connect=${link.connect}:${PORT}`, `--interface=${pair.client.link}`,
    `--pubkey=${CLIENT_KEYS}/pubkey.txt`, `--seckey=${CLIENT_KEYS}/seckey.txt`,
    `--tls-privkey=${CLIENT_KEYS}/tls-privkey.pem`, `--tls-pubkey=${CLIENT_KEYS}/tls-pubkey.pem`,
  ], 15_000);
  assert.equal(result.code, 0, `mandos-client: ${result.stderr}\nserver log:\n${log}`);
  assert.equal(result.stdout, readFileSync(join(CLIENT_KEYS, "password"), "utf8"));
  assert.doesNotMatch(log, /too many connections from/);
  // The line lags mandos-client's exit (written once the kernel has taken the secret).
  await eventually(() => /Sending secret to /.test(log), { what: "the server's line for the secret sent", timeoutMs: 10_000, context: () => `log:\n${log}` });
}

test("one machine on a link holding its connection leaves the others on that link theirs", { skip, timeout: 120_000 }, async (t) => {
  const pair = NetnsPair.create();
  t.after(() => pair.cleanup());
  const serverAddress = await pair.waitForLinkLocal(pair.server);
  await pair.waitForLinkLocal(pair.client);
  const neighbour = "fe80::4d:1";
  // Deprecated, so that the kernel never picks it for mandos-client's connection.
  pair.ip(pair.client, "-6", "addr", "add", `${neighbour}/64`, "dev", pair.client.link, "nodad", "preferred_lft", "0");
  await neighbourHoldsOne(t, pair, {
    server: `${serverAddress}%${pair.client.link}`,
    connect: serverAddress,
    neighbour: `${neighbour}%${pair.client.link}`,
  });
});

test("so does one on the link's global /64: the server's on-link prefix counts by address", { skip, timeout: 120_000 }, async (t) => {
  const pair = NetnsPair.create();
  t.after(() => pair.cleanup());
  // 2001:db8::/32 is for documentation (RFC 3849): it reaches nothing outside.
  pair.ip(pair.server, "-6", "addr", "add", "2001:db8:4d::1/64", "dev", pair.server.link, "nodad");
  pair.ip(pair.client, "-6", "addr", "add", "2001:db8:4d::2/64", "dev", pair.client.link, "nodad");
  const neighbour = "2001:db8:4d::4d:1";
  pair.ip(pair.client, "-6", "addr", "add", `${neighbour}/64`, "dev", pair.client.link, "nodad", "preferred_lft", "0");
  await pair.waitForLinkLocal(pair.server);
  await pair.waitForLinkLocal(pair.client);
  await neighbourHoldsOne(t, pair, { server: "2001:db8:4d::1", connect: "2001:db8:4d::1", neighbour });
});
