// One gRPC client per etcd member for auth tokens, instead of one a token.
// etcd3's Authenticator makes a new client each time it asks a member for
// a token and never closes it, and grpc-js keeps every channel it made
// registered (channelz) until it is closed: a server that asks again every
// second (a wrong password; etcd down with authentication on) kept one
// more channel every second, for as long as it ran (measured: 30 failed
// logins left 30 channels, after close() too). Here the Authenticator asks
// through the member's own cached Auth client, which etcd3 closes with the
// rest of the member's clients.

import { Metadata, status, type CallOptions, type ServiceError } from "@grpc/grpc-js";
import { castGrpcError, Etcd3, type IOptions } from "etcd3";
import { keepReconnectingChannels } from "./member-channels.js";

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
    /** What every request carries: the token, once etcd has given one (cached until invalidateMetadata). */
    getMetadata(): Promise<Metadata>;
    invalidateMetadata(): void;
  };
}

/**
 * While etcd has authentication off (`etcdctl auth disable`) with
 * etcd_user set, requests go without a token, and a login is tried again
 * this long after: etcd may turn it on again, and then refuses requests
 * without one ("user name is empty"), which etcd3 does not log in again for.
 */
export const AUTH_OFF_RECHECK_MS = 5_000;

/** The "token" of a login that etcd answered with authentication off: no etcd token is empty. */
const NO_TOKEN = "";

/**
 * A link to etcd with `options` that asks for tokens through one Auth
 * client per member, and keeps one connection a member through outages
 * (member-channels.ts): every Etcd3 the server makes. `onAuthOff` is
 * called each time a login finds etcd's authentication off (the link then
 * goes on without a token).
 */
export function openEtcd(options: IOptions, onAuthOff: () => void = () => {}): Etcd3 {
  return keepReconnectingChannels(reuseTokenClients(new Etcd3(options), onAuthOff));
}

/** Makes `etcd` ask for tokens through one Auth client per member, and go without one while etcd has authentication off; returns it. */
function reuseTokenClients(etcd: Etcd3, onAuthOff: () => void): Etcd3 {
  const pool = (etcd as unknown as { readonly pool: PoolInternals }).pool;
  const authenticator = pool.authenticator;
  authenticator.getCredentialsFromHost = (address, name, password, options) => {
    const member = pool.hosts.find((h) => h.host === address);
    if (!member) return Promise.reject(new Error(`no etcd member ${address}`));
    return new Promise((resolve, reject) => {
      member.getServiceClient("Auth").authenticate({ name, password }, new Metadata(), options ?? {}, (error, response) => {
        // etcd 3.4 left with a stale token refuses it, and then every login:
        // a server stayed DEGRADED for as long as etcd had authentication off.
        if (error && authNotEnabled(error)) resolve(NO_TOKEN);
        else if (error) reject(castGrpcError(error));
        else resolve(response.token);
      });
    });
  };
  // When authentication went off (performance.now()), or null.
  let authOffAt: number | null = null;
  const getMetadata = authenticator.getMetadata.bind(authenticator);
  authenticator.getMetadata = async () => {
    if (authOffAt !== null && performance.now() - authOffAt >= AUTH_OFF_RECHECK_MS) {
      authOffAt = null;
      authenticator.invalidateMetadata();
    }
    const metadata = await getMetadata();
    // etcd3 set the empty token in the metadata it keeps; taken out there, once.
    if (metadata.get("token")[0] === NO_TOKEN) {
      metadata.remove("token");
      authOffAt = performance.now();
      onAuthOff();
    }
    return metadata;
  };
  return etcd;
}

/** etcd's answer to a login while its authentication is off (rpctypes' ErrGRPCAuthNotEnabled). */
function authNotEnabled(error: Error): boolean {
  const { code, details } = error as Partial<ServiceError>;
  return code === status.FAILED_PRECONDITION && /authentication is not enabled/.test(details ?? "");
}
