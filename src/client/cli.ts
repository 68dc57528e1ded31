// `mandos-ts-client`: the command line of our test client (fetch.ts),
// with mandos-client's option names. Prints the raw secret to stdout.
// With --legacy-seckey it is a legacy client instead (TLS 1.2, OpenPGP).

import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { loadLegacyIdentity } from "./openpgp-identity.js";
import { DEFAULT_PRIORITY, parsePriority } from "../tls/index.js";
import { fetchSecret, FetchError, loadIdentity, parseConnect } from "./fetch.js";

export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command("mandos-ts-client")
    .description("Fetch a secret from a Mandos server like mandos-client --connect, without decrypting it")
    .requiredOption("--connect <ADDRESS:PORT>", "server to connect to, e.g. [::1]:7999 or 127.0.0.1:7999")
    .option("--tls-privkey <FILE>", "TLS private key (PEM), as mandos-keygen writes it")
    .option("--legacy-seckey <FILE>", "be a legacy client: TLS 1.2 with this OpenPGP secret key (mandos-keygen's seckey.txt, RSA, no passphrase)")
    .option("--tls-pubkey <FILE>", "TLS public key (PEM); derived from the private key if absent")
    .option("--priority <STRING>", "GnuTLS priority string", DEFAULT_PRIORITY)
    .option("--timeout <SECONDS>", "give up after this long", "30")
    .exitOverride();
  try {
    program.parse(argv, { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.code === "commander.helpDisplayed" || error.code === "commander.version" ? 0 : 2;
    }
    throw error;
  }
  const o = program.opts<{ connect: string; tlsPrivkey?: string; tlsPubkey?: string; legacySeckey?: string; priority: string; timeout: string }>();
  if (!o.tlsPrivkey && !o.legacySeckey) {
    process.stderr.write("mandos-ts-client: --tls-privkey or --legacy-seckey is required\n");
    return 2;
  }
  try {
    const { host, port } = parseConnect(o.connect);
    const legacy = o.legacySeckey ? await loadLegacyIdentity(readFileSync(o.legacySeckey, "latin1")) : undefined;
    const secret = await fetchSecret({
      host,
      port,
      identity: legacy ? { privateKey: legacy.privateKey, publicKeySpki: Buffer.alloc(0) } : loadIdentity(o.tlsPrivkey!, o.tlsPubkey),
      settings: parsePriority(o.priority),
      timeoutMs: Number(o.timeout) * 1000,
      ...(legacy ? { legacy } : {}),
    });
    process.stdout.write(secret);
    return 0;
  } catch (error) {
    const code = error instanceof FetchError ? `${error.code}: ` : "";
    process.stderr.write(`mandos-ts-client: ${code}${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}
