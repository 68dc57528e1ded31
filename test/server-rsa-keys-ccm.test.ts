// The real mandos-client with the keys and suites the reference serves and
// ours once did not (audit of 2026-12, docs/DIFFERENCES.md): RSA-PSS raw
// public keys (rsa_pss_pss_*, RFC 8446 §4.2.3) as certtool makes them for
// `mandos-keygen --tls-keytype rsa-pss`, one whose SPKI pins SHA-384, and
// one from our own keygen; RSA keys of 1,024 and 16,384 bits, and a
// 768-bit one refused with a WARNING that names the bound; a client, and
// a server, limited to TLS_AES_128_CCM_SHA256; and the WARNING at start
// for a priority string whose TLS 1.2 has no effect here.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, generateKeyPairSync } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeClients, makeKeySet, type TestClient } from "./helpers/keys.js";
import { MANDOS_CLIENT, MANDOS_KEYGEN, executable, missing } from "./helpers/peers.js";
import { REPO, runMandosClient, startServer, type RunningServer } from "./helpers/server.js";
import { generateTlsKey } from "../src/keygen/tls-key.js";

const CERTTOOL = "/usr/bin/certtool";
const skip = missing(MANDOS_CLIENT, MANDOS_KEYGEN, CERTTOOL);
const KEYS = join(REPO, "test", "data", "keys");

/** mandos-client's default priority (the reference's), with only AES-128-CCM left. */
const CCM_ONLY = "SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:!RSA:!VERS-ALL:+VERS-TLS1.3:%PROFILE_ULTRA:-CIPHER-ALL:+AES-128-CCM";

/** The key ID of a PEM public key file: SHA-256 of its DER bytes as written (certtool --key-id). */
function keyIdOfPem(path: string): string {
  const der = Buffer.from(readFileSync(path, "utf8").replace(/-----[^-]+-----|\s/g, ""), "base64");
  return createHash("sha256").update(der).digest("hex");
}

/** Gives `client` the TLS key pair `write` makes in its directory, and its section the new key ID. */
function rekey(client: TestClient, write: (priv: string, pub: string) => void): TestClient {
  const priv = join(client.dir, "tls-privkey.pem");
  const pub = join(client.dir, "tls-pubkey.pem");
  write(priv, pub);
  const keyId = keyIdOfPem(pub);
  return { ...client, keyId: keyId.toUpperCase(), section: client.section.replace(/key_id\s*=\s*[0-9a-fA-F]+/, `key_id = ${keyId}`) };
}

/** As Debian's mandos-keygen makes the TLS key (`certtool --generate-privkey --pkcs8`, `--pubkey-info`), at 2,048 bits. */
function certtoolKey(extra: readonly string[]) {
  return (priv: string, pub: string): void => {
    execFileSync(CERTTOOL, ["--generate-privkey", "--password=", "--outfile", priv, "--key-type=rsa-pss", "--bits", "2048", "--pkcs8", "--no-text", ...extra], { stdio: "ignore" });
    execFileSync(CERTTOOL, ["--password=", `--load-privkey=${priv}`, `--outfile=${pub}`, "--pubkey-info", "--no-text"], { stdio: "ignore" });
  };
}

function nodeRsaKey(bits: number) {
  return (priv: string, pub: string): void => {
    const pair = generateKeyPairSync("rsa", { modulusLength: bits });
    writeFileSync(priv, pair.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    writeFileSync(pub, pair.publicKey.export({ type: "spki", format: "pem" }));
  };
}

describe("RSA-PSS and RSA raw keys, and AES-128-CCM, with the real mandos-client", { skip: skip || (!executable(CERTTOOL) && "no certtool") }, () => {
  let root = "";
  const clients = new Map<string, TestClient>();
  const servers: RunningServer[] = [];

  async function serve(name: string, mandosConf: string, mode: readonly string[] = []): Promise<RunningServer> {
    const conf = join(root, name);
    mkdirSync(conf);
    writeFileSync(join(conf, "mandos.conf"), `[DEFAULT]\n${mandosConf}`);
    const sections = [...clients.values()].map((c) => c.section);
    writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n\n${sections.join("\n")}\n`, { mode: 0o600 });
    const server = await startServer(["--configdir", conf, "--statedir", join(root, `${name}-state`), "--no-restore", "--port", "0", ...mode]);
    servers.push(server);
    return server;
  }

  async function served(server: RunningServer, name: string, extra: readonly string[] = []): Promise<void> {
    const c = clients.get(name)!;
    const before = server.log().length;
    const r = await runMandosClient(c.dir, "::1", server.port, 60_000, extra);
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    assert.equal(r.stdout.toString("utf8"), c.password, name);
    await server.waitForLog(new RegExp(`Sending secret to ${c.name}\\b`), 10_000, before);
  }

  before(() => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-rsa-ccm-"));
    const pgp = join(root, "pgp");
    makeKeySet(pgp);
    const names = ["pss", "pss384", "ourpss", "rsa1024", "rsa16384", "rsa768", "ed25519"];
    const made = makeClients(root, pgp, names.length);
    const rekeyed: Record<string, (c: TestClient) => TestClient> = {
      pss: (c) => rekey(c, certtoolKey([])),
      // RSASSA-PSS parameters in the SPKI, in GnuTLS's encoding: only rsa_pss_pss_sha384.
      pss384: (c) => rekey(c, certtoolKey(["--hash", "sha384", "--salt-size", "48"])),
      ourpss: (c) => rekey(c, (priv, pub) => {
        const pair = generateTlsKey("rsa-pss", 2048);
        writeFileSync(priv, pair.privateKeyPem, { mode: 0o600 });
        writeFileSync(pub, pair.publicKeyPem);
      }),
      rsa1024: (c) => rekey(c, nodeRsaKey(1024)),
      // Made once with openssl genpkey (minutes): GnuTLS's largest.
      rsa16384: (c) => rekey(c, (priv, pub) => {
        copyFileSync(join(KEYS, "rsa-16384-privkey.pem"), priv);
        copyFileSync(join(KEYS, "rsa-16384-pubkey.pem"), pub);
      }),
      rsa768: (c) => rekey(c, nodeRsaKey(768)),
      ed25519: (c) => c,
    };
    names.forEach((name, i) => clients.set(name, rekeyed[name]!(made[i]!)));
  });

  after(async () => {
    for (const s of servers) await s.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  for (const mode of [["--workers", "0"], ["--workers", "1"]]) {
    test(`${mode.join(" ")}: RSA-PSS keys (certtool's, one pinned to SHA-384, our keygen's), RSA-1024 and RSA-16384 are served`, async () => {
      const server = await serve(`keys${mode[1]}`, "", mode);
      for (const name of ["pss", "pss384", "ourpss", "rsa1024", "rsa16384"]) await served(server, name);
    });
  }

  test("an RSA-768 key is refused, and the WARNING says why", async () => {
    const server = await serve("small", "", ["--workers", "0"]);
    const c = clients.get("rsa768")!;
    // mandos-client tries again and again; a few seconds are one try.
    const r = await runMandosClient(c.dir, "::1", server.port, 4_000);
    assert.equal(r.stdout.length, 0);
    await server.waitForLog(/WARNING: Handshake failed: RSA key of 768 bits: below 1024/);
    assert.doesNotMatch(server.log(), /Sending secret/);
  });

  test("a client limited to AES-128-CCM is served by the default priority", async () => {
    const server = await serve("ccm-client", "", ["--workers", "1"]);
    await served(server, "ed25519", [`--priority=${CCM_ONLY}`]);
  });

  test("a server limited to AES-128-CCM starts and serves a default client", async () => {
    const server = await serve("ccm-server", `priority = ${CCM_ONLY}\n`, ["--workers", "0"]);
    await served(server, "ed25519");
  });

  test("TLS 1.2 without CTYPE-OPENPGP: a WARNING at start that it has no effect here", async () => {
    const server = await serve("tls12", "priority = SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:!VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2\n", ["--workers", "0"]);
    assert.match(server.log(), /WARNING: Priority string: TLS 1\.2 \(VERS-TLS1\.2\) without CTYPE-OPENPGP has no effect here/);
    await served(server, "ed25519");
  });
});
