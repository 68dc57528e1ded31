// Our TLS client role (the Mandos server) against our TLS 1.2 OpenPGP
// server role (a simulated legacy mandos-client), in process, through the
// engine's own loopback driver (async: the client role's TLS 1.2 flight
// task checks the OpenPGP key with OpenPGP.js).

import {
  TlsClient,
  generateEphemeralKeyShares,
  parsePriority,
  runLoopbackAsync,
  type TlsEvent,
} from "../../src/tls/index.js";
import { Tls12Server, type OpenPgpIdentity, type Tls12ServerOptions } from "../../src/tls/tls12/server12.js";

export interface LegacyPairResult {
  readonly clientEvents: TlsEvent[];
  readonly serverEvents: TlsEvent[];
  readonly client: TlsClient;
  readonly server: Tls12Server;
  /** What the server received as application data. */
  readonly received: Buffer;
}

export async function runLegacyPair(
  identity: OpenPgpIdentity,
  options: Tls12ServerOptions & {
    clientPriority?: string;
    secret?: Buffer;
    chunk?: number;
    /** Changes the bytes of the server's `index`-th write on their way to the client. */
    tamper?: (index: number, bytes: Buffer) => Buffer;
    /** The known-key table the client role's tasks read (src/tls/known-keys.ts). */
    knownKeys?: SharedArrayBuffer;
  } = {},
): Promise<LegacyPairResult> {
  const settings = parsePriority(options.clientPriority ?? "SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:+CTYPE-OPENPGP:!RSA:!VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2");
  const client = new TlsClient(settings, generateEphemeralKeyShares(settings.keyShareGroups));
  const server = new Tls12Server(identity, options);
  const clientEvents: TlsEvent[] = [];
  const serverEvents: TlsEvent[] = [];
  const secret = options.secret ?? Buffer.from("the secret");
  const chunk = options.chunk;
  let writes = 0;
  client.start();
  await runLoopbackAsync(
    {
      engine: client,
      context: { knownKeys: options.knownKeys },
      event: (e) => {
        clientEvents.push(e);
        if (e.type === "handshake-complete") {
          client.send(secret);
          client.close();
        }
      },
      deliver: chunk ? (bytes, to) => {
        for (let i = 0; i < bytes.length; i += chunk) to.receive(bytes.subarray(i, i + chunk));
      } : undefined,
    },
    {
      engine: server,
      event: (e) => {
        serverEvents.push(e);
        if (e.type === "closed") server.close();
      },
      deliver: (bytes, to) => {
        const sent = options.tamper ? options.tamper(writes++, bytes) : bytes;
        const size = chunk ?? sent.length;
        for (let i = 0; i < sent.length; i += size) to.receive(sent.subarray(i, i + size));
      },
    },
    200,
  );
  const received = Buffer.concat(serverEvents.flatMap((e) => (e.type === "data" ? [e.data] : [])));
  return { clientEvents, serverEvents, client, server, received };
}
