// Every deadline the serving core sets on a peer, on a manual clock: a
// silent peer and one that stops mid-handshake are closed exactly when their
// deadline passes (not a millisecond before), and shutdown's grace ends on
// the clock too. The Listener runs in this process on a loopback socket; the
// facts come from events.ts's channels, and the log lines from
// daemon/log-serve.ts are checked word for word, as the reference writes them.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/index.js";
import { ClientRegistry } from "../src/main/clients/registry.js";
import type { CheckerSpawner } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { events, type ConnectionAccepted, type ConnectionClosed, type VersionLine } from "../src/main/events.js";
import { createHandshakeRunner, type HandshakeRunner } from "../src/main/serve/handshake-runner.js";
import { HANDSHAKE_TIMEOUT_MS, VERSION_LINE_TIMEOUT_MS } from "../src/main/serve/limits.js";
import { Listener } from "../src/main/serve/listener.js";
import { logServeEvents } from "../src/main/daemon/log-serve.js";
import { silentLogger, type Logger } from "../src/main/daemon/log.js";
import { Recorded } from "./helpers/events.js";

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
      listener = new Listener({ registry, runner, tlsSettings, logger: capture, clock });
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
      const end = await closedAtDeadline(peerPort, HANDSHAKE_TIMEOUT_MS);
      assert.equal(end.outcome, "timeout");
      assert.equal(end.stage, "Handshaking");
      await peer.ended;
      for (const type of recordTypes(Buffer.concat(peer.received))) assert.ok(type === 22 || type === 21, `record type ${type}`);
      const label = `('::1', ${peerPort}, 0, 0)`;
      assert.ok(lines.includes("DEBUG: Protocol version: '1\\n'"), lines.join("\n"));
      assert.ok(lines.includes(`INFO: Connection ${label} timed out during the TLS handshake`), lines.join("\n"));
    });

    test("shutdown waits out its grace on the clock, then drops the connections left", async () => {
      const peer = new Peer(port, []);
      const peerPort = await peer.connected;
      await accepted.next(mine(peerPort));
      let done = false;
      // A grace shorter than the silent peer's own deadline (VERSION_LINE_TIMEOUT_MS).
      const grace = VERSION_LINE_TIMEOUT_MS - 1_000;
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
