// serve/admission.ts and serve/source.ts on a manual clock: slots go
// round-robin across sources, a source holds at most its cap, failures
// empty a source's bucket and it comes back as the bucket refills, and
// IPv6 peers count per /64.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../src/main/clock.js";
import { Admission } from "../src/main/serve/admission.js";
import { FAILURE_BURST, FAILURE_REFILL_PER_SECOND } from "../src/main/serve/limits.js";
import { sourceOf } from "../src/main/serve/source.js";

test("a source counts as its IPv4 address or its IPv6 /64", () => {
  assert.equal(sourceOf("192.0.2.7"), "192.0.2.7");
  assert.equal(sourceOf("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(sourceOf("2001:db8:0:1:aaaa::1"), "2001:db8:0:1::/64");
  assert.equal(sourceOf("2001:db8:0:1:bbbb:cccc:dddd:eeee"), "2001:db8:0:1::/64");
  assert.notEqual(sourceOf("2001:db8:0:2::1"), sourceOf("2001:db8:0:1::1"));
  assert.equal(sourceOf("fe80::1%eth0"), "fe80:0:0:0::/64");
});

test("slots go round-robin across waiting sources, not first come first served", () => {
  const admission = new Admission({ clock: new ManualClock(), maxPerSource: 0, slots: 1 });
  const served: string[] = [];
  admission.requestSlot("busy", () => served.push("busy-0"));
  for (let i = 1; i <= 3; i++) admission.requestSlot("busy", () => served.push(`busy-${i}`));
  admission.requestSlot("quiet", () => served.push("quiet-0"));
  const cancelled = admission.requestSlot("busy", () => served.push("cancelled"));
  cancelled.cancel();
  assert.deepEqual(served, ["busy-0"]);
  for (let i = 0; i < 4; i++) admission.releaseSlot();
  assert.deepEqual(served, ["busy-0", "busy-1", "quiet-0", "busy-2", "busy-3"]);
  assert.equal(admission.inFlight, 1);
  admission.releaseSlot();
  assert.equal(admission.inFlight, 0, "the cancelled ticket is skipped, not served");
  assert.deepEqual(served.length, 5);
});

test("a source holds at most its cap of open connections", () => {
  const admission = new Admission({ clock: new ManualClock(), maxPerSource: 2, slots: 10 });
  assert.equal(admission.enter("a"), null);
  assert.equal(admission.enter("a"), null);
  assert.equal(admission.enter("a"), "source-limit");
  assert.equal(admission.enter("b"), null, "other sources are not affected");
  admission.leave("a");
  assert.equal(admission.enter("a"), null);
});

test("failures empty a source's bucket; it is refused until the bucket refills", () => {
  const clock = new ManualClock();
  const admission = new Admission({ clock, maxPerSource: 0, slots: 10 });
  for (let i = 0; i < FAILURE_BURST; i++) admission.failed("a");
  assert.equal(admission.enter("a"), "throttled");
  assert.equal(admission.enter("b"), null);
  clock.advance(1000 / FAILURE_REFILL_PER_SECOND - 1);
  assert.equal(admission.enter("a"), "throttled");
  clock.advance(1);
  assert.equal(admission.enter("a"), null);
});

test("a client retrying every 10 s never empties its bucket, even 48 of them behind one address", () => {
  const clock = new ManualClock();
  const admission = new Admission({ clock, maxPerSource: 0, slots: 10 });
  for (let round = 0; round < 100; round++) {
    for (let machine = 0; machine < 48; machine++) {
      assert.equal(admission.enter("nat"), null, `round ${round}, machine ${machine}`);
      admission.failed("nat");
      admission.leave("nat");
    }
    clock.advance(10_000);
  }
});
