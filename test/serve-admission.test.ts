// serve/admission.ts and serve/source.ts on a manual clock: slots go
// round-robin across sources, sources that fail often wait behind the
// others (never starved), a handshake moved to the slow pool frees its
// slot while the pool has room, a source holds at most its cap, failures
// empty a source's bucket and it comes back as the bucket refills, and
// IPv6 peers count per /64.

import { test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import assert from "node:assert/strict";
import { ManualClock } from "../src/main/clock.js";
import { Admission, type Slot, type SlotTicket } from "../src/main/serve/admission.js";
import { Limit } from "../src/main/serve/shared-limit.js";
import { FAILING_DECAY_MS, FAILING_SCORE, FAILING_TURN_EVERY, FAILURE_BURST, FAILURE_REFILL_PER_SECOND, SLOW_EVICT_AFTER_MS } from "../src/main/serve/limits.js";
import { ON_LINK_READ_MS, Sources, parseOnLinkPrefixes, sourceOf } from "../src/main/serve/source.js";

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

/** /proc/net/ipv6_route's text, as Linux writes it: this host's links are 2001:db8:1::/64 on eth0 and 2001:db8:9:9::/112 on eth1. */
const ROUTES = [
  // On eth0's link; its gateway for the rest; this host's own address there.
  "20010db8000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0",
  "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000100000000000000000001 00000400 00000003 00000000 00000003     eth0",
  "20010db8000100000000000000000005 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000004 00000000 80200001     eth0",
  // A /48 reached through a gateway, and one on a link but shorter than /64: both counted by /64.
  "20010db8000200000000000000000000 30 00000000000000000000000000000000 00 20010db8000100000000000000000001 00000400 00000001 00000000 00000003     eth0",
  "20010db8000300000000000000000000 30 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth1",
  // A smaller subnet on eth1; a rejected route; multicast; loopback.
  "20010db8000900090000000000000000 70 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth1",
  "20010db8000400000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000201     eth1",
  "ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0",
  "00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000004 00000000 80200001       lo",
  "",
].join("\n");

test("on the server's own links an IPv6 peer counts by its address; elsewhere by its /64", () => {
  let now = 0;
  let routes = ROUTES;
  let reads = 0;
  const sources = new Sources(() => (reads++, routes), () => now);
  assert.deepEqual(parseOnLinkPrefixes(ROUTES).map((p) => p.length), [64, 112]);
  assert.equal(sources.of("2001:db8:1::7"), "2001:db8:1::7");
  assert.equal(sources.of("2001:DB8:1:0:0:0:0:8"), "2001:db8:1::8", "in RFC 5952's form");
  assert.equal(sources.of("2001:db8:9:9::2"), "2001:db8:9:9::2");
  assert.equal(sources.of("2001:db8:9:9::1:2"), "2001:db8:9:9::/64", "beside the /112, not in it");
  assert.equal(sources.of("2001:db8:2::7"), "2001:db8:2::/64", "through a gateway");
  assert.equal(sources.of("2001:db8:3::7"), "2001:db8:3::/64", "a link's prefix shorter than /64");
  assert.equal(sources.of("2001:db8:4::7"), "2001:db8:4::/64", "a rejected route");
  assert.equal(sources.of("::1"), "::/64");
  assert.equal(sources.of("fe80::1%eth0"), "fe80::1%eth0", "link-local: always on a link");
  assert.equal(sources.of("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(reads, 1, "read once");
  // The link renumbered: the old prefix counts by /64 once the routes are read again.
  routes = ROUTES.replace(/20010db80001/g, "20010db80005");
  now += ON_LINK_READ_MS - 1;
  assert.equal(sources.of("2001:db8:1::7"), "2001:db8:1::7", "not read again yet");
  now += 1;
  assert.equal(sources.of("2001:db8:1::7"), "2001:db8:1::/64");
  assert.equal(sources.of("2001:db8:5::7"), "2001:db8:5::7");
  assert.equal(reads, 2);
  // No routes to read (no IPv6, not Linux): every global address by its /64.
  assert.equal(new Sources(() => "", () => now).of("2001:db8:1::7"), "2001:db8:1::/64");
});

/** An admission of `slots` slots, and what it granted, in order, with each slot's `behind`. */
function granting(clock: ManualClock, slots: number): { admission: Admission; served: string[]; held: Slot[]; ask: (key: string, name: string) => SlotTicket } {
  const admission = new Admission({ clock, maxPerSource: 0, slots });
  const served: string[] = [];
  const held: Slot[] = [];
  const ask = (key: string, name: string): SlotTicket =>
    // One function for every waiter, each ticket handing it its own (as connections do).
    admission.requestSlot(
      key,
      (slot, who: string) => {
        served.push(slot.behind ? `${who} (behind)` : who);
        held.push(slot);
      },
      name,
    );
  return { admission, served, held, ask };
}

test("slots go round-robin across waiting sources, not first come first served", () => {
  const { admission, served, held, ask } = granting(new ManualClock(), 1);
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

test("sources that fail often wait behind the others: a machine that just came is served next, not after the crowd", () => {
  const clock = new ManualClock();
  const { admission, served, held, ask } = granting(clock, 1);
  ask("real", "first");
  // Thirty hostile sources, each failing a handshake a second, each with a connection waiting.
  for (let second = 0; second < 10; second++) {
    for (let i = 0; i < 30; i++) admission.failed(`bad${i}`);
    clock.advance(1000);
  }
  for (let i = 0; i < 30; i++) ask(`bad${i}`, `bad${i}`);
  ask("late", "late");
  held[0]!.release();
  assert.deepEqual(served, ["first", "late"], "the clean newcomer went before thirty failing sources that came before it");
  // With both waiting, one slot in FAILING_TURN_EVERY goes to a failing source: held back, never starved.
  for (let i = 0; i < 8; i++) ask(`good${i}`, `good${i}`);
  for (let i = 0; i < 8; i++) held[held.length - 1]!.release();
  const next = served.slice(2);
  assert.equal(next.filter((s) => s.startsWith("bad")).length, Math.floor(next.length / FAILING_TURN_EVERY), next.join(", "));
  assert.ok(next.filter((s) => s.startsWith("bad")).every((s) => s.endsWith("(behind)")), "a failing source's slot says so, for the runner");
  assert.ok(next.filter((s) => s.startsWith("good")).every((s) => !s.endsWith("(behind)")));
  // With no clean source waiting, the failing ones are served one after another.
  while (admission.counts.waiting > 0) held[held.length - 1]!.release();
  assert.equal(served.filter((s) => s.startsWith("bad")).length, 30);
});

test("a source that starts failing while it waits in turn goes behind as its turn comes", () => {
  const clock = new ManualClock();
  const { admission, served, held, ask } = granting(clock, 1);
  ask("x", "x");
  ask("turned", "turned");
  ask("y", "y");
  // Its failures come after it joined the ring (a flood's first seconds).
  for (let i = 0; i < FAILING_SCORE; i++) admission.failed("turned");
  held[0]!.release();
  held[1]!.release();
  assert.deepEqual(served, ["x", "y", "turned (behind)"]);
});

test("a source that fails now and then (a disabled machine retrying every 10 s, two behind one address) is not held back", () => {
  const clock = new ManualClock();
  const { admission, served, held, ask } = granting(clock, 1);
  // Two machines every 10 s: one after the other ("nat"), or at the same moment ("together", booted by one power event).
  for (let round = 0; round < 30; round++) {
    admission.failed("nat");
    admission.failed("together");
    admission.failed("together");
    clock.advance(5_000);
    admission.failed("nat");
    clock.advance(5_000);
  }
  admission.failed("together");
  admission.failed("together");
  for (let i = 0; i < FAILING_SCORE; i++) admission.failed("bad");
  ask("x", "x");
  ask("bad", "bad");
  ask("nat", "nat");
  ask("together", "together");
  held[0]!.release();
  held[1]!.release();
  assert.deepEqual(served, ["x", "nat", "together"], `two failures every 10 s stay under FAILING_SCORE (${FAILING_SCORE})`);
});

test("a failing source is remembered while its failures count: closing its connections does not clear it", () => {
  const clock = new ManualClock();
  const { admission, served, held, ask } = granting(clock, 1);
  for (let i = 0; i < 10; i++) admission.failed("bad");
  // Its bucket refills within a second; its connections all close: an idle source with a full bucket.
  clock.advance(2_000);
  assert.equal(admission.enter("bad"), null);
  admission.leave("bad");
  ask("x", "x");
  ask("bad", "bad");
  ask("y", "y");
  held[0]!.release();
  assert.deepEqual(served, ["x", "y"], "still failing after its connections closed");
  held[1]!.release();
  assert.deepEqual(served, ["x", "y", "bad (behind)"], "with nobody else waiting, served");
  // Once its score has decayed below FAILING_SCORE it waits in turn again.
  clock.advance(FAILING_DECAY_MS * Math.log(10 / FAILING_SCORE) + 1);
  ask("bad", "bad again");
  ask("z", "z");
  held[2]!.release();
  assert.deepEqual(served.slice(3), ["bad again"]);
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
  assert.deepEqual(admission.counts, { holding: 2, slow: 2, waiting: 2, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
  held[0]!.release();
  assert.equal(held.length, 4, "a slow one's end frees room in the pool, not a slot");
  assert.equal(held[2]!.slow(), true, "now it moves");
  assert.equal(held.length, 5);
  held[3]!.release();
  assert.equal(held.length, 6);
  assert.deepEqual(admission.counts, { holding: 2, slow: 2, waiting: 0, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
  held[4]!.release();
  assert.equal(held[4]!.slow(), false, "a released slot does not move");
  for (const slot of held) slot.release();
  assert.deepEqual(admission.counts, { holding: 0, slow: 0, waiting: 0, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
});

test("a slow handshake's slot, once released, keeps nothing: its connection can be collected", async () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const admission = new Admission({ clock: new ManualClock(), maxPerSource: 0, slots: 4, slowPool: new Limit(64) });
  const connections: Array<WeakRef<object>> = [];
  for (let i = 0; i < 200; i++) {
    // The waiter's own object, as a Connection is for a real slot.
    const connection = { n: i };
    connections.push(new WeakRef(connection));
    admission.requestSlot(`s${i % 7}`, (slot: Slot) => {
      assert.equal(slot.slow(), true);
      slot.release();
    }, connection);
  }
  assert.deepEqual(admission.counts, { holding: 0, slow: 0, waiting: 0, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  // Before the fix all 200 were kept; the newest may still be referenced
  // from the stack V8 last ran, whatever the admission does.
  const kept = connections.flatMap((c, i) => (c.deref() === undefined ? [] : [i]));
  assert.ok(kept.length <= 1, `released slots hold connections ${kept.join(", ")}`);
  // The admission lives on, as a server's does (collected, it would hold nothing either).
  assert.equal(admission.counts.slow, 0);
});

/** An admission's slots with what each waiter is told: granted in order, and asked to close. */
class Waiters {
  readonly held: Slot[] = [];
  readonly asked: number[] = [];
  /** Waiters that say they no longer wait on their peer when asked to close. */
  readonly answered = new Set<number>();
  #next = 0;

  constructor(private readonly admission: Admission) {}

  /** A waiter from `key`; its number is its place in `held` once granted. */
  ask(key: string): SlotTicket {
    const n = this.#next++;
    return this.admission.requestSlot(key, (slot, who: number) => {
      assert.equal(who, this.held.length, "granted in order");
      this.held.push(slot);
    }, n, (who: number) => {
      this.asked.push(who);
      if (this.answered.has(who)) return false;
      // As a connection does: it closes, and its close releases the slot.
      this.held[who]!.release();
      return true;
    });
  }
}

test("with the slow pool full and a connection waiting, its oldest silent one is closed for the next", () => {
  const clock = new ManualClock();
  const admission = new Admission({ clock, maxPerSource: 0, slots: 2, slowPool: new Limit(2) });
  const w = new Waiters(admission);
  for (let i = 0; i < 4; i++) w.ask("stall");
  assert.equal(w.held[0]!.slow(), true);
  clock.advance(10);
  assert.equal(w.held[1]!.slow(), true);
  // The pool (0, 1) and the slots (2, 3) are full; a real client waits.
  w.ask("real");
  assert.equal(w.held[2]!.slow(), false, "nobody in the pool has waited SLOW_EVICT_AFTER_MS yet");
  assert.deepEqual(w.asked, []);
  clock.advance(SLOW_EVICT_AFTER_MS - 10);
  assert.equal(w.held[2]!.slow(), true, "the oldest made room");
  assert.deepEqual(w.asked, [0], "the oldest, and only it, was asked to close");
  assert.equal(w.held.length, 5, "the slot went to the waiting connection");
  assert.deepEqual(admission.counts, { holding: 2, slow: 2, waiting: 0, evictedSlow: 1, evictedWaiting: 0, evictedSilent: 0 });
  assert.equal(w.held[3]!.slow(), false, "nobody waits now: nobody is closed for it");
  assert.deepEqual(w.asked, [0]);
  for (const slot of w.held) slot.release();
  assert.deepEqual(admission.counts, { holding: 0, slow: 0, waiting: 0, evictedSlow: 1, evictedWaiting: 0, evictedSilent: 0 });
});

test("a slow one whose peer has answered is not closed: its wait starts again, and the next oldest goes", () => {
  const clock = new ManualClock();
  const admission = new Admission({ clock, maxPerSource: 0, slots: 1, slowPool: new Limit(3) });
  const w = new Waiters(admission);
  for (let i = 0; i < 5; i++) w.ask("stall");
  for (let i = 0; i < 3; i++) {
    assert.equal(w.held[i]!.slow(), true);
    clock.advance(1);
  }
  // 1 ended before it was asked: skipped. 0 has its peer's answer.
  w.held[1]!.release();
  assert.equal(w.held[3]!.slow(), true, "the place 1 gave back");
  w.answered.add(0);
  clock.advance(SLOW_EVICT_AFTER_MS);
  w.ask("real");
  assert.equal(w.held[4]!.slow(), true);
  assert.deepEqual(w.asked, [0, 2], "0 said no; 1 had ended; 2 closed");
  assert.equal(w.held.length, 6, "the real one has the slot");
  assert.equal(admission.counts.evictedSlow, 1);
  w.ask("real");
  assert.equal(w.held[5]!.slow(), true, "3 had waited long enough too");
  assert.deepEqual(w.asked, [0, 2, 3]);
  w.ask("real");
  assert.equal(w.held[6]!.slow(), false, "0 is the oldest now, its wait counted again from when it said no, and 4 is too young");
  assert.deepEqual(w.asked, [0, 2, 3]);
  assert.deepEqual(admission.counts, { holding: 1, slow: 3, waiting: 1, evictedSlow: 2, evictedWaiting: 0, evictedSilent: 0 });
});

test("a slot or a waiter that cannot be asked to close is never closed", () => {
  const clock = new ManualClock();
  const admission = new Admission({ clock, maxPerSource: 0, slots: 1, slowPool: new Limit(1) });
  const held: Slot[] = [];
  for (let i = 0; i < 3; i++) admission.requestSlot("a", (slot) => held.push(slot), undefined);
  assert.equal(held[0]!.slow(), true);
  clock.advance(10 * SLOW_EVICT_AFTER_MS);
  assert.equal(held[1]!.slow(), false);
  assert.deepEqual(admission.counts, { holding: 1, slow: 1, waiting: 1, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
  for (let i = 0; i < 2; i++) admission.requestSlot("a", (slot) => held.push(slot), undefined);
  assert.equal(admission.evictWaiter("b"), false, "nor a waiter");
  assert.deepEqual(admission.counts, { holding: 1, slow: 1, waiting: 3, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
  held[1]!.release();
  assert.equal(held.length, 3, "and it still gets its slot in turn");
});

test("the reserve: places beyond a full shared pool, given back to the reserve, not the pool", () => {
  const clock = new ManualClock();
  const pool = new Limit(1);
  assert.equal(pool.take(), true, "another thread holds the whole pool");
  const admission = new Admission({ clock, maxPerSource: 0, slots: 1, slowPool: pool, slowReserve: 2 });
  const w = new Waiters(admission);
  for (let i = 0; i < 4; i++) w.ask("stall");
  assert.equal(w.held[0]!.slow(), true);
  assert.equal(w.held[1]!.slow(), true);
  assert.equal(w.held[2]!.slow(), false, "the reserve is used up");
  pool.give();
  assert.equal(w.held[2]!.slow(), true, "the pool's place, once given back");
  assert.equal(pool.taken, 1);
  w.held[0]!.release();
  assert.equal(pool.taken, 1, "a reserve place goes back to the reserve");
  assert.equal(w.held[3]!.slow(), true);
  w.held[2]!.release();
  assert.equal(pool.taken, 0, "a pool place goes back to the pool");
  // The closing works on the reserve alone: 1 and 3 are there, the pool is another thread's again.
  assert.equal(pool.take(), true);
  w.ask("real");
  w.ask("real");
  clock.advance(SLOW_EVICT_AFTER_MS);
  assert.equal(w.held[4]!.slow(), true);
  assert.deepEqual(w.asked, [1]);
  assert.deepEqual(admission.counts, { holding: 1, slow: 2, waiting: 0, evictedSlow: 1, evictedWaiting: 0, evictedSilent: 0 });
  assert.equal(pool.taken, 1, "the heir took the closed one's reserve place, not the pool's");
});

test("at the cap: a waiter of the source with the most waiting goes for another source's newcomer, never the last of a source", () => {
  const clock = new ManualClock();
  const admission = new Admission({ clock, maxPerSource: 0, slots: 1 });
  const asked: string[] = [];
  const tickets = new Map<string, SlotTicket>();
  const wait = (key: string, name: string): void => {
    tickets.set(name, admission.requestSlot(key, () => undefined, name, (who: string, why) => {
      asked.push(`${who} ${why}`);
      return true;
    }));
  };
  wait("holder", "h");
  for (const name of ["a1", "a2", "a3"]) wait("a", name);
  for (const name of ["b1", "b2"]) wait("b", name);
  wait("c", "c1");
  assert.equal(admission.counts.waiting, 6);
  assert.equal(admission.evictWaiter("new"), true);
  assert.deepEqual(asked, ["a3 open-limit"], "the newest of the biggest crowd");
  assert.equal(admission.counts.waiting, 5);
  assert.equal(admission.counts.evictedWaiting, 1);
  assert.equal(admission.evictWaiter("a"), true, "a newcomer from a crowd of 2 still takes from b's crowd of 2");
  assert.deepEqual(asked, ["a3 open-limit", "b2 open-limit"]);
  assert.equal(admission.evictWaiter("a"), false, "a's own crowd is all there is of two or more");
  tickets.get("a1")!.cancel();
  assert.equal(admission.evictWaiter("new"), false, "one waiter a source (a2, b2, c1): none goes");
  wait("c", "c2");
  assert.equal(admission.evictWaiter("new"), true);
  assert.deepEqual(asked.at(-1), "c2 open-limit");
  assert.deepEqual(admission.counts, { holding: 1, slow: 0, waiting: 3, evictedSlow: 0, evictedWaiting: 3, evictedSilent: 0 });
});

test("at the cap: a slow handshake silent SLOW_EVICT_AFTER_MS goes even with nobody waiting for a slot", () => {
  const clock = new ManualClock();
  const admission = new Admission({ clock, maxPerSource: 0, slots: 1, slowPool: new Limit(4) });
  const w = new Waiters(admission);
  w.ask("stall");
  assert.equal(w.held[0]!.slow(), true);
  assert.equal(admission.evictSlow(), false, "not before it has waited SLOW_EVICT_AFTER_MS");
  clock.advance(SLOW_EVICT_AFTER_MS);
  assert.equal(admission.evictSlow(), true);
  assert.deepEqual(w.asked, [0]);
  assert.deepEqual(admission.counts, { holding: 0, slow: 0, waiting: 0, evictedSlow: 1, evictedWaiting: 0, evictedSilent: 0 });
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
