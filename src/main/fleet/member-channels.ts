// The gRPC channels of a link to etcd, kept while their member cannot be
// reached, so that an outage leaves no connection behind (docs/ETCD.md
// "When etcd is down").
//
// etcd3 1.1.2 closes every channel of a member at each failure of a
// request to it, and makes new ones for the next request. grpc-js 1.14
// shares one connection (a subchannel) between the channels to one
// address; a channel closed while that subchannel waits to reconnect
// (TRANSIENT_FAILURE: etcd refused it or could not be reached) drops it
// from grpc-js's pool, yet the subchannel still reconnects once when its
// backoff ends. If the member answers by then, it connects and stays
// connected, idle, with nothing left to close it but the member itself
// closing the connection. Measured with one bin/mandos: 4-8 such
// connections after each etcd restart (closed by the next one), and, with
// the member unreachable for a moment (a route withdrawn) instead of
// restarted, 7 more at each cut, for good: 1, 9, 16, 23, 28, 35.
//
// Here a channel waiting to reconnect is kept, and reconnects by itself
// (every RECONNECT_MS at most: member-policy.ts); the other channels are
// closed at a failure as etcd3 closes them (a member that hangs: its calls
// end, and a new connection is tried at the next request). Every channel
// to one member then shares one subchannel, and the link holds one
// connection a member.

import { connectivityState, type Client } from "@grpc/grpc-js";
import type { Etcd3 } from "etcd3";

/** The parts of etcd3 1.1.x's Host (one etcd member) used here (not in its public types). */
interface MemberInternals {
  /** Its gRPC clients, one a service, made at the first request for it. */
  cachedServices: Record<string, Client | undefined>;
  closed: boolean;
  /** Called by etcd3 after a failure of a request to the member. */
  resetAllServices(): void;
  /** Called by Etcd3.close(). */
  close(): void;
}

/** Makes `etcd` keep the channels that wait to reconnect when a member fails (above); returns it. */
export function keepReconnectingChannels(etcd: Etcd3): Etcd3 {
  const pool = (etcd as unknown as { readonly pool: { readonly hosts: readonly MemberInternals[] } }).pool;
  for (const member of pool.hosts) {
    member.resetAllServices = () => {
      for (const [name, client] of Object.entries(member.cachedServices)) {
        if (!client || client.getChannel().getConnectivityState(false) === connectivityState.TRANSIENT_FAILURE) continue;
        // Closed at once, where etcd3 waits up to a second for a channel
        // that is connecting: its subchannel may fail meanwhile, and would
        // then reconnect for nobody.
        client.close();
        delete member.cachedServices[name];
      }
    };
    member.close = () => {
      for (const client of Object.values(member.cachedServices)) client?.close();
      member.cachedServices = Object.create(null) as Record<string, Client | undefined>;
      member.closed = true;
    };
  }
  return etcd;
}
