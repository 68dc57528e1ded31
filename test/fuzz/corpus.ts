// The fuzz corpus (test/data/tls-corpus/*.json): real streams of bytes one
// peer sent to our engine, recorded by bench/record-fuzz-corpus.ts from GnuTLS
// (gnutls-serv, gnutls-cli) and from our own roles. A client-role entry
// keeps the ephemeral key share and randoms our client used, so that a
// client rebuilt from them sends the same ClientHello and the recorded
// server flight completes the handshake again, byte for byte: mutations of
// it are then judged against a known good outcome.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { montgomeryPrivateKey } from "../../src/tls/crypto.js";
import type { EphemeralKeyShares } from "../../src/tls/tasks.js";

export interface CorpusEntry {
  /** Which of our roles the bytes are fed to. */
  readonly role: "client" | "server";
  /** Who sent them: "gnutls-serv ed25519 AES-128-GCM", "our server p256". */
  readonly source: string;
  /** Our engine's priority string. */
  readonly priority: string;
  /** Client role: the X25519 private key (hex) and the randoms our ClientHello used. */
  readonly ephemeral?: { readonly privateKey: string; readonly random: string; readonly sessionId: string };
  /** The peer's bytes, hex: client role up to its Finished; server role, everything. */
  readonly peer: string;
}

export const CORPUS_DIR = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..", "..", "test", "data", "tls-corpus");

export function loadCorpus(dir = CORPUS_DIR): CorpusEntry[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as CorpusEntry);
}

/** The client's ephemeral values from an entry: an X25519 share from its private key. */
export function ephemeralOf(e: NonNullable<CorpusEntry["ephemeral"]>): EphemeralKeyShares {
  const d = Buffer.from(e.privateKey, "hex");
  const x = montgomeryPrivateKey("X25519", d).export({ format: "jwk" }).x ?? "";
  return {
    shares: [{ group: "x25519", privateKey: d, publicKey: Buffer.from(x, "base64url") }],
    random: Buffer.from(e.random, "hex"),
    sessionId: Buffer.from(e.sessionId, "hex"),
  };
}
