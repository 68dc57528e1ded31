// serve/source-recheck.ts's rounds, with stand-ins for the serve threads:
// a held refusal is decided again only once every live thread has sent
// what it had when the refusal came, one that comes during a round waits
// for the next, one still over is held again up to MAX_RECHECK_ROUNDS,
// a thread that ends is not waited for, and one thread holds nothing.

import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_RECHECK_ROUNDS, SourceRecheck, type HeldEnter, type RecheckPeer } from "../src/main/serve/source-recheck.js";

class Peer implements RecheckPeer {
  ended = false;
  readonly asked: number[] = [];
  constructor(readonly name: string) {}
  flush(round: number): void {
    this.asked.push(round);
  }
}

function setup(): { a: Peer; b: Peer; recheck: SourceRecheck<Peer>; decided: string[] } {
  const a = new Peer("a");
  const b = new Peer("b");
  const decided: string[] = [];
  const recheck = new SourceRecheck([a, b], (h: HeldEnter<Peer>) => {
    decided.push(`${h.peer.name}:${h.id}:${h.source}`);
    return true;
  });
  return { a, b, recheck, decided };
}

test("a held refusal is decided again once every thread has flushed for its round", () => {
  const { a, b, recheck, decided } = setup();
  recheck.hold(a, 1, "192.0.2.1");
  assert.deepEqual([a.asked, b.asked], [[1], [1]]);
  recheck.flushed(a, 1);
  recheck.flushed(b, 0); // an older round's answer counts for nothing
  assert.deepEqual(decided, []);
  recheck.flushed(b, 1);
  assert.deepEqual(decided, ["a:1:192.0.2.1"]);
  recheck.flushed(b, 1); // said twice: nothing more
  assert.deepEqual(decided, ["a:1:192.0.2.1"]);
});

test("a refusal held during a round waits for the next one", () => {
  const { a, b, recheck, decided } = setup();
  recheck.hold(a, 1, "s");
  recheck.flushed(a, 1);
  // b's leave may have come after round 1's flush reached it: round 1 does not do.
  recheck.hold(b, 2, "s");
  assert.deepEqual([a.asked, b.asked], [[1], [1]]);
  recheck.flushed(b, 1);
  assert.deepEqual(decided, ["a:1:s"]);
  assert.deepEqual([a.asked, b.asked], [[1, 2], [1, 2]]);
  recheck.flushed(a, 2);
  recheck.flushed(b, 2);
  assert.deepEqual(decided, ["a:1:s", "b:2:s"]);
});

test("a thread that ends is not waited for, and its own held refusals are dropped", () => {
  const { a, b, recheck, decided } = setup();
  recheck.hold(a, 1, "s");
  recheck.hold(a, 2, "t"); // during round 1: for round 2
  recheck.hold(b, 3, "u");
  recheck.flushed(a, 1);
  b.ended = true;
  recheck.ended(b);
  assert.deepEqual(decided, ["a:1:s"]);
  assert.deepEqual([a.asked, b.asked], [[1, 2], [1]], "round 2 asks a alone");
  recheck.flushed(a, 2);
  assert.deepEqual(decided, ["a:1:s", "a:2:t"]);
  recheck.hold(a, 4, "v");
  recheck.flushed(a, 3);
  assert.deepEqual(decided, ["a:1:s", "a:2:t", "a:4:v"]);
});

test("refusals held again while their round ends wait for the next round together, none lost", () => {
  const a = new Peer("a");
  const b = new Peer("b");
  const decided: string[] = [];
  const recheck = new SourceRecheck([a, b], (h: HeldEnter<Peer>) => {
    if (h.id > 0 && h.rounds < 2) return false;
    decided.push(`${h.id}/${h.rounds}`);
    return true;
  });
  recheck.hold(a, 0, "s");
  recheck.hold(a, 1, "s"); // these two for round 2
  recheck.hold(b, 2, "s");
  for (const round of [1, 2]) {
    recheck.flushed(a, round);
    recheck.flushed(b, round);
  }
  assert.deepEqual(decided, ["0/1"], "1 and 2 held again at round 2's end");
  assert.deepEqual([a.asked, b.asked], [[1, 2, 3], [1, 2, 3]], "one round more, not one each");
  recheck.flushed(a, 3);
  recheck.flushed(b, 3);
  assert.deepEqual(decided, ["0/1", "1/2", "2/2"]);
});

test(`a refusal still over is held again until its MAX_RECHECK_ROUNDS-th round, then given; one thread holds nothing`, () => {
  const a = new Peer("a");
  const b = new Peer("b");
  const seen: string[] = [];
  const recheck = new SourceRecheck([a, b], (h: HeldEnter<Peer>, last: boolean) => {
    seen.push(`${h.rounds}${last ? " last" : ""}`);
    return last;
  });
  assert.equal(recheck.hold(a, 1, "s"), true);
  for (let round = 1; round <= MAX_RECHECK_ROUNDS + 1; round++) {
    recheck.flushed(a, round);
    recheck.flushed(b, round);
  }
  assert.deepEqual(seen, [...Array.from({ length: MAX_RECHECK_ROUNDS - 1 }, (_, i) => `${i + 1}`), `${MAX_RECHECK_ROUNDS} last`]);
  assert.deepEqual(a.asked, Array.from({ length: MAX_RECHECK_ROUNDS }, (_, i) => i + 1), "no round after the last");
  const alone = new Peer("alone");
  const single = new SourceRecheck([alone], () => true);
  assert.equal(single.hold(alone, 1, "s"), false, "answered at once");
  assert.deepEqual(alone.asked, []);
});
