// Every deadline the serving core sets on a peer, on a manual clock: a
// silent peer and one that stops mid-handshake are closed exactly when their
// deadline passes (not a millisecond before), stalled peers give up their
// handshake slots exactly PEER_SLOW_MS in, and shutdown's grace ends on
// the clock too, as does the summing of a failing listening socket's
// errors. The Listener runs in this process on a loopback socket; the
// facts come from events.ts's channels, and the log lines from
// daemon/log-serve.ts are checked word for word, as the reference writes them.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import net, { connect, type Server, type Socket } from "node:net";
import { syncBuiltinESMExports } from "node:module";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/index.js";
import { ClientRegistry } from "../src/main/clients/registry.js";
import type { CheckerSpawner } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { events, type ConnectionAccepted, type ConnectionClosed, type VersionLine } from "../src/main/events.js";
import { createHandshakeRunner, type HandshakeRunner } from "../src/main/serve/handshake-runner.js";
import {
  FAILURE_BURST, FAILURE_REFILL_PER_SECOND, HANDSHAKE_SLOTS_PER_WORKER, HANDSHAKE_TIMEOUT_MS, IDLE_EVICT_AFTER_MS, MAX_HANDSHAKES_IN_FLIGHT, PEER_SLOW_MS, SLOW_EVICT_AFTER_MS,
  VERSION_LINE_TIMEOUT_MS,
} from "../src/main/serve/limits.js";
import { Listener } from "../src/main/serve/listener.js";
import { logServeEvents } from "../src/main/daemon/log-serve.js";
import { silentLogger, type Logger } from "../src/main/daemon/log.js";
import { Recorded } from "./helpers/events.js";
import { eventually } from "./helpers/wait.js";

const never: CheckerSpawner = () => ({ kill() {} });

/** A peer on loopback that writes `payload` and records what comes back and how the server ended it. */
class Peer {
  readonly socket: Socket;
  readonly received: Buffer[] = [];
  readonly ended: Promise<"end" | "reset">;
  readonly connected: Promise<number>;

  constructor(port: number, payload: Array<Buffer | string>) {
    this.socket = connect({ host: "::1", port });
    this.connected = new Promise((resolve) => this.socket.once("connect", () => resolve(this.socket.localPort ?? 0)));
    this.socket.on("connect", () => payload.forEach((p) => this.socket.write(p)));
    this.socket.on("data", (d: Buffer) => this.received.push(d));
    this.ended = new Promise((resolve) => {
      this.socket.once("end", () => resolve("end"));
      this.socket.once("error", () => resolve("reset"));
    });
  }
}

/** TLS record content types in `bytes` (stops at a truncated record). */
function recordTypes(bytes: Buffer): number[] {
  const types: number[] = [];
  for (let i = 0; i + 5 <= bytes.length; i += 5 + bytes.readUInt16BE(i + 3)) types.push(bytes[i]!);
  return types;
}

for (const workers of [0, 2]) {
  describe(`deadlines on a manual clock, --workers ${workers}`, () => {
    const clock = new ManualClock();
    const lines: string[] = [];
    const capture: Logger = {
      debug: (m) => lines.push(`DEBUG: ${m}`),
      info: (m) => lines.push(`INFO: ${m}`),
      warning: (m) => lines.push(`WARNING: ${m}`),
      error: (m) => lines.push(`ERROR: ${m}`),
      critical: (m) => lines.push(`CRITICAL: ${m}`),
    };
    let runner: HandshakeRunner;
    let registry: ClientRegistry;
    let listener: Listener;
    let port = 0;
    let unlog: () => void;
    let accepted: Recorded<ConnectionAccepted>;
    let closed: Recorded<ConnectionClosed>;
    let versionLines: Recorded<VersionLine>;

    before(async () => {
      const tlsSettings = parsePriority(DEFAULT_PRIORITY);
      runner = createHandshakeRunner(workers, tlsSettings);
      registry = new ClientRegistry([], { logger: silentLogger, clock, spawner: never });
      // No cap per source: every peer here is ::1, and one test opens a slot count and one more.
      listener = new Listener({ registry, runner, tlsSettings, logger: capture, clock, maxPerSource: 0 });
      ({ port } = await listener.listen({ address: "::1", port: 0, ipv6: true }));
      unlog = logServeEvents(capture);
      accepted = new Recorded(events.connectionAccepted);
      closed = new Recorded(events.connectionClosed);
      versionLines = new Recorded(events.versionLine);
    });

    after(async () => {
      unlog();
      for (const r of [accepted, closed, versionLines]) r.stop();
      await listener.close(0);
      registry.stop();
      await runner.close();
    });

    const mine = (peerPort: number) => (m: { connection: { port: number } }): boolean => m.connection.port === peerPort;

    /** Runs the clock to 1 ms before `deadlineMs` (still open), then to it: resolves with the closing. */
    const closedAtDeadline = async (peerPort: number, deadlineMs: number): Promise<ConnectionClosed> => {
      clock.advance(deadlineMs - 1);
      assert.equal(closed.messages.find(mine(peerPort)), undefined, "closed before its deadline");
      clock.advance(1);
      return closed.next(mine(peerPort));
    };

    test("a silent peer is closed when the version line's deadline passes, not before", async () => {
      const peer = new Peer(port, []);
      const peerPort = await peer.connected;
      await accepted.next(mine(peerPort));
      const end = await closedAtDeadline(peerPort, VERSION_LINE_TIMEOUT_MS);
      assert.equal(end.outcome, "timeout");
      assert.equal(end.stage, "AwaitingLine");
      assert.equal(end.durationMs, VERSION_LINE_TIMEOUT_MS);
      await peer.ended;
      assert.equal(Buffer.concat(peer.received).length, 0);
      const label = `('::1', ${peerPort}, 0, 0)`;
      assert.ok(lines.includes(`INFO: TCP connection from: ${label}`), lines.join("\n"));
      assert.ok(lines.includes(`INFO: Connection ${label} timed out waiting for the version line`), lines.join("\n"));
    });

    test("a peer that stops mid-handshake is closed when the handshake's deadline passes, having seen no application data", async () => {
      // Version line, then half a TLS record header, then silence.
      const peer = new Peer(port, ["1\r\n", Buffer.from([0x16, 0x03])]);
      const peerPort = await peer.connected;
      await versionLines.next(mine(peerPort));
      // The server's ClientHello out: from then on the handshake waits on
      // its peer. Before, it waits on our key shares, and a deadline passed
      // then is ours, not the peer's (test/serve-runner-late.test.ts).
      await eventually(() => peer.received.length > 0, { what: "the server's ClientHello" });
      const end = await closedAtDeadline(peerPort, HANDSHAKE_TIMEOUT_MS);
      assert.equal(end.outcome, "timeout");
      assert.equal(end.stage, "Handshaking");
      await peer.ended;
      for (const type of recordTypes(Buffer.concat(peer.received))) assert.ok(type === 22 || type === 21, `record type ${type}`);
      const label = `('::1', ${peerPort}, 0, 0)`;
      assert.ok(lines.includes("DEBUG: Protocol version: '1\\n'"), lines.join("\n"));
      assert.ok(lines.includes(`INFO: Connection ${label} timed out during the TLS handshake`), lines.join("\n"));
    });

    test("stalled peers give their handshake slots to the next connection once PEER_SLOW_MS has passed", async () => {
      // One more peer than there are slots; each sends its version line,
      // receives our ClientHello and answers nothing.
      const slots = workers > 0 ? HANDSHAKE_SLOTS_PER_WORKER * workers : MAX_HANDSHAKES_IN_FLIGHT;
      const stalled = Array.from({ length: slots }, () => new Peer(port, ["1\r\n"]));
      const hellos = stalled.map((p) => new Promise<void>((resolve) => p.socket.once("data", () => resolve())));
      await Promise.all(hellos);
      const last = new Peer(port, ["1\r\n"]);
      const lastPort = await last.connected;
      await versionLines.next(mine(lastPort));
      const hello = new Promise<void>((resolve) => last.socket.once("data", () => resolve()));
      let greeted = false;
      void hello.then(() => (greeted = true));
      clock.advance(PEER_SLOW_MS - 1);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(greeted, false, "served before any slot was free");
      clock.advance(1);
      let timer: NodeJS.Timeout | undefined;
      const tooLate = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("no ClientHello 5 s after the slots' PEER_SLOW_MS")), 5_000)));
      await Promise.race([hello, tooLate]).finally(() => clearTimeout(timer));
      for (const p of [...stalled, last]) p.socket.destroy();
      const ports = await Promise.all([...stalled, last].map((p) => p.connected));
      for (const peerPort of ports) await closed.next(mine(peerPort));
      // Each hang-up before a decision cost ::1 a token (admission.ts, Rule 3): refill its bucket for the tests after.
      clock.advance((1000 * FAILURE_BURST) / FAILURE_REFILL_PER_SECOND);
      // The tests after find their peer by port; the kernel may give one of these ports again.
      for (const r of [accepted, closed, versionLines]) r.messages.length = 0;
    });

    test("shutdown waits out its grace on the clock, then drops the connections left", async () => {
      const peer = new Peer(port, []);
      const peerPort = await peer.connected;
      await accepted.next(mine(peerPort));
      let done = false;
      // A grace shorter than the time after which a stop stops waiting for a silent peer (IDLE_EVICT_AFTER_MS).
      const grace = IDLE_EVICT_AFTER_MS - 200;
      const closing = listener.close(grace).then(() => void (done = true));
      // The listening socket closes at once; the grace is what keeps close() waiting.
      await new Promise((resolve) => setImmediate(resolve));
      clock.advance(grace - 1);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(done, false, "close() did not wait for the grace");
      assert.equal(closed.messages.find(mine(peerPort)), undefined);
      clock.advance(1);
      await closing;
      const end = await closed.next(mine(peerPort));
      assert.equal(end.outcome, "shutdown");
      await peer.ended;
    });
  });
}

test("a listening socket that fails to accept (ENOBUFS) is said once, summed up every 10 s on the clock while it goes on, and serving goes on", async (t) => {
  // The failure cannot be made to order (libuv hides EMFILE behind a
  // reserved descriptor): the test reaches the net.Server the Listener
  // creates, through node:net's own export, and emits it there.
  let created: Server | undefined;
  const original = net.createServer;
  net.createServer = ((...args: Parameters<typeof net.createServer>) => (created = original(...args))) as typeof net.createServer;
  syncBuiltinESMExports();
  const restore = (): void => {
    net.createServer = original;
    syncBuiltinESMExports();
  };
  t.after(restore);
  const clock = new ManualClock();
  const lines: string[] = [];
  const capture: Logger = { ...silentLogger, error: (m) => lines.push(`ERROR: ${m}`) };
  const tlsSettings = parsePriority(DEFAULT_PRIORITY);
  const runner = createHandshakeRunner(0, tlsSettings);
  const registry = new ClientRegistry([], { logger: silentLogger, clock, spawner: never });
  const listener = new Listener({ registry, runner, tlsSettings, logger: capture, clock, maxPerSource: 0 });
  restore();
  const { port } = await listener.listen({ address: "::1", port: 0, ipv6: true });
  try {
    assert.ok(created, "the Listener's server was seen");
    const enobufs = (): Error => Object.assign(new Error("accept ENOBUFS"), { code: "ENOBUFS", syscall: "accept" });
    for (let i = 0; i < 3; i++) created.emit("error", enobufs());
    assert.deepEqual(lines, ["ERROR: Listening socket error: accept ENOBUFS"], "the first at once, the others counted");
    clock.advance(10_000);
    assert.deepEqual(lines.slice(1), ["ERROR: Listening socket errors: 2 more in the last 10 s"]);
    clock.advance(10_000);
    created.emit("error", enobufs());
    assert.deepEqual(lines.slice(2), ["ERROR: Listening socket error: accept ENOBUFS"], "a quiet interval ended the flood: the next is said at once");
    // Still serving: a version line it does not know gets the reference's answer and a close.
    const peer = new Peer(port, ["2\r\n"]);
    assert.equal(await peer.ended, "end");
  } finally {
    await listener.close(0);
    registry.stop();
    await runner.close();
  }
});

for (const workers of [0, 2]) {
  test(`a stop closes the peers that keep it waiting (no line for 1 s, 1 s silent in the slow pool) rather than wait its grace, --workers ${workers}`, { timeout: 30_000 }, async () => {
    const clock = new ManualClock();
    const tlsSettings = parsePriority(DEFAULT_PRIORITY);
    const runner = createHandshakeRunner(workers, tlsSettings);
    const registry = new ClientRegistry([], { logger: silentLogger, clock, spawner: never });
    const listener = new Listener({ registry, runner, tlsSettings, logger: silentLogger, clock, maxPerSource: 0 });
    const accepted = new Recorded(events.connectionAccepted);
    const closed = new Recorded(events.connectionClosed);
    const mine = (peerPort: number) => (m: { connection: { port: number } }): boolean => m.connection.port === peerPort;
    try {
      const { port } = await listener.listen({ address: "::1", port: 0, ipv6: true });
      // One says nothing; one sends its line and half a record, and then nothing.
      const silent = new Peer(port, []);
      const stalled = new Peer(port, ["1\r\n", Buffer.from([0x16, 0x03])]);
      const [silentPort, stalledPort] = await Promise.all([silent.connected, stalled.connected]);
      await accepted.next(mine(silentPort));
      await eventually(() => stalled.received.length > 0, { what: "the server's ClientHello" });
      // The handshake waits on its peer: into the slow pool.
      clock.advance(PEER_SLOW_MS);
      let done = false;
      const grace = 10 * SLOW_EVICT_AFTER_MS;
      const closing = listener.close(grace).then(() => void (done = true));
      clock.advance(IDLE_EVICT_AFTER_MS - PEER_SLOW_MS - 1);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(closed.messages.find(mine(silentPort)), undefined, "not before IDLE_EVICT_AFTER_MS");
      assert.equal(done, false);
      // The next look after both have waited their second.
      clock.advance(PEER_SLOW_MS + SLOW_EVICT_AFTER_MS);
      const ends = await Promise.all([closed.next(mine(silentPort)), closed.next(mine(stalledPort))]);
      assert.deepEqual(ends.map((e) => [e.outcome, e.stage]), [["shutdown", "AwaitingLine"], ["shutdown", "Handshaking"]]);
      await closing;
      assert.ok(clock.elapsed() < grace, `stopped at ${clock.elapsed()} ms of the clock, its grace ${grace}`);
      await Promise.all([silent.ended, stalled.ended]);
    } finally {
      accepted.stop();
      closed.stop();
      await listener.close(0);
      registry.stop();
      await runner.close();
    }
  });
}
