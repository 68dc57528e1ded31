// The engine's expensive steps as tasks: plain, structured-cloneable data in
// and out, so the same function runs inline or on a Piscina worker
// (src/workers/handshake.ts). The main thread never does asymmetric crypto
// when tasks go to workers. The TLS 1.3 tasks are synchronous; the TLS 1.2
// flight task alone is async (its OpenPGP key goes through OpenPGP.js), and
// only its result comes as a Promise.

import type { NamedGroup } from "./constants.js";
import { generateKeyShare, type KeyShare } from "./crypto.js";
import { drawRandom } from "./random.js";
import { processServerFlight, type FlightContext, type ServerFlightResult, type ServerFlightTask } from "./flight.js";
import { processTls12Flight, type Tls12FlightResult, type Tls12FlightTask } from "./tls12/flight12.js";

/** Everything a ClientHello needs that is random: key shares, random, session ID. */
export interface EphemeralKeyShares {
  readonly shares: readonly KeyShare[];
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
}

export function generateEphemeralKeyShares(groups: readonly NamedGroup[]): EphemeralKeyShares {
  const r = drawRandom(64);
  return {
    shares: groups.map((g) => generateKeyShare(g)),
    random: r.subarray(0, 32),
    sessionId: r.subarray(32),
  };
}

export interface KeyShareTask {
  readonly kind: "key-share";
  readonly group: NamedGroup;
}

/** The tasks of a TLS 1.3 handshake: synchronous. */
export type ModernHandshakeTask = ServerFlightTask | KeyShareTask;
export type HandshakeTask = ModernHandshakeTask | Tls12FlightTask;

export type ModernHandshakeTaskResult =
  | { readonly kind: "server-flight"; readonly result: ServerFlightResult }
  | { readonly kind: "key-share"; readonly share: KeyShare };
export type HandshakeTaskResult = ModernHandshakeTaskResult | { readonly kind: "tls12-flight"; readonly result: Tls12FlightResult };

/**
 * Runs one task; pure and exception-free (errors are part of the result).
 * A TLS 1.3 task's result comes at once, a TLS 1.2 flight's as a Promise
 * that never rejects.
 */
export function runHandshakeTask(task: ModernHandshakeTask, context?: FlightContext): ModernHandshakeTaskResult;
export function runHandshakeTask(task: HandshakeTask, context?: FlightContext): HandshakeTaskResult | Promise<HandshakeTaskResult>;
export function runHandshakeTask(task: HandshakeTask, context: FlightContext = {}): HandshakeTaskResult | Promise<HandshakeTaskResult> {
  switch (task.kind) {
    case "server-flight":
      return { kind: "server-flight", result: processServerFlight(task, context) };
    case "key-share":
      return { kind: "key-share", share: generateKeyShare(task.group) };
    case "tls12-flight":
      return processTls12Flight(task, context).then((result) => ({ kind: "tls12-flight", result }));
  }
}
