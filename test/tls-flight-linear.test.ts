// Regression for issue 16, item 2 and 3: every flight task re-opened the
// whole server flight from its first record, so a flight in one-byte
// records fed a byte at a time cost quadratic work (3,600 records: 33 s of
// CPU), and nothing capped the records in a flight. Then, with each record
// opened once, still one task per read (an audit, F2: a worker's round
// trip each, ~50 times a whole flight's CPU for an unknown peer's flight in
// one-byte records, one a segment); now a task goes out only when the new
// records could finish the message the last one stopped in. Work is
// counted here in tasks and in bytes handed to them, not in wall time.

import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_FLIGHT_RECORDS } from "../src/tls/limits.js";
import { feed, openFlight } from "./helpers/tls-flight.js";
import { makeKey } from "./helpers/tls-pair.js";

/**
 * Flight tasks a flight may take however it is cut: about two for each of
 * its handshake messages (EncryptedExtensions, [CertificateRequest],
 * Certificate, CertificateVerify, Finished), one when a message's header
 * can be whole and one when its body can, and the first.
 */
const TASKS_PER_FLIGHT = 2 * 5 + 1;

function recordCount(bytes: Buffer): number {
  let n = 0;
  for (let i = 0; i + 5 <= bytes.length; i += 5 + bytes.readUInt16BE(i + 3)) n++;
  return n;
}

test("a flight in one-byte records, fed a byte at a time, takes a few tasks, each byte handed to one only", () => {
  const { client, flight, afterHello } = openFlight({ key: makeKey("p256"), faults: { fragment: 1 } });
  const records = recordCount(flight.subarray(afterHello));
  assert.ok(records > 150 && records <= MAX_FLIGHT_RECORDS, `${records} records`);
  const fed = feed(client, flight, 1);
  assert.equal(fed.events[0]?.type, "handshake-complete", JSON.stringify(fed.events[0]));
  // Linear: the tasks carried the flight's bytes once in all, one task per record at most.
  assert.equal(fed.taskBytes, flight.length - afterHello);
  assert.ok(fed.tasks <= TASKS_PER_FLIGHT, `${fed.tasks} tasks for ${records} records`);
  assert.ok(fed.tasks > 2, "the flight went through several tasks: the carried state was exercised");
});

test("the same flight in one read is one task", () => {
  const { client, flight, afterHello } = openFlight({ key: makeKey("p256"), faults: { fragment: 1 } });
  const fed = feed(client, flight, flight.length);
  assert.equal(fed.events[0]?.type, "handshake-complete");
  assert.equal(fed.tasks, 1);
  assert.equal(fed.taskBytes, flight.length - afterHello);
});

test(`a flight of more than MAX_FLIGHT_RECORDS (${MAX_FLIGHT_RECORDS}) records ends in decode_error after that many`, () => {
  // An RSA-4096 flight in one-byte records: over a thousand records, ~24 KiB
  // (under MAX_HANDSHAKE_BUFFER_BYTES: the record cap is what stops it).
  const { client, server, flight, afterHello } = openFlight({ key: makeKey("rsa4096"), faults: { fragment: 1 } });
  const records = recordCount(flight.subarray(afterHello));
  assert.ok(records > 1000, `${records} records`);
  const fed = feed(client, flight, 1);
  const errors = fed.events.filter((e) => e.type === "error");
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.type === "error" && errors[0]!.error.code, "TLS_DECODE");
  assert.equal(errors[0]!.type === "error" && errors[0]!.error.alert, 50);
  assert.ok(!fed.events.some((e) => e.type === "handshake-complete"));
  // The work stopped at the cap: a few tasks, carrying no more than the records up to it.
  assert.ok(fed.tasks <= TASKS_PER_FLIGHT, `${fed.tasks} tasks`);
  // A one-byte record is 23 bytes: header 5, content 1, inner type 1, tag 16.
  assert.ok(fed.taskBytes <= MAX_FLIGHT_RECORDS * 23, `${fed.taskBytes} bytes in tasks`);
  // The server reads our alert under the handshake keys.
  server.receive(client.takeOutput()!);
  const seen = server.nextEvent();
  assert.equal(seen?.type === "error" && seen.error.peerAlert, 50);
});
