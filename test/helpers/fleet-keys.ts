// Key directories for fleet-enrollment tests and measurements: each machine
// has its own OpenPGP key (Ed25519/Curve25519, milliseconds to make, where
// RSA-4096 takes seconds), its own TLS key and its own password, laid out
// as mandos-keygen leaves them, with the password in DIR/password as
// `mandos-keygen --enroll DIR...` reads it.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateOpenPgpKey } from "../../src/keygen/openpgp-key.js";
import { generateTlsKey } from "../../src/keygen/tls-key.js";

export interface FleetMachine {
  readonly name: string;
  readonly dir: string;
  readonly password: string;
}

export async function makeFleetKeyDirs(root: string, count: number, prefix = "m"): Promise<FleetMachine[]> {
  const machines: FleetMachine[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}${String(i).padStart(5, "0")}`;
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    const pgp = await generateOpenPgpKey({
      type: "EDDSA", length: 4096, subtype: "ECDH", sublength: 4096, name, email: "", comment: "", expireSeconds: 0,
    });
    const tls = generateTlsKey("ed25519");
    const password = `password of ${name} ${i * 7919}`;
    writeFileSync(join(dir, "pubkey.txt"), pgp.publicKey, { mode: 0o600 });
    writeFileSync(join(dir, "seckey.txt"), pgp.secretKey, { mode: 0o600 });
    writeFileSync(join(dir, "tls-pubkey.pem"), tls.publicKeyPem, { mode: 0o600 });
    writeFileSync(join(dir, "tls-privkey.pem"), tls.privateKeyPem, { mode: 0o600 });
    writeFileSync(join(dir, "password"), password, { mode: 0o600 });
    machines.push({ name, dir, password });
  }
  return machines;
}
