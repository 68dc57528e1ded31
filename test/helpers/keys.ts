// Key material for integration tests, made by the real mandos-keygen.
// OpenPGP key generation is slow (seconds), so a fleet of clients shares one
// OpenPGP key pair, while each client has its own TLS key (its identity)
// and its own password, encrypted by mandos-keygen as an admin would.

import { execFileSync } from "node:child_process";
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MANDOS_KEYGEN } from "./peers.js";
import type { ClientIdentity } from "../../src/client/fetch.js";

export interface TestClient {
  readonly name: string;
  readonly dir: string;
  readonly password: string;
  /** The clients.conf section mandos-keygen printed. */
  readonly section: string;
  readonly keyId: string;
}

/** A full key set in `dir` (OpenPGP and TLS), as `mandos-keygen --dir` makes it. */
export function makeKeySet(dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync(MANDOS_KEYGEN, ["--dir", dir, "--force"], { stdio: ["ignore", "ignore", "pipe"] });
}

/** A fresh Ed25519 TLS key pair in PEM, as mandos-keygen writes one. */
export function writeTlsKey(dir: string, type: "ed25519" | "ed448" | "ec" = "ed25519"): void {
  const pair =
    type === "ec"
      ? generateKeyPairSync("ec", { namedCurve: "P-256" })
      : type === "ed448"
        ? generateKeyPairSync("ed448")
        : generateKeyPairSync("ed25519");
  writeFileSync(join(dir, "tls-privkey.pem"), pair.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  writeFileSync(join(dir, "tls-pubkey.pem"), pair.publicKey.export({ type: "spki", format: "pem" }));
}

/**
 * Makes `count` clients under `root`, sharing the OpenPGP keys in
 * `pgpDir` (from makeKeySet), each with its own TLS key and password.
 */
export function makeClients(root: string, pgpDir: string, count: number, prefix = "client"): TestClient[] {
  const clients: TestClient[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}${i}`;
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(pgpDir, "pubkey.txt"), join(dir, "pubkey.txt"));
    copyFileSync(join(pgpDir, "seckey.txt"), join(dir, "seckey.txt"));
    writeTlsKey(dir);
    const password = `password of ${name} ${Math.random().toString(36).slice(2)}`;
    const passfile = join(dir, "password");
    writeFileSync(passfile, password);
    const section = execFileSync(
      MANDOS_KEYGEN,
      ["--dir", dir, "--passfile", passfile, "--no-ssh", "--name", name],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
    const keyId = /key_id\s*=\s*([0-9a-fA-F]+)/.exec(section)?.[1]?.toUpperCase() ?? "";
    clients.push({ name, dir, password, section, keyId });
  }
  return clients;
}

export interface FleetDir {
  readonly clients: TestClient[];
  /** `root/conf`, made empty: the test writes its clients.conf there. */
  readonly conf: string;
  /** `root/state`, made empty. */
  readonly state: string;
}

/** In `root`: one OpenPGP key set, `count` clients sharing it (makeClients), and empty conf/ and state/ directories. */
export function makeFleetDir(root: string, count: number, prefix = "client"): FleetDir {
  makeKeySet(join(root, "pgp"));
  const clients = makeClients(root, join(root, "pgp"), count, prefix);
  const conf = join(root, "conf");
  const state = join(root, "state");
  mkdirSync(conf, { recursive: true });
  mkdirSync(state, { recursive: true });
  return { clients, conf, state };
}

/**
 * One client under `root`, with its own key set, and a configuration
 * directory that names it (clients.conf 0600, as Debian installs it).
 */
export function oneClientConfig(root: string): { client: TestClient; conf: string } {
  const pgp = join(root, "pgp");
  makeKeySet(pgp);
  const [client] = makeClients(root, pgp, 1);
  const conf = join(root, "conf");
  mkdirSync(conf);
  writeFileSync(join(conf, "mandos.conf"), "[DEFAULT]\n");
  writeFileSync(join(conf, "clients.conf"), `[DEFAULT]\nchecker = true\n\n${client!.section}\n`, { mode: 0o600 });
  return { client: client!, conf };
}

/** A machine for our own client (src/client/fetch.ts): a fresh Ed25519 identity and secret, no files. */
export interface Machine {
  readonly name: string;
  readonly identity: ClientIdentity;
  readonly keyId: string;
  readonly secret: Buffer;
}

/**
 * `body` framed as an OpenPGP message encrypted to a key (RFC 9580 §10.3: a
 * PKESK packet, then an SEIPD packet holding `body`), which the server's
 * check of secrets (src/main/config/openpgp-message.ts) takes for one: a
 * secret for a test whose client does not decrypt it (ours, a bench's), so
 * that the server does not warn of it.
 */
export function openPgpShaped(body: Buffer): Buffer {
  const packet = (tag: number, content: Buffer): Buffer => {
    const head = Buffer.alloc(6);
    head[0] = 0xc0 | tag;
    head[1] = 0xff;
    head.writeUInt32BE(content.length, 2);
    return Buffer.concat([head, content]);
  };
  // Version 3, a key ID of zeros (any key), RSA.
  const pkesk = Buffer.from([3, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  return Buffer.concat([packet(1, pkesk), packet(18, Buffer.concat([Buffer.from([1]), body]))]);
}

export function machine(name: string): Machine {
  const pair = generateKeyPairSync("ed25519");
  const spki = pair.publicKey.export({ type: "spki", format: "der" });
  return {
    name,
    identity: { privateKey: pair.privateKey, publicKeySpki: spki },
    keyId: createHash("sha256").update(spki).digest("hex").toUpperCase(),
    secret: openPgpShaped(randomBytes(64)),
  };
}

/** `m`'s clients.conf section, with `extra` lines ("enabled = False\n"). */
export function machineSection(m: Machine, extra = ""): string {
  return `[${m.name}]\nkey_id = ${m.keyId}\nsecret = ${m.secret.toString("base64")}\n${extra}`;
}
