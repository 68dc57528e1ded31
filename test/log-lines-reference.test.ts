// Admins watch Mandos through its log lines, so ours are the reference's:
// the same scenario (two clients, one of them disabled, a machine with an
// unknown key, then SIGTERM) against the Python reference and against us,
// with --debug, and the lines compared with time stamps, PIDs, ports and
// key material set aside. Every line the reference writes at INFO and above,
// and the DEBUG lines that carry facts, must be ours character for
// character; docs/OPERATION.md ("Logging") lists the differences kept on
// purpose, and KNOWN_DIFFERENCES below holds exactly those.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { makeClients, makeKeySet } from "./helpers/keys.js";
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
  // Two clients with one key ID or fingerprint (not in this scenario): the reference serves one without a word.
  /^WARNING: Clients .* have the same (key ID|fingerprint) [0-9A-F]+: only one of them can be served$/,
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

/** Connects, sends one protocol line, and waits for the server to close. */
/** Sends `line` (and, with `end`, closes its side at once), then waits for the server to close. */
function sendLine(port: number, line: string, end = false): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "::1", port }, () => (end ? socket.end(line) : socket.write(line)));
    socket.setTimeout(10_000, () => socket.destroy(new Error("the server did not close")));
    socket.on("data", () => undefined);
    socket.on("close", () => resolve());
    socket.on("error", reject);
  });
}

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
    } finally {
      await server.stop();
      await bus.stop();
    }
    logs[who] = server.log();
  }
  t.diagnostic(`reference:\n${compared(logs.reference!).join("\n")}`);
  t.diagnostic(`ours:\n${compared(logs.ours!).join("\n")}`);

  const ours = compared(logs.ours!);
  const reference = compared(logs.reference!);
  const missingFromOurs = reference.filter((line) => !ours.includes(line) && !KNOWN_DIFFERENCES.some((d) => d.test(line)));
  const extraInOurs = ours.filter((line) => !reference.includes(line) && !KNOWN_EXTRAS.some((d) => d.test(line)));
  assert.deepEqual({ missingFromOurs, extraInOurs }, { missingFromOurs: [], extraInOurs: [] });
});
