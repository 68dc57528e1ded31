// --servicename that our own responder (ciao) cannot send as one DNS label
// (found in an audit, beside the reference through Avahi): "Lab.Mandos"
// went out as two labels and was never found, though the log said
// "Zeroconf service established."; a name over 63 bytes was retried,
// silently, for ever. Now either is an ERROR line at start-up and the server
// serves on, without Zeroconf (docs/ZEROCONF.md). Nothing here multicasts
// outside the test's namespaces.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { NetnsPair, netnsUnavailable, waitForLine } from "./helpers/netns.js";
import { BIN_MANDOS, REPO } from "./helpers/server.js";

test("a service name with a '.' or over 63 bytes: an ERROR line, no false 'established', and the server serves on", { skip: netnsUnavailable() }, async (t) => {
  const pair = NetnsPair.create();
  t.after(() => pair.cleanup());
  for (const [name, reason] of [
    ["Lab.Mandos", "ciao would announce it as two DNS labels, split at the \".\""],
    ["M".repeat(64), "it is 64 bytes long, and a DNS label at most 63"],
  ] as const) {
    const server = pair.spawn(pair.server, process.execPath, [
      BIN_MANDOS, "--debug", "--no-dbus", "--configdir", join(REPO, "example"), "--statedir", pair.tempDir(), "--port", "0",
      "--servicename", name,
    ], {
      // No avahi-daemon on this bus: our own responder (ciao).
      env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${join(pair.tempDir(), "no-bus")}` },
    });
    let log = "";
    server.stderr!.setEncoding("utf8").on("data", (chunk: string) => { log += chunk; });
    await waitForLine(server, (line) => line.includes("Starting main loop"), 20_000, "stderr");
    assert.match(log, /Zeroconf: announcing with our own responder \(ciao\)/);
    const error = `ERROR: Zeroconf: cannot announce service name '${name}' with our own responder (ciao): ${reason}; not announcing`;
    assert.ok(log.includes(error), log);
    // ciao announced "Lab.Mandos" within a second, and retried a long name at once.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    assert.doesNotMatch(log, /Zeroconf service established|Adding Zeroconf service/, log);
    assert.equal(server.exitCode, null, log);
    server.kill("SIGTERM");
    await new Promise((resolve) => server.once("exit", resolve));
  }
});
