// Drives our TLS client and server roles against each other in process
// (runLoopback, the engine's own driver), with bytes optionally cut into
// pieces or tampered with on the way, and a server that can misbehave.

import { generateKeyPairSync, type KeyObject } from "node:crypto";
import {
  TlsClient,
  generateEphemeralKeyShares,
  parsePriority,
  runLoopback,
  type TlsEngine,
  type TlsEvent,
  type TlsSettings,
} from "../../src/tls/index.js";
import { FaultyServer, type ServerFaults } from "./faulty-server.js";

export type KeyKind = "ed25519" | "ed448" | "p256" | "p384" | "p521" | "rsa" | "rsa4096";

export function makeKey(kind: KeyKind): { privateKey: KeyObject; publicKeySpki: Buffer } {
  const pair =
    kind === "ed25519" ? generateKeyPairSync("ed25519")
    : kind === "ed448" ? generateKeyPairSync("ed448")
    : kind === "rsa" || kind === "rsa4096" ? generateKeyPairSync("rsa", { modulusLength: kind === "rsa" ? 2048 : 4096 })
    : generateKeyPairSync("ec", { namedCurve: kind === "p256" ? "P-256" : kind === "p384" ? "P-384" : "P-521" });
  return { privateKey: pair.privateKey, publicKeySpki: pair.publicKey.export({ type: "spki", format: "der" }) };
}

export interface PairResult {
  readonly clientEvents: TlsEvent[];
  readonly serverEvents: TlsEvent[];
  /** Every chunk the server sent, in order. */
  readonly serverBytes: Buffer[];
  readonly client: TlsClient;
  readonly server: FaultyServer;
}

export interface PairOptions {
  readonly clientPriority?: string;
  readonly serverPriority?: string;
  readonly key?: { privateKey: KeyObject; publicKeySpki: Buffer };
  readonly faults?: ServerFaults;
  /** Cut every chunk into pieces of this size before delivering it. */
  readonly chunk?: number;
  /** Changes bytes from server to client: chunk index -> new bytes. */
  readonly tamper?: (index: number, bytes: Buffer) => Buffer;
  /** Sent by the client once connected. */
  readonly message?: Buffer;
  /** Called on the server once connected. */
  readonly onServerConnected?: (server: FaultyServer) => void;
  /** The client's table of known key IDs (src/tls/known-keys.ts). */
  readonly knownKeys?: SharedArrayBuffer;
}

export function runPair(options: PairOptions = {}): PairResult {
  const cs: TlsSettings = parsePriority(options.clientPriority ?? "SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3");
  const ss: TlsSettings = parsePriority(options.serverPriority ?? options.clientPriority ?? "SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3");
  const key = options.key ?? makeKey("ed25519");
  const client = new TlsClient(cs, generateEphemeralKeyShares(cs.keyShareGroups));
  const server = new FaultyServer(ss, key, options.faults);
  const clientEvents: TlsEvent[] = [];
  const serverEvents: TlsEvent[] = [];
  const serverBytes: Buffer[] = [];
  const inPieces = (bytes: Buffer, to: TlsEngine): void => {
    const size = options.chunk ?? bytes.length;
    for (let i = 0; i < bytes.length; i += size) to.receive(bytes.subarray(i, i + size));
  };
  client.start();
  runLoopback(
    {
      engine: client,
      event: (e) => {
        clientEvents.push(e);
        if (e.type === "handshake-complete" && options.message) client.send(options.message);
      },
      deliver: inPieces,
      context: { knownKeys: options.knownKeys },
    },
    {
      engine: server,
      event: (e) => {
        serverEvents.push(e);
        if (e.type === "handshake-complete") options.onServerConnected?.(server);
      },
      deliver: (bytes, to) => {
        const index = serverBytes.push(bytes) - 1;
        inPieces(options.tamper ? options.tamper(index, bytes) : bytes, to);
      },
    },
  );
  return { clientEvents, serverEvents, serverBytes, client, server };
}

export function errorOf(events: readonly TlsEvent[]): { code: string; alert: number } | null {
  const e = events.find((x) => x.type === "error");
  return e && e.type === "error" ? { code: e.error.code, alert: e.error.alert } : null;
}
