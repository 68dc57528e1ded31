// Our close_notify after the handshake: sealed with the flight for the
// record that follows one record of data (what a Mandos server sends), and
// sealed at close time when our close comes anywhere else. The server role
// must read each as the close it is.

import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_PLAINTEXT } from "../src/tls/limits.js";
import { errorOf, runPair } from "./helpers/tls-pair.js";

/** Our close, delivered to the server: the events it gives. */
function closeAndDeliver(r: ReturnType<typeof runPair>): string[] {
  r.client.close();
  const out = r.client.takeOutput();
  assert.ok(out, "the client wrote its close_notify");
  r.server.receive(out);
  const events: string[] = [];
  for (let e = r.server.nextEvent(); e; e = r.server.nextEvent()) events.push(e.type === "error" ? `error ${e.error.code}` : e.type);
  return events;
}

function received(r: ReturnType<typeof runPair>): Buffer {
  return Buffer.concat(r.serverEvents.flatMap((e) => (e.type === "data" ? [e.data] : [])));
}

test("after one record of data, the close_notify sealed with the flight reads as a close", () => {
  const secret = Buffer.from("one record of secret");
  const r = runPair({ message: secret });
  assert.equal(errorOf(r.clientEvents), null);
  assert.deepEqual(received(r), secret);
  assert.deepEqual(closeAndDeliver(r), ["closed"]);
});

test("after two records of data, the close_notify is sealed at its own sequence number", () => {
  const secret = Buffer.alloc(MAX_PLAINTEXT + 100, 7);
  const r = runPair({ message: secret });
  assert.deepEqual(received(r), secret);
  assert.deepEqual(closeAndDeliver(r), ["closed"]);
});

test("with no data before it, the close_notify is sealed at sequence number 0", () => {
  const r = runPair({});
  assert.equal(errorOf(r.clientEvents), null);
  assert.deepEqual(closeAndDeliver(r), ["closed"]);
});

test("after a key update of ours, the close_notify is sealed under the new keys", () => {
  const r = runPair({ message: Buffer.from("x") });
  r.client.keyUpdate(false);
  const update = r.client.takeOutput();
  assert.ok(update);
  r.server.receive(update);
  assert.equal(r.server.nextEvent(), null, "the key update is taken quietly");
  // One record under the new keys: sequence number 1 again, as the sealed close_notify's, but not its keys.
  r.client.send(Buffer.from("y"));
  const data = r.client.takeOutput();
  assert.ok(data);
  r.server.receive(data);
  assert.equal(r.server.nextEvent()?.type, "data");
  assert.deepEqual(closeAndDeliver(r), ["closed"]);
});
