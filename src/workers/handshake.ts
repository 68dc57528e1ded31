// The Piscina worker: runs the TLS engine's expensive steps off the main
// thread. Stateless: each request carries all it needs and returns plain
// data. Key shares are made in batches, so that a burst of connections
// costs one message round trip per batch, not per connection.

import { generateEphemeralKeyShares, runHandshakeTask, type EphemeralKeyShares, type HandshakeTask, type HandshakeTaskResult, type NamedGroup } from "../tls/index.js";

export type WorkerRequest =
  | { readonly kind: "handshake"; readonly task: HandshakeTask }
  | { readonly kind: "keygen"; readonly groups: readonly NamedGroup[]; readonly count: number };

export type WorkerResponse =
  | { readonly kind: "handshake"; readonly result: HandshakeTaskResult }
  | { readonly kind: "keygen"; readonly shares: EphemeralKeyShares[] };

export default function work(request: WorkerRequest): WorkerResponse {
  if (request.kind === "keygen") {
    const shares: EphemeralKeyShares[] = [];
    for (let i = 0; i < request.count; i++) shares.push(generateEphemeralKeyShares(request.groups));
    return { kind: "keygen", shares };
  }
  return { kind: "handshake", result: runHandshakeTask(request.task) };
}
