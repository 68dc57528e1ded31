// Issue 16, item 8: where the client role was looser than RFC 8446.
// Unsolicited extensions in the server's Certificate entry (§4.4.2, §4.2),
// a change_cipher_spec after the server's Finished (§5) whatever the split
// of the bytes, and the KeyUpdate bound over the whole connection.

import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_KEY_UPDATES } from "../src/tls/limits.js";
import { CHANGE_CIPHER_SPEC } from "../src/tls/record.js";
import { errorOf, runPair } from "./helpers/tls-pair.js";
import { feed, openFlight } from "./helpers/tls-flight.js";

test("an extension in the server's Certificate entry is unsupported_extension", () => {
  // status_request (5), which we never ask for, with an empty body.
  const r = runPair({ faults: { entryExtensions: Buffer.from("000400050000", "hex") } });
  assert.deepEqual(errorOf(r.clientEvents), { code: "TLS_UNSUPPORTED_EXTENSION", alert: 110 });
  assert.ok(!r.clientEvents.some((e) => e.type === "handshake-complete"));
});

test("an empty extensions block in the entry is fine", () => {
  const r = runPair({ faults: { entryExtensions: Buffer.from("0000", "hex") } });
  assert.equal(errorOf(r.clientEvents), null);
});

/** The events' types, an error as its code. */
function outline(events: ReturnType<typeof feed>["events"]): string[] {
  return events.map((e) => (e.type === "error" ? `${e.error.code}/${e.error.alert}` : e.type));
}

// The same bytes, split four ways: all in one read; the flight, then the
// change_cipher_spec once connected; a byte at a time; and the flight's last
// record split across the two reads.
const splits: Array<{ name: string; chunks: (flight: Buffer) => Buffer[] }> = [
  { name: "in one read", chunks: (f) => [Buffer.concat([f, CHANGE_CIPHER_SPEC])] },
  { name: "in a read after the flight", chunks: (f) => [f, CHANGE_CIPHER_SPEC] },
  { name: "a byte at a time", chunks: (f) => [...Buffer.concat([f, CHANGE_CIPHER_SPEC])].map((b) => Buffer.of(b)) },
  { name: "with the Finished record torn", chunks: (f) => [f.subarray(0, f.length - 3), Buffer.concat([f.subarray(f.length - 3), CHANGE_CIPHER_SPEC])] },
];

for (const s of splits) {
  test(`a change_cipher_spec after the server's Finished is unexpected_message, ${s.name}`, () => {
    const { client, flight } = openFlight();
    let fed = { events: [] as ReturnType<typeof feed>["events"], tasks: 0, taskBytes: 0 };
    for (const chunk of s.chunks(flight)) fed = feed(client, chunk, chunk.length, fed);
    assert.deepEqual(outline(fed.events), ["handshake-complete", "TLS_UNEXPECTED_MESSAGE/10"]);
  });
}

test("a change_cipher_spec between the flight's records is dropped, in one read or a byte at a time", () => {
  for (const chunk of [100_000, 1]) {
    const { client, flight, afterHello } = openFlight({ faults: { fragment: 40 } });
    const at = afterHello + 5 + flight.readUInt16BE(afterHello + 3) + 5 + flight.readUInt16BE(afterHello + 5 + flight.readUInt16BE(afterHello + 3) + 3);
    const bytes = Buffer.concat([flight.subarray(0, at), CHANGE_CIPHER_SPEC, flight.subarray(at)]);
    const fed = feed(client, bytes, chunk);
    assert.deepEqual(outline(fed.events), ["handshake-complete"], `chunk ${chunk}`);
  }
});

test("the KeyUpdate bound holds over the connection: application data between them does not reset it", () => {
  const r = runPair({
    onServerConnected: (server) => {
      for (let i = 0; i <= MAX_KEY_UPDATES; i++) {
        server.keyUpdate(false);
        server.send(Buffer.from("x"));
      }
    },
  });
  assert.deepEqual(errorOf(r.clientEvents), { code: "TLS_UNEXPECTED_MESSAGE", alert: 10 });
  const data = r.clientEvents.filter((e) => e.type === "data").length;
  assert.equal(data, MAX_KEY_UPDATES, "data flowed until the bound was crossed");
});

test(`up to MAX_KEY_UPDATES (${MAX_KEY_UPDATES}) KeyUpdates are honoured`, () => {
  const r = runPair({
    onServerConnected: (server) => {
      for (let i = 0; i < MAX_KEY_UPDATES; i++) {
        server.keyUpdate(false);
        server.send(Buffer.from("x"));
      }
    },
  });
  assert.equal(errorOf(r.clientEvents), null);
  assert.equal(r.clientEvents.filter((e) => e.type === "data").length, MAX_KEY_UPDATES);
});
