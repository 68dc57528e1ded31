// The reference's three DEBUG lines for each client created
// (src/main/daemon/log-clients.ts): written when DEBUG is, and with DEBUG
// off not even listened for, so that a fleet's start (20,000 clients)
// makes no view of each client for lines no sink takes.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { silentLogger, type Logger, type LogLevel } from "../src/main/daemon/log.js";
import { events } from "../src/main/events.js";
import { logClientEvents } from "../src/main/daemon/log-clients.js";
import { clientSettings } from "./helpers/clients.js";

/** A logger that keeps its lines, writing from `lowest` up. */
function collector(lowest: LogLevel): Logger & { lines: string[] } {
  const lines: string[] = [];
  const add = (level: string) => (message: string): void => void lines.push(`${level}: ${message}`);
  const order: LogLevel[] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
  return {
    lines, debug: add("DEBUG"), info: add("INFO"), warning: add("WARNING"), error: add("ERROR"), critical: add("CRITICAL"),
    enabledFor: (level) => order.indexOf(level) >= order.indexOf(lowest),
  };
}

test("at DEBUG, each client created has the reference's three lines; above it, the creation is not listened for", () => {
  const debug = collector("DEBUG");
  const stop = logClientEvents(debug);
  try {
    const reg = new ClientRegistry([clientSettings("web", { keyId: "AB12", fingerprint: "" })], { logger: silentLogger });
    reg.stop();
    assert.deepEqual(debug.lines, ["DEBUG: Creating client 'web'", "DEBUG:   Key ID: AB12", "DEBUG:   Fingerprint: "]);
  } finally {
    stop();
  }
  assert.equal(events.clientAdded.hasSubscribers, false);
  const info = collector("INFO");
  const stopInfo = logClientEvents(info);
  try {
    assert.equal(events.clientAdded.hasSubscribers, false);
    // Its other lines are still listened for.
    assert.equal(events.checkerStarted.hasSubscribers, true);
    new ClientRegistry([clientSettings("web")], { logger: silentLogger }).stop();
    assert.deepEqual(info.lines, []);
  } finally {
    stopInfo();
  }
});
