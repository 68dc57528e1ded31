// IPv6 with our own responder (ciao) on a host with two links (found in an
// audit: mandos-client on the second link, which had IPv6 link-local only,
// never found the server). ciao joined ff02::fb on every link's socket with
// a bare fe80:: address, so the kernel joined it on one link only (the other
// never heard a query), and its announcements over IPv6 carried no AAAA
// record. A listener on the other end of both links must hear announcements
// with AAAA records on each, and its query on each link answered on that
// link alone. Nothing here multicasts outside the test's namespaces.

import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { announcerEnv, NetnsPair, netnsUnavailable, waitForLine } from "./helpers/netns.js";
import type { Heard } from "./helpers/mdns-listener.js";

const ANNOUNCER = fileURLToPath(new URL("./helpers/zeroconf-announcer.js", import.meta.url));
const LISTENER = fileURLToPath(new URL("./helpers/mdns-listener.js", import.meta.url));

test("over IPv6 on two links, one with link-local only: announced with AAAA, and queries answered, on both", { skip: netnsUnavailable() }, async (t) => {
  const pair = NetnsPair.create();
  t.after(() => pair.cleanup());
  const second = pair.addLink();
  pair.ip(pair.server, "addr", "del", "192.168.254.1/24", "dev", second.server);
  pair.ip(pair.client, "addr", "del", "192.168.254.2/24", "dev", second.client);
  for (const [side, link] of [[pair.server, pair.server.link], [pair.server, second.server], [pair.client, pair.client.link], [pair.client, second.client]] as const) {
    await pair.waitForLinkLocal({ ...side, link });
  }

  const listener = pair.spawn(pair.client, process.execPath, [LISTENER, JSON.stringify({ links: [pair.client.link, second.client], seconds: 4 })], { env: announcerEnv() });
  await waitForLine(listener, (l) => l === "LISTENING", 10_000);
  const announcer = pair.spawn(pair.server, process.execPath, [ANNOUNCER, JSON.stringify({ name: "Mandos", port: 4711, ipv6: true })], { env: announcerEnv() });
  let output = "";
  announcer.stdout!.setEncoding("utf8").on("data", (chunk: string) => { output += chunk; });
  const heard = JSON.parse(await waitForLine(listener, (l) => l.startsWith("{"), 30_000)) as Heard;
  assert.match(output, /^ESTABLISHED Mandos$/m, output);
  const [a, b] = [pair.client.link, second.client];
  assert.deepEqual(heard, {
    announced: { [a]: { aaaa: true }, [b]: { aaaa: true } },
    answered: { [a]: { [a]: { aaaa: true } }, [b]: { [b]: { aaaa: true } } },
  }, output);
});
