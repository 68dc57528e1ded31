// The bounds serve threads count together (serve/shared-limit.ts): the
// open connections and the slow pool hold for the process, whichever
// thread accepted the connections. Whichever serve thread wakes first
// accepts a whole burst from the shared socket; when each thread had a
// fixed share of these bounds, one thread with 526 of 640 stalled peers
// filled its slots and its share of the slow pool, and a real client it
// accepted next waited out their 20 s while the other thread's share lay
// idle (server-fair-admission, --serve-threads 2: 1 run in 12).
//
// Here two or eight Listeners in this process stand for the threads,
// configured by serveThreadLimits() as ServeThreads configures its
// threads, and every peer goes to one of them: what the kernel's accept
// did by chance is done on purpose. A Limit is also raced from two real
// worker threads.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { Worker } from "node:worker_threads";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/index.js";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { events, type ConnectionAccepted, type ConnectionClosed, type ConnectionNotAdmitted } from "../src/main/events.js";
import { Admission, type Slot } from "../src/main/serve/admission.js";
import { createHandshakeRunner, type HandshakeRunner } from "../src/main/serve/handshake-runner.js";
import { MAX_SLOW_HANDSHAKES, PEER_SLOW_MS, SLOW_EVICT_AFTER_MS, SLOW_RESERVE_PER_THREAD } from "../src/main/serve/limits.js";
import { Listener } from "../src/main/serve/listener.js";
import { Limit, sharedBounds, sharedLimits } from "../src/main/serve/shared-limit.js";
import { serveThreadLimits } from "../src/main/serve/serve-threads.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { Recorded } from "./helpers/events.js";

const never: CheckerSpawner = () => ({ kill() {} });

test("a Limit grants up to its max and no more, and counts what is given back", () => {
  const limit = new Limit(2);
  assert.equal(limit.take(), true);
  assert.equal(limit.take(), true);
  assert.equal(limit.take(), false);
  assert.equal(limit.taken, 2, "a refused take counts nothing");
  limit.give();
  assert.equal(limit.take(), true);
  assert.equal(new Limit(0).take(), false);
});

test("views of the same shared bounds count together; each bound has its own cell", () => {
  const bounds = sharedBounds(3, 1);
  const [a, b] = [sharedLimits(bounds), sharedLimits(bounds)];
  assert.equal(a.open.take(), true);
  assert.equal(b.open.take(), true);
  assert.equal(b.open.take(), true);
  assert.equal(a.open.take(), false, "the other view's takes count here");
  assert.equal(a.slow.take(), true, "the slow pool is counted apart from the open connections");
  assert.equal(b.slow.take(), false);
  a.open.give();
  assert.equal(b.open.take(), true);
  assert.equal(b.open.taken, 3);
});

test("two threads racing on one shared Limit are granted exactly its max between them", async () => {
  const max = 1_000_000;
  const tries = 2_000_000;
  const bounds = sharedBounds(max, 0);
  const url = new URL("../src/main/serve/shared-limit.js", import.meta.url).href;
  // Both threads start together (a barrier), then take `tries` times as
  // fast as they can, giving back every other success at once (so gives
  // race with takes too), and report how many they still hold.
  const start = new Int32Array(new SharedArrayBuffer(4));
  const code = `
    const { parentPort, workerData } = require("node:worker_threads");
    import(workerData.url).then(({ sharedLimits }) => {
      const { open } = sharedLimits(workerData.bounds);
      parentPort.postMessage("ready");
      Atomics.wait(workerData.start, 0, 0);
      let held = 0;
      for (let i = 0; i < workerData.tries; i++) {
        if (!open.take()) continue;
        if (i % 2 === 0) open.give();
        else held++;
      }
      parentPort.postMessage(held);
    });`;
  const workers = [0, 1].map(() => new Worker(code, { eval: true, workerData: { url, bounds, tries, start } }));
  const results = workers.map((worker) => new Promise<number>((resolve, reject) => {
    worker.on("message", (m: number | "ready") => m !== "ready" && resolve(m));
    worker.once("error", reject);
  }));
  await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once("message", resolve))));
  Atomics.store(start, 0, 1);
  Atomics.notify(start, 0);
  const held = await Promise.all(results);
  const limit = sharedLimits(bounds).open;
  assert.equal(limit.taken, held[0]! + held[1]!, "every take and give counted once");
  assert.equal(limit.taken, max, `held ${held.join(" + ")}: the bound is reached, never passed`);
});

test("admissions that share a slow pool move handshakes to it up to its size between them", () => {
  const clock = new ManualClock();
  const pool = new Limit(3);
  const [a, b] = [0, 1].map(() => new Admission({ clock, maxPerSource: 0, slots: 2, slowPool: pool })) as [Admission, Admission];
  const slotsOf = (admission: Admission): Slot[] => {
    const held: Slot[] = [];
    for (let i = 0; i < 4; i++) admission.requestSlot(`s${i}`, (slot) => held.push(slot), undefined);
    return held;
  };
  const [inA, inB] = [slotsOf(a), slotsOf(b)];
  assert.equal(inA[0]!.slow(), true);
  assert.equal(inA[1]!.slow(), true);
  assert.equal(inA.length, 4, "each move gave its slot to the next");
  assert.equal(inA[2]!.slow(), true, "one thread may take more than its share when the others do not need it");
  assert.equal(inB[0]!.slow(), false, "the pool is full for every thread");
  assert.deepEqual(b.counts, { holding: 2, slow: 0, waiting: 2, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
  inA[0]!.release();
  assert.equal(pool.taken, 2, "a slow handshake that ends gives its place back");
  assert.equal(inB[0]!.slow(), true);
  assert.deepEqual(a.counts, { holding: 1, slow: 2, waiting: 0, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
  assert.deepEqual(b.counts, { holding: 2, slow: 1, waiting: 1, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
});

/** A peer on loopback that sends the version line (or nothing) and keeps what it is sent. */
class Peer {
  readonly socket: Socket;
  readonly connected: Promise<number>;
  /** Resolves at the first bytes from the server (our ClientHello). */
  readonly greeted: Promise<void>;

  /** To ::1, or to 127.0.0.1 from `from` (a loopback address: a source of its own). */
  constructor(port: number, line: boolean, from?: string) {
    this.socket = connect(from === undefined ? { host: "::1", port } : { host: "127.0.0.1", port, localAddress: from });
    this.socket.on("error", () => undefined);
    this.connected = new Promise((resolve) => this.socket.once("connect", () => resolve(this.socket.localPort ?? 0)));
    if (line) this.socket.once("connect", () => this.socket.write("1\r\n"));
    this.greeted = new Promise((resolve) => this.socket.once("data", () => resolve()));
  }
}

/** Resolves with `promise`, or fails after `ms` saying `what`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Listeners configured as `count` serve threads are, all in this process, on one manual clock. */
function describeThreads(count: number, maxOpen: number, body: (setup: { clock: ManualClock; ports: () => number[]; listeners: () => Listener[] }) => void): void {
  describe(`${count} listeners configured as serve threads, maxOpen ${maxOpen}`, () => {
    const clock = new ManualClock();
    let runner: HandshakeRunner;
    let registry: ClientRegistry;
    let listeners: Listener[] = [];
    let ports: number[] = [];

    before(async () => {
      const tlsSettings = parsePriority(DEFAULT_PRIORITY);
      runner = createHandshakeRunner(0, tlsSettings);
      registry = new ClientRegistry([], { logger: silentLogger, clock, spawner: never });
      const { slots, shared } = serveThreadLimits(count, maxOpen);
      listeners = Array.from({ length: count }, () => new Listener({ registry, runner, tlsSettings, logger: silentLogger, clock, maxPerSource: 0, slots, shared: sharedLimits(shared) }));
      ports = (await Promise.all(listeners.map((l) => l.listen({ address: "::1", port: 0, ipv6: true })))).map((b) => b.port);
    });

    after(async () => {
      // close()'s grace runs on the manual clock.
      const closed = Promise.all(listeners.map((l) => l.close(0)));
      clock.advance(0);
      await closed;
      registry.stop();
      await runner.close();
    });

    body({ clock, ports: () => ports, listeners: () => listeners });
  });
}

describeThreads(8, 10_000, ({ clock, ports, listeners }) => {
  test("a thread that accepted every stalled peer moves them to the whole slow pool, and serves the next", async () => {
    const [port] = ports();
    const { slots } = serveThreadLimits(8, 10_000);
    // Twice a thread's slots: with a fixed share of the slow pool (512 / 8
    // = 64 = its slots), the second half kept every slot after moving the
    // first, and the next peer got no ClientHello for HANDSHAKE_TIMEOUT_MS.
    assert.ok(2 * slots < MAX_SLOW_HANDSHAKES);
    const peers: Peer[] = [];
    try {
      for (let round = 0; round < 2; round++) {
        const batch = Array.from({ length: slots }, () => new Peer(port!, true));
        peers.push(...batch);
        await within(Promise.all(batch.map((p) => p.greeted)), 10_000, `round ${round}: ClientHellos not sent`);
        // PEER_SLOW_MS on, each of them waits on its peer: to the slow pool.
        clock.advance(PEER_SLOW_MS);
      }
      assert.deepEqual(listeners()[0]!.handshakes, { holding: 0, slow: 2 * slots, waiting: 0, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
      const next = new Peer(port!, true);
      peers.push(next);
      await within(next.greeted, 5_000, "the next peer got no ClientHello: its thread's slots were all held by stalled peers");
    } finally {
      for (const p of peers) p.socket.destroy();
    }
  });
});

/** Polls `ok` on real time (the listeners' events come from sockets) until true, or fails after `ms` saying `what`. */
async function until(ok: () => boolean, ms: number, what: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(what());
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describeThreads(2, 10_000, ({ clock, ports, listeners }) => {
  test("a thread left with every slot stalled after another filled the slow pool closes its own oldest for the next", async () => {
    const [portA, portB] = ports() as [number, number];
    const [a, b] = listeners() as [Listener, Listener];
    const { slots } = serveThreadLimits(2, 10_000);
    assert.equal(2 * slots, MAX_SLOW_HANDSHAKES);
    const closed = new Recorded<ConnectionClosed>(events.connectionClosed);
    const peers: Peer[] = [];
    const stall = async (port: number, n: number, what: string): Promise<Peer[]> => {
      const batch = Array.from({ length: n }, () => new Peer(port, true));
      peers.push(...batch);
      await within(Promise.all(batch.map((p) => p.greeted)), 10_000, `${what}: ClientHellos not sent`);
      return batch;
    };
    try {
      // A fills the whole shared pool.
      for (let round = 0; round < 2; round++) {
        await stall(portA, slots, `A, round ${round}`);
        clock.advance(PEER_SLOW_MS);
      }
      assert.deepEqual(a.handshakes, { holding: 0, slow: MAX_SLOW_HANDSHAKES, waiting: 0, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
      // B's slots fill, and SLOW_RESERVE_PER_THREAD of them move to its reserve; their slots fill again.
      const reserved = await stall(portB, slots, "B");
      clock.advance(PEER_SLOW_MS);
      await stall(portB, SLOW_RESERVE_PER_THREAD, "B, after its reserve");
      assert.deepEqual(b.handshakes, { holding: slots, slow: SLOW_RESERVE_PER_THREAD, waiting: 0, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 });
      // The next peer on B waits; once B's oldest slow ones have waited SLOW_EVICT_AFTER_MS, one of them is closed for it.
      const next = new Peer(portB, true);
      peers.push(next);
      await until(() => b.handshakes.waiting === 1, 5_000, () => `B: ${JSON.stringify(b.handshakes)}`);
      clock.advance(SLOW_EVICT_AFTER_MS - PEER_SLOW_MS);
      assert.equal(b.handshakes.evictedSlow, 0, "not before the oldest has waited SLOW_EVICT_AFTER_MS");
      clock.advance(PEER_SLOW_MS);
      await within(next.greeted, 5_000, "the next peer got no ClientHello: its thread could move none of its stalled peers");
      assert.deepEqual(b.handshakes, { holding: slots, slow: SLOW_RESERVE_PER_THREAD, waiting: 0, evictedSlow: 1, evictedWaiting: 0, evictedSilent: 0 });
      assert.deepEqual(a.handshakes, { holding: 0, slow: MAX_SLOW_HANDSHAKES, waiting: 0, evictedSlow: 0, evictedWaiting: 0, evictedSilent: 0 }, "A had nobody waiting: its own stay");
      const gone = closed.messages.filter((m) => m.outcome === "timeout");
      assert.equal(gone.length, 1);
      assert.equal(gone[0]!.stage, "Handshaking");
      assert.match(gone[0]!.detail ?? "", /slow pool was full and others waited/);
      const local = new Set(await Promise.all(reserved.map((p) => p.connected)));
      assert.ok(local.has(gone[0]!.connection.port), "the one closed was one of B's first, moved to its reserve");
    } finally {
      closed.stop();
      for (const p of peers) p.socket.destroy();
    }
  });
});

describeThreads(2, 40, ({ ports }) => {
  test("the open connections are bounded for all threads together, not a fixed share each", async () => {
    const [portA, portB] = ports() as [number, number];
    const refused = new Recorded<ConnectionNotAdmitted>(events.connectionNotAdmitted);
    const accepted = new Recorded<ConnectionAccepted>(events.connectionAccepted);
    const peers: Peer[] = [];
    const open = (port: number, n: number): Peer[] => {
      const some = Array.from({ length: n }, () => new Peer(port, false));
      peers.push(...some);
      return some;
    };
    try {
      // 30 on one thread: with a share each (40 / 2) ten were closed at accept.
      const onA = open(portA, 30);
      await Promise.all(onA.map((p) => p.connected));
      await within(accepted.next(() => accepted.messages.length >= 30), 5_000, `${accepted.messages.length} of 30 accepted`);
      assert.equal(refused.messages.length, 0);
      // 15 on the other: ten fit under the bound, five are closed.
      const onB = open(portB, 15);
      await Promise.all(onB.map((p) => p.connected));
      await within(refused.next(() => refused.messages.length >= 5), 5_000, `${refused.messages.length} of 5 refused`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(accepted.messages.length, 40);
      assert.equal(refused.messages.length, 5);
      assert.ok(refused.messages.every((m) => m.why === "open-limit"));
      // What one thread closes, another may take.
      for (const p of onA.slice(0, 3)) p.socket.destroy();
      await new Promise((resolve) => setTimeout(resolve, 200));
      open(portB, 3);
      await within(accepted.next(() => accepted.messages.length >= 43), 5_000, `${accepted.messages.length - 40} of 3 accepted after three closed`);
      assert.equal(refused.messages.length, 5);
    } finally {
      for (const p of peers) p.socket.destroy();
      refused.stop();
      accepted.stop();
    }
  });
});

describe("a listener at its open connections cap, its slot held and a crowd from one source waiting", () => {
  const clock = new ManualClock();
  let runner: HandshakeRunner;
  let registry: ClientRegistry;
  let listener: Listener;
  let port = 0;
  const CAP = 6;

  before(async () => {
    const tlsSettings = parsePriority(DEFAULT_PRIORITY);
    runner = createHandshakeRunner(0, tlsSettings);
    registry = new ClientRegistry([], { logger: silentLogger, clock, spawner: never });
    listener = new Listener({ registry, runner, tlsSettings, logger: silentLogger, clock, maxPerSource: 0, slots: 1, maxOpen: CAP });
    port = (await listener.listen({ address: "127.0.0.1", port: 0, ipv6: false })).port;
  });

  after(async () => {
    const closed = listener.close(0);
    clock.advance(0);
    await closed;
    registry.stop();
    await runner.close();
  });

  test("a newcomer from another source takes the place of the crowd's oldest waiter; one from the crowd does not", async () => {
    const closed = new Recorded<ConnectionClosed>(events.connectionClosed);
    const refused = new Recorded<ConnectionNotAdmitted>(events.connectionNotAdmitted);
    const peers: Peer[] = [];
    try {
      // One holds the slot (its peer silent, the clock still: it never moves to the slow pool); five wait.
      const crowd = Array.from({ length: CAP }, () => new Peer(port, true, "127.0.0.2"));
      peers.push(...crowd);
      await until(() => listener.handshakes.holding === 1 && listener.handshakes.waiting === CAP - 1, 5_000, () => JSON.stringify(listener.handshakes));
      const waitingPorts = new Set(await Promise.all(crowd.map((p) => p.connected)));
      const newcomer = new Peer(port, true, "127.0.0.3");
      peers.push(newcomer);
      await until(() => closed.messages.length === 1, 5_000, () => `${closed.messages.length} closed`);
      const [gone] = closed.messages as [ConnectionClosed];
      assert.equal(gone.outcome, "evicted");
      assert.equal(gone.stage, "AwaitingSlot");
      assert.equal(gone.connection.source, "127.0.0.2");
      assert.ok(waitingPorts.has(gone.connection.port));
      await until(() => listener.handshakes.waiting === CAP - 1, 5_000, () => JSON.stringify(listener.handshakes));
      assert.equal(listener.handshakes.evictedWaiting, 1);
      assert.equal(refused.messages.length, 0);
      // One more from the crowd: its own source has the most waiting, the newcomer's one: closed at accept.
      peers.push(new Peer(port, true, "127.0.0.2"));
      await until(() => refused.messages.length === 1, 5_000, () => `${refused.messages.length} refused`);
      assert.equal(refused.messages[0]!.why, "open-limit");
      assert.equal(closed.messages.length, 1);
      // As the slot comes free, round-robin across the two sources gives the newcomer its turn within two handshakes.
      let left = crowd.filter((p) => !p.socket.destroyed);
      const before = left.length;
      let served = false;
      for (let turn = 0; turn < 3 && !served; turn++) {
        const next = await within(Promise.race([newcomer.greeted.then(() => null), ...left.map((p) => p.greeted.then(() => p))]), 5_000, `turn ${turn}: nobody greeted`);
        if (next === null) served = true;
        else {
          next.socket.destroy();
          left = left.filter((p) => p !== next);
        }
      }
      assert.ok(served, "the newcomer waited behind the crowd");
      assert.equal(before - left.length, 2, "the holder and one of the crowd before it, in turn");
    } finally {
      closed.stop();
      refused.stop();
      for (const p of peers) p.socket.destroy();
    }
  });
});
