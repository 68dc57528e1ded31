// serve/admission.ts and serve/source.ts on a manual clock: slots go
// round-robin across sources, a handshake moved to the slow pool frees its
// slot while the pool has room, a source holds at most its cap, failures
// empty a source's bucket and it comes back as the bucket refills, and
// IPv6 peers count per /64.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../src/main/clock.js";
import { Admission, type Slot, type SlotTicket } from "../src/main/serve/admission.js";
import { Limit } from "../src/main/serve/shared-limit.js";
import { FAILURE_BURST, FAILURE_REFILL_PER_SECOND } from "../src/main/serve/limits.js";
import { sourceOf } from "../src/main/serve/source.js";

test("a source counts as its IPv4 address, its IPv6 /64, or its link-local address on its link", () => {
  assert.equal(sourceOf("192.0.2.7"), "192.0.2.7");
  assert.equal(sourceOf("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(sourceOf("2001:db8:0:1:aaaa::1"), "2001:db8:0:1::/64");
  assert.equal(sourceOf("2001:db8:0:1:bbbb:cccc:dddd:eeee"), "2001:db8:0:1::/64");
  assert.notEqual(sourceOf("2001:db8:0:2::1"), sourceOf("2001:db8:0:1::1"));
  // Every machine on a link has a link-local address in fe80::/64: each is its own source.
  assert.equal(sourceOf("fe80::1%eth0"), "fe80::1%eth0");
  assert.equal(sourceOf("FE80:0:0:0:0A00:27FF:FE4E:66A1%eth0"), "fe80::a00:27ff:fe4e:66a1%eth0");
  assert.notEqual(sourceOf("fe80::a00:27ff:fe4e:66a2%eth0"), sourceOf("fe80::a00:27ff:fe4e:66a1%eth0"));
  assert.notEqual(sourceOf("fe80::1%eth1"), sourceOf("fe80::1%eth0"));
  assert.equal(sourceOf("fe80::1"), "fe80::1");
  assert.equal(sourceOf("febf:0:0:0:1:0:0:0%2"), "febf::1:0:0:0%2");
  assert.equal(sourceOf("fec0::1"), "fec0::/64");
  // RFC 5952: the prefix's trailing zeros fold into "::", its inner ones stay.
  assert.equal(sourceOf("::1"), "::/64");
  assert.equal(sourceOf("2001:db8::5"), "2001:db8::/64");
  assert.equal(sourceOf("2001:0:0:5::1"), "2001:0:0:5::/64");
});

test("slots go round-robin across waiting sources, not first come first served", () => {
  const admission = new Admission({ clock: new ManualClock(), maxPerSource: 0, slots: 1 });
  const served: string[] = [];
  const held: Slot[] = [];
  const ask = (key: string, name: string): SlotTicket =>
    // One function for every waiter, each ticket handing it its own (as connections do).
    admission.requestSlot(
      key,
      (slot, who: string) => {
        served.push(who);
        held.push(slot);
      },
      name,
    );
  ask("busy", "busy-0");
  for (let i = 1; i <= 3; i++) ask("busy", `busy-${i}`);
  ask("quiet", "quiet-0");
  const cancelled = ask("busy", "cancelled");
  assert.equal(admission.counts.waiting, 5);
  cancelled.cancel();
  cancelled.cancel();
  assert.equal(admission.counts.waiting, 4, "a cancelled ticket no longer waits, however often cancelled");
  assert.deepEqual(served, ["busy-0"]);
  for (let i = 0; i < 4; i++) held[i]!.release();
  assert.deepEqual(served, ["busy-0", "busy-1", "quiet-0", "busy-2", "busy-3"]);
  assert.equal(admission.counts.holding, 1);
  held[4]!.release();
  assert.equal(admission.counts.holding, 0, "the cancelled ticket is skipped, not served");
  assert.deepEqual(served.length, 5);
});

test("a release counts once, however often it is called", () => {
  const admission = new Admission({ clock: new ManualClock(), maxPerSource: 0, slots: 1, slowPool: new Limit(1) });
  const held: Slot[] = [];
  for (let i = 0; i < 3; i++) admission.requestSlot("a", (slot) => held.push(slot), undefined);
  held[0]!.release();
  held[0]!.release();
  assert.equal(held.length, 2, "one release, one slot for the next");
  assert.equal(admission.counts.holding, 1);
});

test("a handshake moved to the slow pool gives its slot to the next, up to the pool's size", () => {
  const admission = new Admission({ clock: new ManualClock(), maxPerSource: 0, slots: 2, slowPool: new Limit(2) });
  const held: Slot[] = [];
  for (let i = 0; i < 6; i++) admission.requestSlot(`s${i}`, (slot) => held.push(slot), undefined);
  assert.equal(held.length, 2);
  assert.equal(held[0]!.slow(), true);
  assert.equal(held.length, 3, "the slow one's slot went to the next");
  assert.equal(held[0]!.slow(), true, "asking again changes nothing");
  assert.equal(held.length, 3);
  assert.equal(held[1]!.slow(), true);
  assert.equal(held.length, 4);
  assert.equal(held[2]!.slow(), false, "the pool is full: it keeps its slot");
  assert.equal(held.length, 4);
  assert.deepEqual(admission.counts, { holding: 2, slow: 2, waiting: 2 });
  held[0]!.release();
  assert.equal(held.length, 4, "a slow one's end frees room in the pool, not a slot");
  assert.equal(held[2]!.slow(), true, "now it moves");
  assert.equal(held.length, 5);
  held[3]!.release();
  assert.equal(held.length, 6);
  assert.deepEqual(admission.counts, { holding: 2, slow: 2, waiting: 0 });
  held[4]!.release();
  assert.equal(held[4]!.slow(), false, "a released slot does not move");
  for (const slot of held) slot.release();
  assert.deepEqual(admission.counts, { holding: 0, slow: 0, waiting: 0 });
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
