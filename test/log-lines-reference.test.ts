// Admins watch Mandos through its log lines, so ours are the reference's:
// the same scenario (two clients, one of them disabled, a machine with an
// unknown key, bad version lines, a connect and close, broken TLS peers,
// then SIGTERM) against the Python reference and against us,
// with --debug, and the lines compared with time stamps, PIDs, ports and
// key material set aside. Every line the reference writes at INFO and above,
// and the DEBUG lines that carry facts, must be ours character for
// character; docs/OPERATION.md ("Logging") lists the differences kept on
// purpose, and KNOWN_DIFFERENCES below holds exactly those.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { parsePriority } from "../src/tls/index.js";
import { FaultyServer } from "./helpers/faulty-server.js";
import { makeKey } from "./helpers/tls-pair.js";
import { makeClients, makeKeySet } from "./helpers/keys.js";
import { printableAscii } from "../src/main/python/repr.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { makeFleetRoot, startOurServer, startPrivateBus, startReference } from "./helpers/dbus.js";
import { runMandosClient } from "./helpers/server.js";

/** Lines the reference writes that we do not, on purpose (see docs/OPERATION.md). */
const KNOWN_DIFFERENCES: readonly RegExp[] = [
  // The reference's forked request handler reports its pipe to the parent; we have no such pipe.
  /^DEBUG: Pipe FD: N$/,
];
/** Lines we write that the reference does not, on purpose (see docs/OPERATION.md). */
const KNOWN_EXTRAS: readonly RegExp[] = [
  // clients.conf holds the secrets; the reference does not check who may read it.
  /^WARNING: \S+clients\.conf is readable by all users \(mode \d+\); it holds client secrets: chmod o-r it$/,
  // Two clients with one key ID or fingerprint, or one with neither (not in
  // this scenario): the reference serves one, or none, without a word.
  /^WARNING: Clients .* have the same (key ID|fingerprint) [0-9A-F]+: .*$/,
  /^WARNING: Client .* has neither key_id nor fingerprint: no peer can match it, it is never served$/,
];

/** The DEBUG lines that carry facts and must match; other DEBUG lines are the server's own business. */
const FACT_DEBUG = /^DEBUG: (Creating client| {2}Key ID:| {2}Fingerprint:|Protocol version:|Key ID:|Fingerprint:|Pipe FD:|Starting main loop|Server exiting)/;

/** A log line with its time stamp, program and PID removed, and the variable parts named. */
function normalise(line: string): string | undefined {
  const m = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} mandos \[\d+\]: (.*)$/.exec(line);
  if (!m) return undefined;
  return m[1]!
    .replace(/\('::1', \d+, 0, 0\)/g, "('::1', PORT, 0, 0)")
    .replace(/port \d+/g, "port PORT")
    .replace(/Pipe FD: \d+/, "Pipe FD: N")
    .replace(/Did setuid\/setgid to \d+:\d+/, "Did setuid/setgid to UID:GID");
}

/**
 * The reference writes a peer's printable non-ASCII text as it is ('é');
 * we escape it as Python's ascii() does ('\xe9'), on purpose.
 */
const asAscii = (line: string): string => printableAscii(line);

/** Sends `line` (bytes, as latin1; with `end`, closes its side at once), then waits for the server to close. */
function sendLine(port: number, line: string, end = false): Promise<void> {
  return new Promise((resolve, reject) => {
    const bytes = Buffer.from(line, "latin1");
    const socket = connect({ host: "::1", port }, () => (end ? socket.end(bytes) : socket.write(bytes)));
    socket.setTimeout(10_000, () => socket.destroy(new Error("the server did not close")));
    socket.on("data", () => undefined);
    socket.on("close", () => resolve());
    socket.on("error", reject);
  });
}

/**
 * A broken TLS peer: sends the version line, waits for the server's
 * ClientHello (bytes sent before it the reference's line reader swallows),
 * then does `act`; resolves when the server has closed.
 */
function brokenPeer(port: number, act: (socket: Socket, clientHello: Buffer) => void): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host: "::1", port }, () => socket.write("1\r\n"));
    socket.setTimeout(10_000, () => socket.destroy());
    socket.once("data", (clientHello) => act(socket, clientHello));
    socket.on("close", () => resolve());
    socket.on("error", () => undefined);
  });
}

/** Our TLS server role, its encrypted flight's last record bent by one bit: the client's record decryption fails. */
function bentFlight(socket: Socket, clientHello: Buffer): void {
  const server = new FaultyServer(parsePriority("SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3"), makeKey("ed25519"));
  server.receive(clientHello);
  const flight = server.takeOutput()!;
  flight[flight.length - 3]! ^= 1;
  socket.write(flight);
}

const hex = (text: string): Buffer => Buffer.from(text.replace(/ /g, ""), "hex");

/**
 * Broken and hostile TLS peers, and the reference's words for each
 * (GnuTLS's gnutls_strerror(), after "Handshake failed: ").
 */
const BROKEN_PEERS: ReadonlyArray<readonly [string, (socket: Socket, clientHello: Buffer) => void]> = [
  ["An unexpected TLS packet was received.", (s) => s.write(hex("17 0303 0005 0102030405"))],
  ["An unexpected TLS handshake packet was received.", (s) => s.write(hex("16 0303 0004 0e000000"))],
  ["A TLS fatal alert has been received.", (s) => s.write(hex("15 0303 0002 0228"))],
  ["A TLS warning alert has been received.", (s) => s.write(hex("15 0303 0002 015a"))],
  ["Peer has terminated the connection", (s) => s.write(hex("15 0303 0002 0100"))],
  ["A TLS record packet with invalid length was received.", (s) => s.write(hex("16 0303 4001 00"))],
  ["Error decoding the received TLS packet.", (s) => s.end(hex("16 0303 0010 0102"))],
  ["Error in the pull function.", (s) => s.resetAndDestroy()],
  ["Decryption has failed.", bentFlight],
];

/**
 * Lines whose moment is chance, not behaviour: a checker's first run comes
 * at a random point of its interval (on either server); the checker lines'
 * text is compared with the reference's in lifecycle-checkers.test.ts.
 */
const BY_CHANCE = /^INFO: (Starting checker |Checker for )/;

function compared(log: string): string[] {
  return log
    .split("\n")
    .map(normalise)
    .filter((l): l is string => l !== undefined && (!l.startsWith("DEBUG:") || FACT_DEBUG.test(l)) && !BY_CHANCE.test(l));
}

test("our log lines are the reference's, scenario by scenario", { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN, MANDOS_REFERENCE), timeout: 240_000 }, async (t) => {
  const { root } = makeFleetRoot("mandos-ts-loglines-");
  t.after(() => rmSync(root, { recursive: true, force: true }));
  makeKeySet(join(root, "pgp2"));
  const [good, disabled, stranger] = makeClients(root, join(root, "pgp2"), 3, "client-0000");
  const conf = join(root, "conf2");
  mkdirSync(conf, { recursive: true });
  writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
  writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n\n${good!.section}\n${disabled!.section}enabled = False\n`, { mode: 0o600 });

  const logs: Record<string, string> = {};
  for (const who of ["reference", "ours"] as const) {
    const bus = await startPrivateBus();
    const state = join(root, `state-${who}`);
    mkdirSync(state, { recursive: true });
    const server = who === "reference" ? await startReference(conf, state, bus.address) : await startOurServer(conf, state, bus.address);
    try {
      const got = await runMandosClient(good!.dir, "::1", server.port);
      assert.equal(got.stdout.toString(), good!.password, `${who}: the good client is served`);
      await server.waitForLog(/Sending secret to client-00000/);
      const refused = await runMandosClient(disabled!.dir, "::1", server.port, 5_000);
      assert.equal(refused.stdout.length, 0);
      await server.waitForLog(/Client client-00001 is disabled/);
      const unknown = await runMandosClient(stranger!.dir, "::1", server.port, 5_000);
      assert.equal(unknown.stdout.length, 0);
      await server.waitForLog(/Client not found for key ID/);
      // Bad protocol lines: garbage, a newer version, an empty line.
      for (const line of ["x\r\n", "2\r\n", "\r\n"]) await sendLine(server.port, line);
      await server.waitForLog(/Unknown protocol version: list index out of range/);
      // A client gone mid-handshake: the version line, then its end.
      await sendLine(server.port, "1\r\n", true);
      await server.waitForLog(/Handshake failed: The TLS connection was non-properly terminated\./);
      // A port scanner's or a health check's connect and close: an empty line.
      await sendLine(server.port, "", true);
      await server.waitForLog(/Protocol version: ''/);
      // The end of the stream ends the line; so does a "\r" with anything after it.
      await sendLine(server.port, "1", true);
      await server.waitForLog(/Protocol version: '1'/);
      await sendLine(server.port, "0\r\r\n", true);
      await server.waitForLog(/Protocol version: '0\\n'/);
      // UTF-8, with Python's digits and white space: FULLWIDTH DIGIT ONE, NO-BREAK SPACE, é.
      for (const line of ["\xef\xbc\x91\r\n", "1\xc2\xa0x\r\n", "\xc3\xa9\r\n"]) await sendLine(server.port, line, true);
      await server.waitForLog(/invalid literal for int\(\) with base 10: '(é|\\xe9)'/);
      for (const [words, act] of BROKEN_PEERS) {
        await brokenPeer(server.port, act);
        await server.waitForLog(new RegExp(`Handshake failed: ${words.replace(/\./g, "\\.")}`));
      }
    } finally {
      await server.stop();
      await bus.stop();
    }
    logs[who] = server.log();
  }
  t.diagnostic(`reference:\n${compared(logs.reference!).join("\n")}`);
  t.diagnostic(`ours:\n${compared(logs.ours!).join("\n")}`);

  const ours = compared(logs.ours!);
  const reference = compared(logs.reference!).map(asAscii);
  const missingFromOurs = reference.filter((line) => !ours.includes(line) && !KNOWN_DIFFERENCES.some((d) => d.test(line)));
  const extraInOurs = ours.filter((line) => !reference.includes(line) && !KNOWN_EXTRAS.some((d) => d.test(line)));
  assert.deepEqual({ missingFromOurs, extraInOurs }, { missingFromOurs: [], extraInOurs: [] });
});
