// A peer that trickles its handshake a byte a read (an audit, F3: 15,347
// one-byte segments, 770 ms of our CPU for one unknown key) is closed once
// its handshake has taken MAX_HANDSHAKE_READS reads: a TLS error, logged as
// the other handshake failures are, and a failure of its source. One that
// sends its flight in one-byte records, one a segment (F2: a flight task,
// a worker's round trip, for each), costs a few flight tasks. The
// Listener runs in this process on a loopback socket; the facts come from
// events.ts's channels, the failure from the listener's SourceGate, the
// tasks from a runner that counts them.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { DEFAULT_PRIORITY, EngineDriver, parsePriority, type HandshakeTask, type TlsSettings } from "../src/tls/index.js";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { events, type ConnectionClosed } from "../src/main/events.js";
import { createHandshakeRunner, type HandshakeRunner } from "../src/main/serve/handshake-runner.js";
import { MAX_HANDSHAKE_READS } from "../src/main/serve/limits.js";
import { Listener, type SourceGate } from "../src/main/serve/listener.js";
import { logServeEvents } from "../src/main/daemon/log-serve.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { Recorded } from "./helpers/events.js";
import { keptLogger } from "./helpers/log-watch.js";
import { FaultyServer } from "./helpers/faulty-server.js";
import { makeKey } from "./helpers/tls-pair.js";

const never: CheckerSpawner = () => ({ kill() {} });

/** change_cipher_spec records (RFC 8446 §5: dropped while handshaking), the bytes a trickling peer sends. */
const CCS = Buffer.of(20, 3, 3, 0, 1, 1);

/** Admits every source and records the failures the listener reports. */
class RecordingGate implements SourceGate {
  readonly failures: string[] = [];
  enter(): null {
    return null;
  }
  leave(): void {}
  failed(source: string): void {
    this.failures.push(source);
  }
}

/** TLS records back to back in `bytes`, each whole. */
function records(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at + 5 <= bytes.length; at += 5 + bytes.readUInt16BE(at + 3)) out.push(bytes.subarray(at, at + 5 + bytes.readUInt16BE(at + 3)));
  return out;
}

/**
 * An unknown peer (Ed25519) that presents a 2,048-bit RSA raw key, its
 * flight in one-byte records, each record its own write a millisecond
 * apart: its Certificate never completes within the bounds. Resolves with
 * the peer's port once the server has closed.
 */
function fragmentedFlight(port: number, settings: TlsSettings): Promise<number> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: "::1", port });
    const queue: Buffer[] = [];
    let localPort = 0;
    let timer: NodeJS.Timeout | undefined;
    const identity = makeKey("ed25519");
    const peer = new FaultyServer(settings, identity, { fragment: 1, presentKey: makeKey("rsa").publicKeySpki });
    const done = (): void => {
      clearTimeout(timer);
      driver.stop();
      socket.destroy();
      resolve(localPort);
    };
    const next = (): void => {
      timer = undefined;
      const record = queue.shift();
      if (socket.destroyed || !record) return;
      socket.write(record);
      timer = setTimeout(next, 1);
    };
    const driver = new EngineDriver(peer, {
      write: (bytes) => {
        queue.push(...records(bytes));
        if (timer === undefined) next();
      },
      event: () => {},
    });
    socket.setNoDelay(true);
    socket.on("connect", () => {
      localPort = socket.localPort ?? 0;
      socket.write("1\r\n");
      driver.pump();
    });
    socket.on("data", (d: Buffer) => driver.receive(d));
    socket.on("end", done);
    socket.on("error", done);
    socket.on("close", done);
  });
}

/** A runner that counts the server-flight tasks it is given. */
function countingRunner(runner: HandshakeRunner, counts: { flightTasks: number; behind: boolean[] }): HandshakeRunner {
  return new Proxy(runner, {
    get(target, property) {
      if (property === "run") {
        return (task: HandshakeTask, caller?: Parameters<HandshakeRunner["run"]>[1]) => {
          if (task.kind === "server-flight") {
            counts.flightTasks++;
            counts.behind.push(caller?.behind === true);
          }
          return target.run(task, caller);
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * Sends the version line, then, once our ClientHello has come, `bytes` one
 * byte a write, a millisecond apart, until the server closes. Resolves with
 * the writes made and the peer's port.
 */
function trickle(port: number, bytes: Buffer): Promise<{ writes: number; port: number }> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: "::1", port });
    let writes = 0;
    let started = false;
    let localPort = 0;
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ writes, port: localPort });
    };
    const next = (): void => {
      if (socket.destroyed || writes >= bytes.length) return done();
      socket.write(bytes.subarray(writes, writes + 1));
      writes++;
      timer = setTimeout(next, 1);
    };
    socket.setNoDelay(true);
    socket.on("connect", () => {
      localPort = socket.localPort ?? 0;
      socket.write("1\r\n");
    });
    socket.on("data", () => {
      if (started) return;
      started = true;
      next();
    });
    socket.on("end", done);
    socket.on("error", done);
    socket.on("close", done);
  });
}

for (const workers of [0, 2]) {
  describe(`a handshake past MAX_HANDSHAKE_READS, --workers ${workers}`, () => {
    const clock = new ManualClock();
    const capture = keptLogger();
    const lines = capture.lines;
    const gate = new RecordingGate();
    const counts = { flightTasks: 0, behind: [] as boolean[] };
    const tlsSettings = parsePriority(DEFAULT_PRIORITY);
    /** What before() starts and after() stops. */
    let served: { runner: HandshakeRunner; registry: ClientRegistry; listener: Listener; port: number; unlog: () => void; closed: Recorded<ConnectionClosed> };

    before(async () => {
      const runner = createHandshakeRunner(workers, tlsSettings);
      const registry = new ClientRegistry([], { logger: silentLogger, clock, spawner: never });
      const listener = new Listener({ registry, runner: countingRunner(runner, counts), tlsSettings, logger: capture, clock, gate });
      const { port } = await listener.listen({ address: "::1", port: 0, ipv6: true });
      served = { runner, registry, listener, port, unlog: logServeEvents(capture), closed: new Recorded(events.connectionClosed) };
    });

    after(async () => {
      served.unlog();
      served.closed.stop();
      await served.listener.close(0);
      served.registry.stop();
      await served.runner.close();
    });

    test("a peer that trickles change_cipher_spec a byte a read is closed as a TLS error of its source, before the bytes run out", async () => {
      // 600 records, 3,600 bytes: far under MAX_HANDSHAKE_BUFFER_BYTES, and
      // many times MAX_HANDSHAKE_READS reads.
      const bytes = Buffer.concat(Array.from({ length: 600 }, () => CCS));
      const peer = await trickle(served.port, bytes);
      const end = await served.closed.next((m) => m.connection.port === peer.port);
      assert.equal(end.outcome, "tls-error");
      assert.equal(end.stage, "Handshaking");
      assert.equal(end.gnutls, "GNUTLS_E_UNEXPECTED_PACKET_LENGTH");
      assert.ok(peer.writes < bytes.length, `the server read all ${peer.writes} writes`);
      assert.ok(peer.writes > MAX_HANDSHAKE_READS, `closed after ${peer.writes} writes`);
      // Counted against its source, as the other handshake failures are (admission.ts, Rule 3).
      assert.deepEqual(gate.failures, [end.connection.source]);
      const label = `('::1', ${peer.port}, 0, 0)`;
      assert.ok(lines.includes("WARNING: Handshake failed: Error decoding the received TLS packet."), lines.join("\n"));
      assert.ok(lines.includes(`DEBUG: TLS error from ${label} in the handshake: more than ${MAX_HANDSHAKE_READS} reads before the handshake completed`), lines.join("\n"));
    });

    test("a flight in one-byte records, one a segment, costs a few flight tasks, not one a read", async () => {
      counts.flightTasks = 0;
      const failures = gate.failures.length;
      const peerPort = await fragmentedFlight(served.port, tlsSettings);
      const end = await served.closed.next((m) => m.connection.port === peerPort);
      assert.equal(end.outcome, "tls-error");
      assert.equal(end.stage, "Handshaking");
      // About two a handshake message (tls-flight-linear.test.ts); one a read was ~MAX_HANDSHAKE_READS.
      assert.ok(counts.flightTasks > 0 && counts.flightTasks <= 2 * 5 + 1, `${counts.flightTasks} flight tasks`);
      assert.equal(gate.failures.length, failures + 1);
      assert.ok(counts.behind.length > 0 && counts.behind.every((b) => !b), "two failures: not held back");
    });

    test("the thread's own slots hear its failures too, not only the gate: a source failing often is put behind", async () => {
      // A serve thread counts sources on the main thread (the gate), and its handshake slots itself (admission.ts, Rule 2).
      for (let i = 0; i < 2; i++) {
        const port = await fragmentedFlight(served.port, tlsSettings);
        await served.closed.next((m) => m.connection.port === port);
      }
      counts.behind.length = 0;
      const peerPort = await fragmentedFlight(served.port, tlsSettings);
      await served.closed.next((m) => m.connection.port === peerPort);
      assert.ok(counts.behind.length > 0 && counts.behind.every((b) => b), `four failures on the manual clock: behind (${counts.behind.join(", ")})`);
    });
  });
}
