// An approval or denial arriving before approval_delay ends, for the real
// mandos-client: the server's parts run in this process so the test can
// act as the operator (the D-Bus Approve method will call the same
// registry.approve).

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/index.js";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { parseClientsConfig } from "../src/main/config/index.js";
import { createHandshakeRunner } from "../src/main/serve/handshake-runner.js";
import { Listener } from "../src/main/serve/listener.js";
import { systemClock } from "../src/main/clock.js";
import { events, type ClientRejected, type SecretSent } from "../src/main/events.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { makeClients, makeKeySet } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { runMandosClient } from "./helpers/server.js";

test("the operator approves or denies a waiting real mandos-client before the delay ends", { skip: missing(MANDOS_CLIENT, MANDOS_KEYGEN) }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-approve-"));
  const tlsSettings = parsePriority(DEFAULT_PRIORITY);
  const runner = createHandshakeRunner(0, tlsSettings);
  try {
    makeKeySet(join(root, "pgp"));
    const [yes, no] = makeClients(root, join(root, "pgp"), 2);
    const conf = parseClientsConfig(
      `[DEFAULT]\napproval_delay = PT60S\napproved_by_default = False\nchecker = true\n\n${yes!.section}\n${no!.section}\n`,
      "clients.conf",
    );
    const registry = new ClientRegistry(conf, { logger: silentLogger });
    registry.subscribe((e) => {
      if (e.type === "need-approval") setTimeout(() => registry.approve(e.client.name, e.client.name === yes!.name), 300);
    });
    // What the connections did, as they publish it (channels are process-wide: only this test's clients count).
    const ours = new Set([yes!.name, no!.name]);
    const decisions: string[] = [];
    const onSent = (m: SecretSent): void => void (ours.has(m.client) && decisions.push(`${m.client}: got secret`));
    const onRejected = (m: ClientRejected): void => void (ours.has(m.client) && decisions.push(`${m.client}: ${m.reason}`));
    events.secretSent.subscribe(onSent);
    events.clientRejected.subscribe(onRejected);
    const listener = new Listener({ registry, runner, tlsSettings, logger: silentLogger, clock: systemClock });
    const { port } = await listener.listen({ address: "::1", port: 0, ipv6: true });
    try {
      const started = Date.now();
      const ok = await runMandosClient(yes!.dir, "::1", port);
      // On failure, what each side saw: the decisions so far, and mandos-client's own words.
      assert.equal(ok.stdout.toString(), yes!.password, `decisions: ${JSON.stringify(decisions)}; mandos-client exited ${ok.code}: ${ok.stderr.slice(-2_000)}`);
      assert.ok(Date.now() - started < 30_000, "the approval did not cut the wait short");
      const denied = await runMandosClient(no!.dir, "::1", port, 5_000);
      assert.equal(denied.stdout.length, 0);
      // Refused with close_notify, as the reference's bye(): an end, not a read error.
      assert.doesNotMatch(denied.stderr, /Unknown error while reading data/);
      assert.deepEqual(decisions, [`${yes!.name}: got secret`, `${no!.name}: denied`]);
    } finally {
      events.secretSent.unsubscribe(onSent);
      events.clientRejected.unsubscribe(onRejected);
      await listener.close(1_000);
      registry.stop();
    }
  } finally {
    await runner.close();
    rmSync(root, { recursive: true, force: true });
  }
});
