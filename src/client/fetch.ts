// Our own Mandos client, on the TLS engine's server role: it connects like
// `mandos-client --connect`, presents its raw public key (or, as a legacy
// client, its OpenPGP key over TLS 1.2), and returns the
// secret bytes as received (it does not decrypt them). The integration
// tests and the mass-reboot benchmark use it; `bin/mandos-ts-client` is its
// command line.

import { connect, type Socket } from "node:net";
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { EngineDriver, TlsServer, type TlsSettings } from "../tls/index.js";
import { FetchError } from "./errors.js";
import { Tls12Server, type OpenPgpIdentity, type Tls12ServerOptions } from "../tls/tls12/server12.js";

export { FetchError, type FetchErrorCode } from "./errors.js";

export interface ClientIdentity {
  readonly privateKey: KeyObject;
  /** DER SubjectPublicKeyInfo. */
  readonly publicKeySpki: Buffer;
}

/** Loads a key pair as `mandos-keygen` writes it (tls-privkey.pem, tls-pubkey.pem). */
export function loadIdentity(privateKeyPath: string, publicKeyPath?: string): ClientIdentity {
  const privateKey = createPrivateKey(readFileSync(privateKeyPath));
  const publicKey = publicKeyPath ? createPublicKey(readFileSync(publicKeyPath)) : createPublicKey(privateKey);
  return { privateKey, publicKeySpki: publicKey.export({ type: "spki", format: "der" }) };
}

export interface FetchOptions {
  readonly host: string;
  readonly port: number;
  /** The address to connect from (the benchmark gives each machine its own). */
  readonly localAddress?: string;
  readonly identity: ClientIdentity;
  readonly settings: TlsSettings;
  /** Whole exchange, connect to close. */
  readonly timeoutMs?: number;
  /** The protocol line; tests change it to exercise the server. */
  readonly versionLine?: string;
  /** Be a legacy client instead: TLS 1.2 with this OpenPGP key (tls12/server12.ts); `identity` is then unused. */
  readonly legacy?: OpenPgpIdentity;
  /** The legacy engine's options (its DH parameters, curve, and the faults tests make it send). */
  readonly legacyOptions?: Tls12ServerOptions;
}

/** Connects, does the handshake, and resolves with the secret the server sent. */
export function fetchSecret(options: FetchOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const socket: Socket = connect({
      host: options.host,
      port: options.port,
      noDelay: true,
      ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
    });
    const finish = (error: FetchError | null): void => {
      if (settled) return;
      settled = true;
      driver.stop();
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else if (chunks.length === 0) reject(new FetchError("MANDOS_CLIENT_NO_SECRET", "the server closed without sending a secret"));
      else resolve(Buffer.concat(chunks));
    };
    const timer = setTimeout(
      () => finish(new FetchError("MANDOS_CLIENT_TIMEOUT", "timed out")),
      options.timeoutMs ?? 30_000,
    );
    const engine = options.legacy ? new Tls12Server(options.legacy, options.legacyOptions) : new TlsServer(options.settings, options.identity);
    const driver = new EngineDriver(engine, {
      write: (bytes) => {
        if (!socket.destroyed) socket.write(bytes);
      },
      event: (event) => {
        switch (event.type) {
          case "data":
            chunks.push(event.data);
            return;
          case "closed":
            return finish(null);
          case "error":
            return finish(new FetchError("MANDOS_CLIENT_TLS", event.error.message));
          case "handshake-complete":
            return;
        }
      },
    });
    socket.on("connect", () => {
      socket.write(options.versionLine ?? "1\r\n");
      driver.pump();
    });
    socket.on("data", (data: Buffer) => driver.receive(data));
    socket.on("end", () => finish(null));
    socket.on("error", (error: NodeJS.ErrnoException) =>
      finish(new FetchError("MANDOS_CLIENT_SOCKET", error.code ?? error.message)),
    );
  });
}

/** Parses `--connect` the way mandos-client does: `ADDRESS:PORT`, IPv6 in brackets or not. */
export function parseConnect(value: string): { host: string; port: number } {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(value);
  if (!match || match[1] === undefined || match[2] === undefined) {
    throw new Error(`--connect must be ADDRESS:PORT, not ${JSON.stringify(value)}`);
  }
  return { host: match[1], port: Number(match[2]) };
}
