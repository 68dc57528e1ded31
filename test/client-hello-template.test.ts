// The ClientHello from a template (messages.ts ClientHelloTemplate): every
// connection's ClientHello is a copy of one encoded for the same settings
// with its random, session ID and key shares written in. It must be the
// very bytes encodeClientHello gives, for every priority a server may run
// with, and the template must refuse values it cannot place.

import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { ClientHelloTemplate, encodeClientHello, type ClientHelloParams } from "../src/tls/messages.js";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/priority.js";
import { suiteByName } from "../src/tls/constants.js";
import { generateEphemeralKeyShares } from "../src/tls/tasks.js";
import { TlsClient } from "../src/tls/client.js";
import { runPair } from "./helpers/tls-pair.js";

const PRIORITIES = {
  default: DEFAULT_PRIORITY,
  "modern only": "SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:!RSA:!VERS-ALL:+VERS-TLS1.3:%PROFILE_ULTRA",
  "legacy only (the reference's old default)": "SECURE256:!CTYPE-X.509:+CTYPE-OPENPGP:!RSA:+SIGN-DSA-SHA256",
};

/** A ClientHello's values for `priority`, with fresh per-connection ones; `twoShares`: X25519 and P-256 shares, as after a change of groups. */
function params(priority: string, twoShares = false): ClientHelloParams {
  const settings = parsePriority(priority);
  const eph = generateEphemeralKeyShares(twoShares ? ["x25519", "secp256r1"] : settings.keyShareGroups);
  const legacy = settings.legacy;
  return {
    random: eph.random, sessionId: eph.sessionId,
    cipherSuites: [...settings.cipherSuites.map((n) => suiteByName(n).code), ...(legacy?.suites ?? [])],
    groups: settings.groups, shares: eph.shares, signatureSchemes: settings.signatureSchemes, tls13: settings.modern, legacy,
  };
}

const CASES = [...Object.entries(PRIORITIES).map(([name, priority]) => [name, priority, false] as const), ["two key shares", DEFAULT_PRIORITY, true] as const];

for (const [name, priority, twoShares] of CASES) {
  test(`a ClientHello from the template is encodeClientHello's, byte for byte: ${name}`, () => {
    const template = new ClientHelloTemplate(params(priority, twoShares));
    for (let i = 0; i < 20; i++) {
      const p = params(priority, twoShares);
      assert.ok(template.fits(p.sessionId, p.shares));
      assert.deepEqual(template.fill(p.random, p.sessionId, p.shares), encodeClientHello(p));
    }
  });
}

test("the client role sends the same ClientHello as encodeClientHello, connection after connection", () => {
  const settings = parsePriority(DEFAULT_PRIORITY);
  for (let i = 0; i < 5; i++) {
    const eph = generateEphemeralKeyShares(settings.keyShareGroups);
    const client = new TlsClient(settings, eph);
    client.start();
    const sent = client.takeOutput();
    assert.ok(sent);
    const legacy = settings.legacy;
    const expected = encodeClientHello({
      random: eph.random, sessionId: eph.sessionId,
      cipherSuites: [...settings.cipherSuites.map((n) => suiteByName(n).code), ...(legacy?.suites ?? [])],
      groups: settings.groups, shares: eph.shares, signatureSchemes: settings.signatureSchemes, tls13: settings.modern, legacy,
    });
    assert.deepEqual(sent.subarray(5), expected, `connection ${i}`);
  }
});

test("a template refuses what it cannot place: another session ID length, another group, another share length", () => {
  const p = params(PRIORITIES["modern only"]);
  const template = new ClientHelloTemplate(p);
  assert.equal(template.fits(randomBytes(16), p.shares), false);
  const [share] = p.shares;
  assert.ok(share);
  assert.equal(template.fits(p.sessionId, [{ ...share, group: share.group === "x25519" ? "secp256r1" : "x25519" }]), false);
  assert.equal(template.fits(p.sessionId, [{ ...share, publicKey: randomBytes(share.publicKey.length + 1) }]), false);
  assert.equal(template.fits(p.sessionId, []), false);
  assert.throws(() => new ClientHelloTemplate({ ...p, cookie: randomBytes(8) }));
});

// What a connection keeps while it waits for its peer, in memory of its
// own: Node cuts small Buffers from shared 8 KiB chunks, and one slice
// kept alive keeps its whole chunk (a serve thread in a wave held ~200
// chunks for ~640 connections through their transcripts).
test("a ClientHello from the template is memory of its own, not a slice of a shared chunk", () => {
  const p = params(DEFAULT_PRIORITY);
  const hello = new ClientHelloTemplate(p).fill(p.random, p.sessionId, p.shares);
  assert.equal(hello.buffer.byteLength, hello.length);
});

test("the transcript a server-flight task carries is memory of its own, as is the peer's key share", () => {
  const carried: Array<{ transcript: Uint8Array; serverShare: Uint8Array }> = [];
  const take = Object.getOwnPropertyDescriptor(TlsClient.prototype, "takeTask")!.value as TlsClient["takeTask"];
  TlsClient.prototype.takeTask = function (this: TlsClient) {
    const task = take.call(this);
    if (task?.kind === "server-flight") carried.push(task);
    return task;
  };
  try {
    const r = runPair({ clientPriority: DEFAULT_PRIORITY, serverPriority: DEFAULT_PRIORITY });
    assert.ok(r.clientEvents.some((e) => e.type === "handshake-complete"), "the handshake completes");
  } finally {
    TlsClient.prototype.takeTask = take;
  }
  assert.ok(carried.length > 0, "a server-flight task was taken");
  for (const { transcript, serverShare } of carried) {
    assert.equal(transcript.buffer.byteLength, transcript.length, "the transcript");
    assert.ok(serverShare.buffer.byteLength < 4096, `the peer's key share (in a buffer of ${serverShare.buffer.byteLength} bytes)`);
  }
});
