// The start's one DEBUG line of where its time went
// (src/main/observe/start-phases.ts): each step from the end of the one
// before it, the first from the process's start, and the total. The line a real start logs is in
// test/state-start.test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import { StartPhases } from "../src/main/observe/start-phases.js";

test("each step is the time since the one before it, the first since the process started; the total is the time since then", () => {
  let now = 350.4;
  const phases = new StartPhases(() => now);
  phases.end("loading");
  now += 5.2;
  phases.end("settings");
  now += 1_200;
  phases.end("clients.conf");
  now += 80;
  phases.end("registry");
  assert.equal(phases.line(20_000), "Serving 20000 clients 1636 ms after the process started: loading 350 ms, settings 5 ms, clients.conf 1200 ms, registry 80 ms");
  assert.match(new StartPhases(() => 2).line(1), /^Serving 1 client 2 ms after the process started: $/);
});
