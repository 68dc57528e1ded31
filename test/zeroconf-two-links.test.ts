// Our announcement on a server with two links (found beside the reference:
// a multi-homed server announced again and again, for ever). ciao sends a
// service without TXT entries as one empty string but compared what it
// heard with an empty list: its own announcement, heard back on the other
// link, looked like a rival's, and it probed and announced every ~0.85 s,
// with no goodbye at exit. ciao's own debug lines show each conflict it
// notices. Nothing here multicasts outside the test's namespaces.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { NetnsPair, netnsUnavailable, waitForLine } from "./helpers/netns.js";
import { BIN_MANDOS, REPO } from "./helpers/server.js";
import { serverNodeFlags } from "../bench/reboot.js";

test("on two links the announcement settles: no conflict with itself, one probe", { skip: netnsUnavailable() }, async (t) => {
  const pair = NetnsPair.create();
  t.after(() => pair.cleanup());
  pair.addLink();
  const server = pair.spawn(pair.server, process.execPath, [
    ...serverNodeFlags(), BIN_MANDOS, "--debug", "--no-dbus", "--no-ipv6", "--configdir", join(REPO, "example"), "--statedir", pair.tempDir(), "--port", "0",
  ], { env: { ...process.env, DEBUG: "ciao:*" } });
  let log = "";
  server.stderr!.setEncoding("utf8").on("data", (chunk: string) => { log += chunk; });
  await waitForLine(server, (line) => line.includes("Zeroconf service established."), 20_000, "stderr");
  // The loop announced again within a second; give it five.
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  assert.equal(log.match(/Noticed conflicting record/g)?.length ?? 0, 0, log.split("\n").filter((l) => /conflict/i.test(l)).join("\n"));
  assert.equal(log.match(/Probing for '[^']*' finished successfully/g)?.length, 1);
});

test("a service's TXT, as ciao compares it, is what it sends", async () => {
  const { txtAsSent } = await import("../src/main/zeroconf/announce.js");
  const { TXTRecord } = (await import("@homebridge/ciao/lib/coder/records/TXTRecord.js")) as unknown as {
    TXTRecord: new (name: string, txt: Buffer[]) => { txt: Buffer[] };
  };
  const service = { txt: [] as Buffer[] };
  assert.ok(txtAsSent(service));
  assert.deepEqual(service.txt, new TXTRecord("Mandos._mandos._tcp.local", []).txt);
  assert.equal(txtAsSent({}), false);
});
