// A clients.conf section's secret decrypted by gpg with the machine's
// secret key: what mandos-client (through GPGME) would get from a server.

import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { GPG } from "./peers.js";

/** The password in `section`'s secret, decrypted with `keyDir`/seckey.txt in a fresh gpg home under `scratch`. */
export function decryptSecret(section: string, keyDir: string, scratch: string): Buffer {
  const home = mkdtempSync(join(scratch, "gnupg-"));
  try {
    execFileSync(GPG, ["--homedir", home, "--batch", "--quiet", "--import", join(keyDir, "seckey.txt")], { stdio: "ignore" });
    // Binary, as the server sends it to the client: gpg reads an armour
    // without its CRC line past the end, into the END line.
    const body = section.split("\n").filter((l) => l.startsWith("    ")).join("");
    return execFileSync(GPG, ["--homedir", home, "--batch", "--quiet", "--decrypt"], { input: Buffer.from(body, "base64"), stdio: ["pipe", "pipe", "ignore"] });
  } finally {
    execFileSync("gpgconf", ["--homedir", home, "--kill", "all"], { stdio: "ignore" });
  }
}
