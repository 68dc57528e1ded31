// Interoperability of the TLS engine with GnuTLS (Debian gnutls-bin): our
// client role against gnutls-serv, our server role against gnutls-cli, with
// raw public keys, for every cipher suite and key type, and with a
// HelloRetryRequest forced by group preference. Also: the key ID of a key
// made by the real mandos-keygen equals the key_id it prints.

import { accepting, eventually, freePort } from "./helpers/wait.js";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  TlsClient,
  TlsServer,
  generateEphemeralKeyShares,
  keyId,
  parsePriority,
  DEFAULT_PRIORITY,
  EngineDriver,
  type TlsEvent,
} from "../src/tls/index.js";
import { makeKey, type KeyKind } from "./helpers/tls-pair.js";
import { GNUTLS_CLI, GNUTLS_SERV, MANDOS_KEYGEN, missing } from "./helpers/peers.js";
import { run } from "./helpers/server.js";

const skip = missing(GNUTLS_CLI, GNUTLS_SERV);
let dir = "";

function writeKey(kind: KeyKind): { keyFile: string; pubFile: string; spki: Buffer } {
  const key = makeKey(kind);
  const keyFile = join(dir, `${kind}-${Math.random().toString(36).slice(2)}.key.pem`);
  const pubFile = keyFile.replace(".key.", ".pub.");
  writeFileSync(keyFile, key.privateKey.export({ type: "pkcs8", format: "pem" }));
  writeFileSync(pubFile, createPublicKey(key.privateKey).export({ type: "spki", format: "pem" }));
  return { keyFile, pubFile, spki: key.publicKeySpki };
}

async function waitForListener(port: number, child: ChildProcess): Promise<void> {
  await eventually(() => child.exitCode !== null ? Promise.reject(new Error("gnutls-serv exited")) : accepting("::1", port), { what: `gnutls-serv listening on ${port}`, timeoutMs: 5_000 });
}

/** Our client role against gnutls-serv --echo: handshake, send, read the echo. */
async function clientAgainstGnutls(clientPriority: string, servPriority: string, kind: KeyKind): Promise<TlsEvent & { type: "handshake-complete" }> {
  const { keyFile, pubFile, spki } = writeKey(kind);
  const port = await freePort();
  const serv = spawn(GNUTLS_SERV, ["--echo", "-a", "-p", String(port), "--priority", servPriority, "--rawpkkeyfile", keyFile, "--rawpkfile", pubFile], {
    stdio: "ignore",
  });
  try {
    await waitForListener(port, serv);
    const settings = parsePriority(clientPriority);
    const tls = new TlsClient(settings, generateEphemeralKeyShares(settings.keyShareGroups));
    const message = Buffer.from("echo me, GnuTLS\n");
    return await new Promise((resolve, reject) => {
      const socket: Socket = connect({ host: "::1", port });
      let done: (TlsEvent & { type: "handshake-complete" }) | null = null;
      let echoed = Buffer.alloc(0);
      const timer = setTimeout(() => reject(new Error("timed out")), 10_000);
      const driver = new EngineDriver(tls, {
        write: (bytes) => socket.write(bytes),
        event: (e) => {
          if (e.type === "error") {
            clearTimeout(timer);
            socket.destroy();
            driver.stop();
            reject(e.error);
            return;
          }
          if (e.type === "handshake-complete") {
            done = e;
            assert.equal(e.keyId, keyId(spki));
            tls.send(message);
          }
          if (e.type === "data") {
            echoed = Buffer.concat([echoed, e.data]);
            if (echoed.length >= message.length && done) {
              assert.deepEqual(echoed, message);
              clearTimeout(timer);
              tls.close();
              driver.stop();
              socket.end(tls.takeOutput() ?? Buffer.alloc(0));
              resolve(done);
            }
          }
        },
      });
      socket.on("connect", () => {
        tls.start();
        driver.pump();
      });
      socket.on("data", (d: Buffer) => driver.receive(d));
      socket.on("error", (err) => reject(err));
    });
  } finally {
    serv.kill("SIGKILL");
  }
}

/** Our server role against gnutls-cli: it sends a line; we must receive it. */
async function serverAgainstGnutls(serverPriority: string, cliPriority: string, kind: KeyKind): Promise<string> {
  const key = makeKey(kind);
  const settings = parsePriority(serverPriority);
  let received = Buffer.alloc(0);
  let suite = "";
  const server = createServer((socket) => {
    const driver = new EngineDriver(new TlsServer(settings, key), {
      write: (bytes) => socket.write(bytes),
      event: (e) => {
        if (e.type === "handshake-complete") suite = `${e.cipherSuite} ${e.group}`;
        if (e.type === "data") received = Buffer.concat([received, e.data]);
      },
    });
    socket.on("data", (d: Buffer) => driver.receive(d));
    socket.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "::1", () => r()));
  const port = (server.address() as { port: number }).port;
  try {
    const input = join(dir, "input.txt");
    writeFileSync(input, "hello from gnutls-cli\n");
    const child = spawn(GNUTLS_CLI, ["--insecure", "--priority", cliPriority, "-p", String(port), "::1"], { stdio: ["pipe", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.stdout.on("data", () => undefined);
    child.stdin.write(readFileSync(input));
    // Keep stdin open until the data arrived, then hang up.
    for (let i = 0; i < 200 && received.length === 0 && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 25));
    child.stdin.end();
    child.kill("SIGTERM");
    assert.equal(received.toString(), "hello from gnutls-cli\n", err);
    return suite;
  } finally {
    server.close();
  }
}

const SUITES = ["AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305"];
const KINDS: KeyKind[] = ["ed25519", "ed448", "p256", "p384", "rsa"];

describe("TLS engine against GnuTLS", { skip }, () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "mandos-ts-gnutls-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const suite of SUITES) {
    test(`our client against gnutls-serv with ${suite}`, async () => {
      const p = `NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+${suite}:+GROUP-ALL:+SIGN-ALL`;
      const done = await clientAgainstGnutls(p, `NORMAL:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3`, "ed25519");
      assert.equal(done.cipherSuite.includes(suite.replace(/-/g, "_").replace("_GCM", "_GCM")), true, done.cipherSuite);
    });
  }

  for (const kind of KINDS) {
    test(`our client against gnutls-serv with a ${kind} key, Mandos priorities`, async () => {
      const mandos = "SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:!RSA:!VERS-ALL:+VERS-TLS1.3:%PROFILE_ULTRA";
      const done = await clientAgainstGnutls(mandos, mandos.replace("%PROFILE_ULTRA", "%PROFILE_LOW"), kind);
      // GnuTLS takes our first group when we sent its share: no HelloRetryRequest.
      assert.equal(done.group, "x25519");
    });
  }

  // One ClientHello for both generations (TLS 1.3 RPK and TLS 1.2 OpenPGP): GnuTLS 3.7 still chooses TLS 1.3, with no HelloRetryRequest.
  for (const kind of ["ed25519", "rsa"] as KeyKind[]) {
    for (const serv of ["SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:!RSA:!VERS-ALL:+VERS-TLS1.3:%PROFILE_LOW", "NORMAL:+CTYPE-RAWPK"]) {
      test(`our default (both generations) against gnutls-serv ${serv} with a ${kind} key: TLS 1.3`, async () => {
        const done = await clientAgainstGnutls(DEFAULT_PRIORITY, serv, kind);
        assert.equal(done.version, undefined);
        assert.equal(done.group, "x25519");
      });
    }
  }

  test("gnutls-serv restricted to TLS 1.2 with raw keys is refused by our default: raw keys are TLS 1.3 only", async () => {
    // GnuTLS 3.7 with TLS 1.3 disabled sets no downgrade sentinel; it answers ECDHE_RSA with server_certificate_type RawPublicKey.
    await assert.rejects(clientAgainstGnutls(DEFAULT_PRIORITY, "NORMAL:+CTYPE-RAWPK:-CTYPE-X.509:-VERS-ALL:+VERS-TLS1.2", "rsa"), {
      code: "TLS_UNSUPPORTED_CERTIFICATE",
    });
  });

  test("our client answers a HelloRetryRequest from gnutls-serv", async () => {
    const done = await clientAgainstGnutls(
      "SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3",
      "NORMAL:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-SECP384R1",
      "ed25519",
    );
    assert.equal(done.group, "secp384r1");
  });

  // secp521r1 and RFC 7919's groups: only when the priority names them
  // (docs/PROTOCOL.md, "Key exchange groups").
  for (const group of ["SECP521R1", "FFDHE2048", "FFDHE3072", "FFDHE4096", "FFDHE6144", "FFDHE8192"]) {
    test(`our client, ${group} named, answers gnutls-serv that has only ${group}`, async () => {
      const done = await clientAgainstGnutls(
        `SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3:+GROUP-SECP521R1:+GROUP-DH-ALL`,
        `NORMAL:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-${group}`,
        "ed25519",
      );
      assert.equal(done.group, group.toLowerCase());
    });
  }

  test("our default does not offer FFDHE: gnutls-serv that has only FFDHE2048 refuses it", async () => {
    await assert.rejects(
      clientAgainstGnutls(DEFAULT_PRIORITY, "NORMAL:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-FFDHE2048", "ed25519"),
      { name: "TlsError", code: "TLS_PEER_ALERT", message: "peer sent alert 40" },
    );
  });

  test("gnutls-cli with only FFDHE3072 gets a HelloRetryRequest from our server, which names it, and completes", async () => {
    const got = await serverAgainstGnutls(
      "SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3:+GROUP-FFDHE3072",
      "NORMAL:-CTYPE-ALL:+CTYPE-SRV-RAWPK:+CTYPE-CLI-X.509:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-FFDHE3072",
      "ed25519",
    );
    assert.match(got, /FFDHE3072/i);
  });

  for (const suite of SUITES) {
    for (const kind of ["ed25519", "p256"] as KeyKind[]) {
      test(`gnutls-cli against our server with ${suite} and a ${kind} key`, async () => {
        const got = await serverAgainstGnutls(
          "SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3",
          `NORMAL:-CTYPE-ALL:+CTYPE-SRV-RAWPK:+CTYPE-CLI-X.509:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+${suite}`,
          kind,
        );
        assert.match(got, new RegExp(suite === "CHACHA20-POLY1305" ? "CHACHA20" : suite.replace(/-/g, "_")));
      });
    }
  }

  test("gnutls-cli gets a HelloRetryRequest from our server and completes", async () => {
    const got = await serverAgainstGnutls(
      "NONE:+VERS-TLS1.3:+CTYPE-RAWPK:+AES-128-GCM:+GROUP-X448:+SIGN-ALL",
      "NORMAL:-CTYPE-ALL:+CTYPE-SRV-RAWPK:+CTYPE-CLI-X.509:-VERS-ALL:+VERS-TLS1.3",
      "ed25519",
    );
    assert.match(got, /x448/);
  });

  test("the key ID of a mandos-keygen key equals the key_id it prints", { skip: missing(MANDOS_KEYGEN) }, async () => {
    const keys = join(dir, "keygen");
    mkdirSync(keys);
    execFileSync(MANDOS_KEYGEN, ["--dir", keys, "--force"], { stdio: "ignore" });
    writeFileSync(join(dir, "pw"), "pw");
    const section = (await run(MANDOS_KEYGEN, ["--dir", keys, "--passfile", join(dir, "pw"), "--no-ssh", "--name", "x"])).stdout.toString();
    const printed = /key_id = ([0-9a-f]+)/i.exec(section)?.[1]?.toUpperCase();
    const pub = createPublicKey(readFileSync(join(keys, "tls-pubkey.pem"))).export({ type: "spki", format: "der" });
    assert.equal(keyId(pub), printed);
    // And the private key file is one our test client can load.
    assert.doesNotThrow(() => createPrivateKey(readFileSync(join(keys, "tls-privkey.pem"))));
  });
});
