// One gRPC client per etcd member for auth tokens, instead of one a token.
// etcd3's Authenticator makes a new client each time it asks a member for
// a token and never closes it, and grpc-js keeps every channel it made
// registered (channelz) until it is closed: a server that asks again every
// second (a wrong password; etcd down with authentication on) kept one
// more channel every second, for as long as it ran (measured: 30 failed
// logins left 30 channels, after close() too). Here the Authenticator asks
// through the member's own cached Auth client, which etcd3 closes with the
// rest of the member's clients.

import { Metadata, type CallOptions } from "@grpc/grpc-js";
import { castGrpcError, Etcd3, type IOptions } from "etcd3";

/** The Auth service's call, as grpc-js generates it. */
interface AuthClient {
  authenticate(
    request: { name: string; password: string },
    metadata: Metadata,
    options: CallOptions,
    callback: (error: Error | null, response: { token: string }) => void,
  ): void;
}

/** The parts of etcd3 1.1.x's connection pool used here (not in its public types). */
interface PoolInternals {
  readonly hosts: ReadonlyArray<{ readonly host: string; getServiceClient(name: "Auth"): AuthClient }>;
  readonly authenticator: {
    getCredentialsFromHost(address: string, name: string, password: string, options: CallOptions): Promise<string>;
  };
}

/** A link to etcd with `options` that asks for tokens through one Auth client per member: every Etcd3 the server makes. */
export function openEtcd(options: IOptions): Etcd3 {
  return reuseTokenClients(new Etcd3(options));
}

/** Makes `etcd` ask for tokens through one Auth client per member; returns it. */
function reuseTokenClients(etcd: Etcd3): Etcd3 {
  const pool = (etcd as unknown as { readonly pool: PoolInternals }).pool;
  pool.authenticator.getCredentialsFromHost = (address, name, password, options) => {
    const member = pool.hosts.find((h) => h.host === address);
    if (!member) return Promise.reject(new Error(`no etcd member ${address}`));
    return new Promise((resolve, reject) => {
      member.getServiceClient("Auth").authenticate({ name, password }, new Metadata(), options ?? {}, (error, response) => {
        if (error) reject(castGrpcError(error));
        else resolve(response.token);
      });
    });
  };
  return etcd;
}
