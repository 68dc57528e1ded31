// A link that loses an address while we announce with ciao (found in an
// audit: the server exited). ciao (1.3.12) keeps the link's IPv4 socket
// once the address is gone, with no netmask, and the next IPv4 mDNS packet
// heard there failed an assertion in a socket listener: an uncaught
// exception, exit status 1. The announcer must survive it, and announce
// again without the lost address. Nothing here multicasts outside the
// test's namespaces.

import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { announcerEnv, NetnsPair, netnsUnavailable, waitForLine } from "./helpers/netns.js";

const ANNOUNCER = fileURLToPath(new URL("./helpers/zeroconf-announcer.js", import.meta.url));

/** How often the announcer and ciao look at the interfaces here, instead of every 15 s. */
const POLL_MS = 500;

/** One IPv4 mDNS query (PTR _mandos._tcp.local) to 224.0.0.251, sent from `address`. */
const QUERY_SCRIPT = `
const socket = require("node:dgram").createSocket({ type: "udp4", reuseAddr: true });
const name = Buffer.concat([..."_mandos _tcp local".split(" ").map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]);
const query = Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), name, Buffer.from([0, 12, 0, 1])]);
socket.bind(0, () => {
  socket.setMulticastInterface(process.argv[1]);
  socket.send(query, 5353, "224.0.0.251", (error) => { if (error) throw error; socket.close(); });
});
`;

test("a link that loses its IPv4 address: an mDNS packet heard there does not stop us, and we announce again", { skip: netnsUnavailable() }, async (t) => {
  const pair = NetnsPair.create();
  t.after(() => pair.cleanup());
  const announcer = pair.spawn(pair.server, process.execPath, [
    ANNOUNCER, JSON.stringify({ name: "Mandos", port: 4711, interface: pair.server.link, ipv6: true, interfacePollMs: POLL_MS }),
  ], { env: announcerEnv() });
  let output = "";
  announcer.stdout!.setEncoding("utf8").on("data", (chunk: string) => { output += chunk; });
  let stderr = "";
  announcer.stderr!.setEncoding("utf8").on("data", (chunk: string) => { stderr += chunk; });
  const exited = new Promise<string>((resolve) => announcer.once("exit", (code, signal) => resolve(`exited (${code ?? signal})`)));

  assert.equal(await waitForLine(announcer, (l) => /^(ESTABLISHED|FAILED)/.test(l), 20_000), "ESTABLISHED Mandos");
  pair.ip(pair.server, "addr", "del", `${pair.server.address}/16`, "dev", pair.server.link);
  await waitForLine(announcer, (l) => l.includes(`${pair.server.link} no longer has IPv4; announcing again`), 10 * POLL_MS);
  // ciao's own look at the interfaces, which forgets the netmask, is on the same beat; let a few pass.
  await new Promise((resolve) => setTimeout(resolve, 4 * POLL_MS));
  const sent = await pair.run(pair.client, process.execPath, ["-e", QUERY_SCRIPT, pair.client.address]);
  assert.equal(sent.code, 0, sent.stderr);
  const outcome = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(() => resolve("alive"), 2_000))]);
  assert.equal(outcome, "alive", `${output}\n${stderr}`);

  announcer.kill("SIGTERM");
  await waitForLine(announcer, (l) => l === "STOPPED", 10_000);
  assert.doesNotMatch(output, /^(ERROR|CRITICAL):/m, output);
});
