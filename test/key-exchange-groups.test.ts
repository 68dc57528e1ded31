// The key exchange groups GnuTLS has beyond our default four: secp521r1 and
// the finite-field groups of RFC 7919. The reference's GnuTLS offers them
// all (SECURE128); ours offers them when mandos.conf's `priority` names
// them (docs/PROTOCOL.md, "Key exchange groups"). The real mandos-client,
// its --priority left with one such group, against bin/mandos with the
// default priority (refused) and with the group named (served), inline and
// with the HelloRetryRequest's share made on a worker.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeClients, makeKeySet, type TestClient } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { runMandosClient, startServer, type RunningServer } from "./helpers/server.js";

const skip = missing(MANDOS_CLIENT, MANDOS_KEYGEN);

/** mandos-client's own default, then one group alone. */
const clientPriority = (group: string): string =>
  `--priority=SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:!RSA:!VERS-ALL:+VERS-TLS1.3:%PROFILE_ULTRA:-GROUP-ALL:+GROUP-${group}`;
/** Our default, with the groups named. */
const OUR_DEFAULT = "SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:+CTYPE-OPENPGP:!RSA:!VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%PROFILE_ULTRA";
const NAMED = `${OUR_DEFAULT}:+GROUP-SECP521R1:+GROUP-DH-ALL`;

describe("key exchange groups beyond the default four, with the real mandos-client", { skip }, () => {
  let root = "";
  let client: TestClient;
  const servers: RunningServer[] = [];

  async function serve(name: string, priority: string, mode: readonly string[]): Promise<RunningServer> {
    const conf = join(root, name);
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), `[DEFAULT]\npriority = ${priority}\n`);
    writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n\n${client.section}\n`, { mode: 0o600 });
    const server = await startServer(["--configdir", conf, "--statedir", join(root, `${name}-state`), "--no-restore", "--port", "0", "--debug", ...mode]);
    servers.push(server);
    return server;
  }

  before(() => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-groups-"));
    const pgp = join(root, "pgp");
    makeKeySet(pgp);
    [client] = makeClients(root, pgp, 1) as [TestClient];
  });

  after(async () => {
    for (const s of servers) await s.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("the default priority: a client that has only FFDHE2048 is refused, and nothing is sent", async () => {
    const server = await serve("default", OUR_DEFAULT, ["--workers", "0"]);
    // mandos-client tries again and again; a few seconds are several tries.
    const r = await runMandosClient(client.dir, "::1", server.port, 4_000, [clientPriority("FFDHE2048")]);
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout.length, 0);
    // GnuTLS closes without an alert when it has no group in common.
    await server.waitForLog(/Handshake failed: /);
    assert.doesNotMatch(server.log(), /Sending secret/);
  });

  test("the default priority: a client that has only secp521r1 asks for it, is refused, and the log names the priority token that would serve it", async () => {
    const server = await serve("default-521", OUR_DEFAULT, ["--workers", "0"]);
    const r = await runMandosClient(client.dir, "::1", server.port, 4_000, [clientPriority("SECP521R1")]);
    assert.notEqual(r.code, 0);
    await server.waitForLog(/HelloRetryRequest selects secp521r1, which we did not offer: a server priority with \+GROUP-SECP521R1 would/);
    assert.doesNotMatch(server.log(), /Sending secret/);
  });

  // Each group against GnuTLS, both roles: tls-gnutls.test.ts. Here the
  // whole server, with few mandos-client runs (each one's gpg fails now and
  // then on a loaded machine, whichever server it talks to).
  for (const mode of [["--workers", "0"], ["--workers", "1"]]) {
    test(`named in priority, ${mode.join(" ")}: served over FFDHE2048 and secp521r1`, async () => {
      const server = await serve(`named${mode[1]}`, NAMED, mode);
      for (const group of ["FFDHE2048", "SECP521R1"]) {
        const before = server.log().length;
        const r = await runMandosClient(client.dir, "::1", server.port, 30_000, [clientPriority(group)]);
        assert.equal(r.code, 0, `${group}: ${r.stderr}`);
        assert.equal(r.stdout.toString("utf8"), client.password, group);
        await server.waitForLog(/Sending secret to/, 10_000, before);
      }
    });
  }
});
