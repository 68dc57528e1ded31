// The server's parts in process serving legacy clients (TLS 1.2, OpenPGP):
// the fingerprint in clients.conf is compared ignoring case and white
// space, a disabled legacy client gets nothing, an unknown fingerprint is
// refused like an unknown key ID, with the facts published as for modern
// clients; a key OpenPGP.js cannot parse fails the handshake with a log
// line of ours; inline and on a worker pool.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { openPgpPacket } from "../src/client/openpgp-identity.js";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { systemClock } from "../src/main/clock.js";
import { parseClientsConfig } from "../src/main/config/index.js";
import { silentLogger, type Logger } from "../src/main/daemon/log.js";
import { logServeEvents, PEER_LINES_PER_SECOND } from "../src/main/daemon/log-serve.js";
import { events, type ClientNotFound, type ClientRejected, type ConnectionClosed, type HandshakeDone } from "../src/main/events.js";
import { createHandshakeRunner } from "../src/main/serve/handshake-runner.js";
import { Listener } from "../src/main/serve/listener.js";
import { knownKeysOf } from "../src/main/serve/known-keys.js";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/index.js";
import type { Tls12ServerFaults } from "../src/tls/tls12/server12.js";
import { freshIdentity, recordedIdentity, type TestOpenPgpIdentity } from "./helpers/legacy-keys.js";
import { LINES_A_FAULT, legacyFaults, legacyFetch } from "./helpers/legacy-faults.js";
import { LEGACY_DATA } from "./helpers/legacy-session.js";
import { BIN_TS_CLIENT, run } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const SECRET = Buffer.from("an OpenPGP message, as far as the server knows");

let recorded: TestOpenPgpIdentity;
let disabled: TestOpenPgpIdentity;
let stranger: TestOpenPgpIdentity;
before(async () => {
  recorded = await recordedIdentity();
  disabled = await freshIdentity(2048, "disabled");
  stranger = await freshIdentity(2048, "stranger");
});

/** "9A2B E965 ..." in lower case: how an admin might paste it. */
function spaced(fpr: string): string {
  return fpr.toLowerCase().replace(/(.{4})/g, "$1 ").trim();
}

for (const workers of [0, 1]) {
  describe(`legacy clients in process, --workers ${workers}`, () => {
    let listener: Listener;
    let registry: ClientRegistry;
    let runner: ReturnType<typeof createHandshakeRunner>;
    let port = 0;
    const seen: { done: HandshakeDone[]; notFound: ClientNotFound[]; rejected: ClientRejected[] } = { done: [], notFound: [], rejected: [] };
    const onDone = (m: HandshakeDone): void => void seen.done.push(m);
    const onNotFound = (m: ClientNotFound): void => void seen.notFound.push(m);
    const onRejected = (m: ClientRejected): void => void seen.rejected.push(m);
    const lines: string[] = [];
    // The log's clock, which the faults below move on by the time their
    // lines take to come back to ::1's budget (PEER_LINES_PER_SECOND), so
    // that the table's length is not bounded by PEER_LINES_BURST.
    let logSkewMs = 0;
    const logClock = { ...systemClock, elapsed: (): number => systemClock.elapsed() + logSkewMs };
    const capture: Logger = {
      debug: (m) => void lines.push(m), info: (m) => void lines.push(m), warning: (m) => void lines.push(m),
      error: (m) => void lines.push(m), critical: (m) => void lines.push(m), enabledFor: () => true,
    };
    let stopLogging: () => void = () => undefined;

    before(async () => {
      const tlsSettings = parsePriority(DEFAULT_PRIORITY);
      const b64 = SECRET.toString("base64");
      const conf = parseClientsConfig(
        `[DEFAULT]\nchecker = true\n\n[legacy]\nfingerprint = ${spaced(recorded.fingerprint)}\nsecret = ${b64}\n\n` +
          `[off]\nfingerprint = ${disabled.fingerprint}\nsecret = ${b64}\nenabled = False\n`,
        "clients.conf",
      );
      registry = new ClientRegistry(conf, { logger: silentLogger });
      // As main.ts does: the tasks read the registry's known keys (fingerprints too).
      runner = createHandshakeRunner(workers, tlsSettings, knownKeysOf(registry));
      listener = new Listener({ registry, runner, tlsSettings, logger: silentLogger, clock: systemClock });
      port = (await listener.listen({ address: "::1", port: 0, ipv6: true })).port;
      events.handshakeDone.subscribe(onDone);
      events.clientNotFound.subscribe(onNotFound);
      events.clientRejected.subscribe(onRejected);
      stopLogging = logServeEvents(capture, logClock);
    });
    after(async () => {
      stopLogging();
      events.handshakeDone.unsubscribe(onDone);
      events.clientNotFound.unsubscribe(onNotFound);
      events.clientRejected.unsubscribe(onRejected);
      await listener.close(1_000);
      registry.stop();
      await runner.close();
    });

    const fetchAs = (id: TestOpenPgpIdentity, faults?: Tls12ServerFaults): Promise<Buffer> => legacyFetch(port, id, faults);

    test("a fingerprint written in lower case with spaces finds its client", async () => {
      assert.ok((await fetchAs(recorded)).equals(SECRET));
      assert.ok(seen.done.some((d) => d.fingerprint === recorded.fingerprint && d.keyId === ""));
    });

    test("a disabled legacy client gets nothing", async () => {
      await assert.rejects(fetchAs(disabled), { code: "MANDOS_CLIENT_NO_SECRET" });
      assert.ok(seen.rejected.some((r) => r.client === "off" && r.reason === "disabled"));
    });

    test("bin/mandos-ts-client --legacy-seckey is a legacy client", async () => {
      const r = await run(process.execPath, [BIN_TS_CLIENT, `--connect=[::1]:${port}`, `--legacy-seckey=${LEGACY_DATA}seckey.txt`]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.equals(SECRET));
    });

    test("a key OpenPGP.js cannot parse: bad_certificate, and a log line of ours without the key's bytes", async () => {
      const marker = "\u001b[31mEVIL";
      // The recorded key's key packet, a user ID with the marker, then a signature packet that does not parse.
      const keyPacket = Buffer.from(recorded.publicKey).subarray(0, 3 + 525);
      const key = Buffer.concat([keyPacket, openPgpPacket(13, Buffer.from(marker)), openPgpPacket(2, Buffer.concat([Buffer.of(4, 0x13, 1, 8), Buffer.from(marker)]))]);
      const closed = new Promise<ConnectionClosed>((resolve) => {
        const on = (m: ConnectionClosed): void => {
          if (m.outcome !== "tls-error") return;
          events.connectionClosed.unsubscribe(on);
          resolve(m);
        };
        events.connectionClosed.subscribe(on);
      });
      await assert.rejects(fetchAs({ ...recorded, publicKey: key }), { code: "MANDOS_CLIENT_TLS" });
      const m = await closed;
      assert.equal(m.stage, "Handshaking");
      assert.equal(m.detail, "OpenPGP certificate: the key does not parse (MalformedPacketError)");
      // The warning in the legacy reference's words (GnuTLS 3.5 maps OpenCDK's
      // parse errors to an internal error); our reason at DEBUG.
      assert.equal(lines.find((l) => l.startsWith("Handshake failed: ")), "Handshake failed: GnuTLS internal error.");
      assert.ok(lines.some((l) => /^TLS error from .* in the handshake: OpenPGP certificate: the key does not parse \(MalformedPacketError\)$/.test(l)), lines.join("\n"));
      assert.ok(!lines.some((l) => l.includes("EVIL")));
    });

    test("a broken certificate or handshake is refused, and logged in the legacy reference's words", async () => {
      const start = lines.length;
      for (const fault of await legacyFaults(recorded.publicKey)) {
        logSkewMs += LINES_A_FAULT * (1000 / PEER_LINES_PER_SECOND);
        const from = lines.length;
        await assert.rejects(fetchAs({ ...recorded, publicKey: fault.key ?? recorded.publicKey }, fault.faults), Error, fault.name);
        const warning = await eventually(() => lines.slice(from).find((l) => /^(Handshake failed|Bad certificate): /.test(l)), {
          what: `the warning for ${fault.name}`,
          context: () => lines.slice(from).join("\n"),
        });
        assert.equal(warning, fault.warning, fault.name);
      }
      assert.ok(!lines.slice(start).some((l) => l.startsWith("Sending secret")));
    });

    test("an unknown fingerprint is refused like an unknown key ID", async () => {
      // Refused before any signature check, with access_denied: not proven.
      await assert.rejects(fetchAs(stranger), { code: "MANDOS_CLIENT_TLS" });
      assert.ok(seen.notFound.some((n) => n.fingerprint === stranger.fingerprint && n.keyId === "" && !n.proven));
    });
  });
}
