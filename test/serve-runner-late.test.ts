// A handshake whose time runs out while it waits on our handshake runner
// (key shares or a task that never come: a wedged worker), not on its
// peer, is our failure: closed as internal-error with an ERROR line, and
// not the peer's timeout (which counts against its address, admission.ts
// Rule 3). Regression test for the s53 audit's F1, where a wedged worker
// made every client "time out during the TLS handshake" at INFO.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { DEFAULT_PRIORITY, parsePriority, type EphemeralKeyShares, type HandshakeTaskResult } from "../src/tls/index.js";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { events, type ConnectionClosed, type VersionLine } from "../src/main/events.js";
import type { HandshakeRunner } from "../src/main/serve/handshake-runner.js";
import { HANDSHAKE_TIMEOUT_MS } from "../src/main/serve/limits.js";
import { Listener, OwnFailureLines } from "../src/main/serve/listener.js";
import { logServeEvents } from "../src/main/daemon/log-serve.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { Recorded } from "./helpers/events.js";
import { keptLogger } from "./helpers/log-watch.js";

const never: CheckerSpawner = () => ({ kill() {} });

/** A runner whose key shares never come, as with its only worker wedged. */
const unanswering: HandshakeRunner = {
  keyShares: () => new Promise<EphemeralKeyShares>(() => undefined),
  run: () => new Promise<HandshakeTaskResult>(() => undefined),
  ready: () => Promise.resolve(true),
  workers: 1,
  queued: 0,
  replaced: 0,
  unanswering: null,
  close: () => Promise.resolve(),
};

describe("a handshake that waited on the handshake runner until its time ran out", () => {
  const clock = new ManualClock();
  const capture = keptLogger();
  const lines = capture.lines;
  let registry: ClientRegistry;
  let listener: Listener;
  let port = 0;
  let unlog: () => void;
  let closed: Recorded<ConnectionClosed>;
  let versionLines: Recorded<VersionLine>;

  before(async () => {
    registry = new ClientRegistry([], { logger: silentLogger, clock, spawner: never });
    listener = new Listener({ registry, runner: unanswering, tlsSettings: parsePriority(DEFAULT_PRIORITY), logger: capture, clock, maxPerSource: 0 });
    ({ port } = await listener.listen({ address: "::1", port: 0, ipv6: true }));
    unlog = logServeEvents(capture);
    closed = new Recorded(events.connectionClosed);
    versionLines = new Recorded(events.versionLine);
  });

  after(async () => {
    unlog();
    closed.stop();
    versionLines.stop();
    await listener.close(0);
    registry.stop();
  });

  test("is closed as our internal error, said at ERROR, not as its peer's timeout", async () => {
    const socket = connect({ host: "::1", port });
    socket.on("error", () => undefined);
    const peerPort = await new Promise<number>((resolve) => socket.once("connect", () => resolve(socket.localPort ?? 0)));
    socket.write("1\r\n");
    const mine = (m: { connection: { port: number } }): boolean => m.connection.port === peerPort;
    await versionLines.next(mine);
    clock.advance(HANDSHAKE_TIMEOUT_MS);
    const end = await closed.next(mine);
    socket.destroy();
    assert.equal(end.outcome, "internal-error", "internal-error: not counted against its source (connection.ts #close)");
    assert.equal(end.stage, "Handshaking");
    const label = `('::1', ${peerPort}, 0, 0)`;
    assert.ok(lines.includes(`ERROR: Handshake of ${label} waited on the handshake runner until its 20 s ran out`), lines.join("\n"));
    assert.ok(!lines.some((l) => l.includes("timed out")), lines.join("\n"));
  });

  test("a flood of them (a wedged worker under a reboot wave) is said once, then summed up every 10 s", async () => {
    // What the first test said has been summed up by now.
    clock.advance(10_000);
    const said = (): string[] => lines.filter((l) => l.startsWith("ERROR: Handshake of") || / more handshakes that waited on the handshake runner/.test(l));
    const before = said().length;
    const sockets = await Promise.all(Array.from({ length: 20 }, async () => {
      const socket = connect({ host: "::1", port });
      socket.on("error", () => undefined);
      const peerPort = await new Promise<number>((resolve) => socket.once("connect", () => resolve(socket.localPort ?? 0)));
      socket.write("1\r\n");
      await versionLines.next((m) => m.connection.port === peerPort);
      return { socket, peerPort };
    }));
    clock.advance(HANDSHAKE_TIMEOUT_MS);
    for (const { socket, peerPort } of sockets) {
      assert.equal((await closed.next((m) => m.connection.port === peerPort)).outcome, "internal-error");
      socket.destroy();
    }
    assert.equal(said().length, before + 1, said().join("\n"));
    clock.advance(10_000);
    const summed = said().slice(before + 1);
    assert.equal(summed.length, 1, summed.join("\n"));
    // With the last of them, whichever of the 20 timed out last.
    const last = /^ERROR: 19 more handshakes that waited on the handshake runner until their time ran out in the last 10 s \(the last: Handshake of \('::1', (\d+), 0, 0\) waited on the handshake runner until its 20 s ran out\)$/.exec(summed[0]!);
    assert.ok(last && sockets.some((s) => s.peerPort === Number(last[1])), summed[0]);
  });
});

test("failures of our own: each kind said at its first, summed with its last; a state machine fault always said", () => {
  const clock = new ManualClock();
  const capture = keptLogger();
  const lines = new OwnFailureLines(clock, capture);
  lines.note("runner-timeout", "Handshake of a waited on the handshake runner until its 20 s ran out");
  lines.note("runner-timeout", "Handshake of b waited on the handshake runner until its 20 s ran out");
  lines.note("bug", "BUG: connection c Sending -> Handshaking");
  lines.note("secret-request", "Secret request for client7 failed: Error: x");
  lines.note("runner-timeout", "Handshake of d waited on the handshake runner until its 20 s ran out");
  lines.note("secret-request", "Secret request for client9 failed: Error: z");
  clock.advance(10_000);
  lines.note("secret-request", "Secret request for client8 failed: Error: y");
  lines.stop();
  assert.deepEqual(capture.lines, [
    "ERROR: Handshake of a waited on the handshake runner until its 20 s ran out",
    "ERROR: BUG: connection c Sending -> Handshaking",
    "ERROR: Secret request for client7 failed: Error: x",
    "ERROR: 2 more handshakes that waited on the handshake runner until their time ran out in the last 10 s (the last: Handshake of d waited on the handshake runner until its 20 s ran out)",
    "ERROR: 1 more secret requests that failed in the last 10 s (the last: Secret request for client9 failed: Error: z)",
    // Still counted after a sum (a flood goes on); said at the stop.
    "ERROR: 1 more secret requests that failed in the last 1 s (the last: Secret request for client8 failed: Error: y)",
  ]);
});
