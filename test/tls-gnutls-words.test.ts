// Each failure of our TLS client role carries the GnuTLS error the
// reference's GnuTLS fails with in the same place (TlsError.gnutls), whose
// gnutls_strerror() words the server logs after "Handshake failed: ". The
// words themselves are checked against the reference in
// test/log-lines-reference.test.ts; this pins the class of each failure.

import { test } from "node:test";
import assert from "node:assert/strict";
import { gnutlsStrerror, referenceWarning, type GnutlsError } from "../src/tls/index.js";
import { feed, openFlight } from "./helpers/tls-flight.js";
import type { ServerFaults } from "./helpers/faulty-server.js";

const hex = (text: string): Buffer => Buffer.from(text.replace(/ /g, ""), "hex");

/** The GnuTLS error our client fails with when `bytes` answer its ClientHello. */
function failsWith(bytes: (flight: Buffer) => Buffer, faults?: ServerFaults): GnutlsError | undefined {
  const { client, flight } = openFlight(faults ? { faults } : {});
  const fed = feed(client, bytes(flight), 1 << 16);
  const error = fed.events.find((e) => e.type === "error");
  return error?.type === "error" ? error.error.gnutls : undefined;
}

test("a failure before ServerHello is in GnuTLS's class: unexpected packet, handshake packet, alert, length", () => {
  assert.equal(failsWith(() => hex("17 0303 0005 0102030405")), "GNUTLS_E_UNEXPECTED_PACKET");
  assert.equal(failsWith(() => hex("47 4554 2020 2020")), "GNUTLS_E_UNEXPECTED_PACKET");
  assert.equal(failsWith(() => hex("16 0303 0004 0e000000")), "GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET");
  assert.equal(failsWith(() => hex("15 0303 0002 0228")), "GNUTLS_E_FATAL_ALERT_RECEIVED");
  assert.equal(failsWith(() => hex("15 0303 0002 015a")), "GNUTLS_E_WARNING_ALERT_RECEIVED");
  assert.equal(failsWith(() => hex("15 0303 0002 0100")), "GNUTLS_E_SESSION_EOF");
  assert.equal(failsWith(() => hex("15 0303 0001 01")), "GNUTLS_E_UNEXPECTED_PACKET");
  assert.equal(failsWith(() => hex("16 0303 4001 00")), "GNUTLS_E_RECORD_OVERFLOW");
  assert.equal(failsWith(() => hex("16 0303 0004 02000000")), "GNUTLS_E_UNEXPECTED_PACKET_LENGTH");
});

test("a broken server flight is in GnuTLS's class: decryption, Finished, signature", () => {
  const bent = (flight: Buffer): Buffer => {
    const copy = Buffer.from(flight);
    copy[copy.length - 3]! ^= 1;
    return copy;
  };
  assert.equal(failsWith(bent), "GNUTLS_E_DECRYPTION_FAILED");
  assert.equal(failsWith((f) => f, { badFinished: true }), "GNUTLS_E_ERROR_IN_FINISHED_PACKET");
  assert.equal(failsWith((f) => f, { badSignature: true }), "GNUTLS_E_PK_SIG_VERIFY_FAILED");
  assert.equal(failsWith((f) => f, { outOfOrder: true }), "GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET");
});

test("the words are GnuTLS's own, typos and all", () => {
  assert.equal(gnutlsStrerror("GNUTLS_E_DECRYPTION_FAILED"), "Decryption has failed.");
  assert.equal(gnutlsStrerror("GNUTLS_E_MISSING_EXTENSION"), "An required TLS extension was received.");
  assert.equal(gnutlsStrerror("GNUTLS_E_SESSION_EOF"), "Peer has terminated the connection");
  assert.equal(referenceWarning("GNUTLS_E_MPI_SCAN_FAILED"), "Handshake failed: The scanning of a large integer has failed.");
  // Not a handshake error in the legacy reference: its verify_self, after the handshake.
  assert.equal(referenceWarning("OPENPGP_VERIFY_SELF"), "Bad certificate: (unknown error code)");
});

test("a legacy session's words are GnuTLS 3.5's where they differ from 3.7's", () => {
  assert.equal(referenceWarning("GNUTLS_E_UNEXPECTED_PACKET_LENGTH"), "Handshake failed: Error decoding the received TLS packet.");
  assert.equal(referenceWarning("GNUTLS_E_UNEXPECTED_PACKET_LENGTH", true), "Handshake failed: A TLS packet with unexpected length was received.");
  // 3.5 has no RECORD_OVERFLOW: a record too long is a packet of unexpected length there.
  assert.equal(referenceWarning("GNUTLS_E_RECORD_OVERFLOW"), "Handshake failed: A TLS record packet with invalid length was received.");
  assert.equal(referenceWarning("GNUTLS_E_RECORD_OVERFLOW", true), "Handshake failed: A TLS packet with unexpected length was received.");
  // The rest are worded alike by both.
  assert.equal(referenceWarning("GNUTLS_E_DECRYPTION_FAILED", true), referenceWarning("GNUTLS_E_DECRYPTION_FAILED"));
  assert.equal(referenceWarning("OPENPGP_VERIFY_SELF", true), "Bad certificate: (unknown error code)");
});
