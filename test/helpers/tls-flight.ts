// A server flight made once and fed to our client role by hand, with its
// tasks run inline and counted: what the flight-processing and RFC 8446
// strictness tests need to see below runLoopback (how many bytes each task
// carried, where an event fell relative to the bytes fed).

import type { KeyObject } from "node:crypto";
import { TlsClient, generateEphemeralKeyShares, parsePriority, runHandshakeTask, type TlsEvent } from "../../src/tls/index.js";
import { FaultyServer, type ServerFaults } from "./faulty-server.js";
import { makeKey } from "./tls-pair.js";

export interface OpenFlight {
  readonly client: TlsClient;
  readonly server: FaultyServer;
  /** Everything the server sent after our ClientHello: ServerHello, [change_cipher_spec], the protected flight. */
  readonly flight: Buffer;
  /** Where ServerHello's record ends in `flight`: what follows is the flight the tasks carry. */
  readonly afterHello: number;
}

const PRIORITY = "SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3";

export function openFlight(options: { key?: { privateKey: KeyObject; publicKeySpki: Buffer }; faults?: ServerFaults; priority?: string } = {}): OpenFlight {
  const settings = parsePriority(options.priority ?? PRIORITY);
  const client = new TlsClient(settings, generateEphemeralKeyShares(settings.keyShareGroups));
  const server = new FaultyServer(settings, options.key ?? makeKey("ed25519"), options.faults);
  client.start();
  server.receive(client.takeOutput()!);
  const flight = server.takeOutput()!;
  return { client, server, flight, afterHello: 5 + flight.readUInt16BE(3) };
}

export interface Fed {
  readonly events: TlsEvent[];
  /** Flight tasks run, and the bytes of records they carried in all. */
  tasks: number;
  taskBytes: number;
}

/** Feeds `bytes` to the client in pieces of `chunk`, running each task inline as soon as it is due. */
export function feed(client: TlsClient, bytes: Buffer, chunk: number, fed: Fed = { events: [], tasks: 0, taskBytes: 0 }): Fed {
  const drain = (): void => {
    for (let task = client.takeTask(); task; task = client.takeTask()) {
      if (task.kind === "server-flight") {
        fed.tasks++;
        fed.taskBytes += task.records.length;
      }
      if (task.kind === "tls12-flight") throw new Error("feed() drives TLS 1.3 handshakes only");
      client.completeTask(runHandshakeTask(task));
    }
    for (let e = client.nextEvent(); e; e = client.nextEvent()) fed.events.push(e);
  };
  for (let i = 0; i < bytes.length; i += chunk) {
    client.receive(bytes.subarray(i, i + chunk));
    drain();
  }
  return fed;
}
