// `--interface` naming no interface (a typo, or a name over IFNAMSIZ that
// can never be one): the reference's SO_BINDTODEVICE fails with ENODEV, it
// logs `ERROR: Interface X does not exist, cannot bind` and serves every
// interface (mandos(8): not critical). Ours used to warn and then close
// every connection, serving no one. The real mandos-client must get its
// password; and connections refused for another interface are said at
// WARNING, summed while they last, not at DEBUG.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../src/main/clock.js";
import { SUMMARY_INTERVAL_MS, logServeEvents } from "../src/main/daemon/log-serve.js";
import type { Logger } from "../src/main/daemon/log.js";
import { events } from "../src/main/events.js";
import { MAX_INTERFACE_NAME_BYTES, interfaceExists } from "../src/main/serve/interface-filter.js";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { REPO, runMandosClient, startServer } from "./helpers/server.js";

const PASSWORD = readFileSync(join(REPO, "example/client/password"), "utf8");

test("names that are not interfaces: unknown, too long, invalid; lo and an address-less one are", () => {
  const none = (): NodeJS.Dict<import("node:os").NetworkInterfaceInfo[]> => ({});
  assert.equal(interfaceExists("lo"), true);
  assert.equal(interfaceExists("nosuch0"), false);
  assert.equal(interfaceExists("a".repeat(MAX_INTERFACE_NAME_BYTES + 1)), false);
  for (const name of ["", ".", "..", "../lo", "lo:1", "l o"]) assert.equal(interfaceExists(name, none), false, JSON.stringify(name));
  // Up without an address: not in networkInterfaces(), still in sysfs.
  assert.equal(interfaceExists("lo", none), true);
});

for (const name of ["nosuch0", "abcdefghijklmnopqrstuvwxyz"]) {
  for (const threads of [[], ["--serve-threads", "2"]]) {
    test(`--interface ${name}${threads.length ? ` ${threads.join(" ")}` : ""}: one ERROR, as the reference's, and every interface served`, { skip: missing(MANDOS_CLIENT) }, async () => {
      const state = mkdtempSync(join(tmpdir(), "mandos-ts-ifmissing-"));
      const server = await startServer(["--configdir", join(REPO, "example"), "--statedir", state, "--port", "0", "--interface", name, ...threads]);
      try {
        for (const host of ["127.0.0.1", "::1"]) {
          const r = await runMandosClient(join(REPO, "example/client"), host, server.port, 30_000);
          assert.equal(r.stdout.toString(), PASSWORD, `${host}: ${r.stderr}\n${server.log()}`);
        }
        const log = server.log();
        assert.equal(log.match(new RegExp(`ERROR: Interface ${name} does not exist, cannot bind`, "g"))?.length, 1, log);
        assert.doesNotMatch(log, /not on the served interface|does not exist \(yet\)/, log);
      } finally {
        await server.stop();
        rmSync(state, { recursive: true, force: true });
      }
    });
  }
}

test("connections refused for another interface: the first at WARNING, then summed while they last", () => {
  const clock = new ManualClock();
  const lines: string[] = [];
  const capture: Logger = {
    debug: (m) => void lines.push(`DEBUG: ${m}`), info: (m) => void lines.push(`INFO: ${m}`), warning: (m) => void lines.push(`WARNING: ${m}`),
    error: (m) => void lines.push(`ERROR: ${m}`), critical: (m) => void lines.push(`CRITICAL: ${m}`), enabledFor: () => true,
  };
  const stop = logServeEvents(capture, clock);
  const refused = (local: string): void => events.connectionNotAdmitted.publish({ address: "192.0.2.9", localAddress: local, why: "not-on-interface" });
  try {
    for (let i = 0; i < 5; i++) refused("::ffff:192.0.2.1");
    assert.deepEqual(lines, ["WARNING: Refusing connection to ::ffff:192.0.2.1: not on the served interface"]);
    clock.advance(SUMMARY_INTERVAL_MS);
    assert.deepEqual(lines.slice(1), ["WARNING: Refused 4 more connections in the last 10 s: not on the served interface"]);
    refused("::ffff:192.0.2.1");
  } finally {
    stop();
  }
  assert.deepEqual(lines.slice(2), ["WARNING: Refused 1 more connections in the last 1 s: not on the served interface"]);
});
