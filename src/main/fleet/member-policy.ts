// How a server deals with one etcd member that fails or hangs while the
// others answer (docs/ETCD.md "When etcd is down"): the cluster of three
// is there so that losing one changes nothing visible.
//
// - A member that fails is passed over. etcd3 puts a circuit breaker in
//   front of each member: after failures in a row a request fails at once
//   without reaching it, until the breaker lets one trial through. Its
//   default waits 5 s before that trial: after an outage, while etcd
//   answered again, every server stayed degraded up to 5 s more (10 s when
//   a trial came too early). Ours tries again after MEMBER_RETRY_MS, and
//   with other members to go to, passes a member over at its first failure.
//   While the trial is out, other requests pass the member over too
//   (MemberBreaker): cockatiel's made them wait for it, and a request etcd3
//   ran again for a new auth token inside the trial waited for itself.
// - A member that hangs (a frozen host, a partition that drops packets)
//   answers nothing and refuses nothing. Each attempt of a request has a
//   deadline of its own, so that a request that met the hung member goes
//   on to another (etcd3 retries a timed-out request on the next member)
//   instead of spending its whole time there. gRPC pings every connection
//   that carries a call, so that a watch on the hung member breaks and
//   comes back on another one, where without pings it would wait for ever
//   without a word. And a lease's renewal that is not answered is sent
//   again on a stream of its own (guardLease), before etcd lets the lease
//   expire.
// - A member cut off from the others but alive answers the pings. Streams
//   ask for a member with a leader (requireLeader), which it ends once it
//   has lost its leader, so that they come back on another member.
// - An answer larger than gRPC takes (MAX_ANSWER_BYTES: a page of the
//   fleet's read that holds large values) is the request's fault, not the
//   member's: it passes nobody over and is not made again as it was (the
//   reader asks again for fewer keys, fleet-state.ts). Before, each such
//   read was made four times, and with one member three of them passed it
//   over, every other request failing with them.

import { InterceptingCall, type Interceptor } from "@grpc/grpc-js";
import { BrokenCircuitError, circuitBreaker, CircuitState, ConsecutiveBreaker, handleWhen, retry, type CircuitBreakerPolicy, type IDefaultPolicyContext, type IPolicy } from "cockatiel";
import { EtcdLeaseInvalidError, GRPCResourceExhastedError, isRecoverableError, type Lease } from "etcd3";

/** How long a member that failed is passed over before a request tries it again. */
export const MEMBER_RETRY_MS = 1_000;
/**
 * Recoverable failures in a row (unreachable, timed out, unavailable) that
 * make the only member passed over; with others to go to, one is enough.
 */
export const LONE_MEMBER_FAILURES = 3;
/**
 * How long one attempt of a request may wait for a member. A healthy etcd
 * answers within milliseconds and warns of a request that took 100 ms;
 * an attempt that met a hung member goes on to another after this.
 */
export const ATTEMPT_TIMEOUT_MS = 1_000;
/**
 * How often gRPC pings a connection that carries a call, and how long it
 * waits for the answer before it drops the connection (its calls fail and
 * are made again elsewhere). etcd's default `--grpc-keepalive-min-time` is
 * 5 s: a client that pings more often is told to stop (GOAWAY
 * "too_many_pings").
 */
export const KEEPALIVE_MS = 5_000;
export const KEEPALIVE_TIMEOUT_MS = 2_000;

/**
 * An answer larger than this client takes (gRPC's "Received message larger
 * than max"): etcd answered, and would answer the same again.
 */
export function isAnswerTooLarge(error: unknown): boolean {
  return error instanceof GRPCResourceExhastedError && /larger than max/i.test(error.message);
}

/** A failure that may be the member's (etcd3's isRecoverableError), not an answer too large. */
function memberFailure(error: Error): boolean {
  return isRecoverableError(error) && !isAnswerTooLarge(error);
}

/** The breaker for one etcd member of `members` (etcd3's `faultHandling.host`). */
export function memberPolicy(members: number): IPolicy {
  const failures = members > 1 ? 1 : LONE_MEMBER_FAILURES;
  return new MemberBreaker(circuitBreaker(handleWhen(memberFailure), { halfOpenAfter: MEMBER_RETRY_MS, breaker: new ConsecutiveBreaker(failures) }));
}

/** etcd3's retries of a request (`faultHandling.global`): its default, three more attempts, but none for an answer too large. */
export function requestPolicy(): IPolicy {
  return retry(handleWhen(memberFailure), { maxAttempts: 3 });
}

/**
 * cockatiel's breaker, except while its trial request is out (half-open):
 * then other requests are passed over at once, where cockatiel makes each
 * wait for the trial's end. etcd3 runs a request that met an auth token
 * etcd no longer knows (a restarted etcd forgets them all) again, from
 * inside that request's attempt: when the attempt was a member's trial,
 * the request waited for itself, and every request after it for that
 * member with it, for ever: a server stayed degraded after an etcd
 * restart, for good. Passed over, the request again goes to another
 * member, or fails and is made again a second later with a new token.
 */
class MemberBreaker implements IPolicy {
  declare readonly _altReturn: never;
  readonly #breaker: CircuitBreakerPolicy;

  constructor(breaker: CircuitBreakerPolicy) {
    this.#breaker = breaker;
  }

  get onSuccess(): IPolicy["onSuccess"] {
    return this.#breaker.onSuccess;
  }

  get onFailure(): IPolicy["onFailure"] {
    return this.#breaker.onFailure;
  }

  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    if (this.#breaker.state === CircuitState.HalfOpen) return Promise.reject(new BrokenCircuitError());
    return this.#breaker.execute(fn, signal);
  }
}

/**
 * A stream (a watch, a lease's keep-alives) asks for a member with a
 * leader (etcd's `hasleader` metadata, which etcd's own Go client sets on
 * its watches): a member cut off from the others ends it once it has lost
 * its leader, where it would otherwise keep a watch open and bring no
 * change until the partition heals. Not a request: while the members elect
 * a new leader every one of them would refuse it at once, where without
 * it a request waits for the election (ATTEMPT_TIMEOUT_MS at most).
 */
const requireLeader: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      const withLeader = metadata.clone();
      withLeader.set("hasleader", "true");
      next(withLeader, listener);
    },
  });

/**
 * The call options of each attempt (etcd3's `defaultCallOptions`, asked
 * again for every attempt): a request's deadline, or a stream's demand
 * for a leader (a stream lives as long as it is wanted: no deadline).
 */
export function attemptOptions(context: { readonly isStream: boolean }): { deadline: number } | { interceptors: Interceptor[] } {
  return context.isStream ? { interceptors: [requireLeader] } : { deadline: Date.now() + ATTEMPT_TIMEOUT_MS };
}

/**
 * How long a channel kept while its member cannot be reached waits before
 * it connects again (member-channels.ts). grpc-js's default waits 1 s, then
 * 1.6 times longer each time, up to 120 s: a member back after a long
 * outage would be tried that long after. As the breakers try it: once a
 * second. (A quarter of that changed nothing measured: the request that
 * finds the channel still waiting fails, and the member's next trial, a
 * second later, is the first to go through; docs/ETCD.md.)
 */
export const RECONNECT_MS = MEMBER_RETRY_MS;

/** grpc-js's reconnection backoff (etcd3's `grpcOptions`): RECONNECT_MS, every time. */
export const RECONNECT_OPTIONS = {
  "grpc.initial_reconnect_backoff_ms": RECONNECT_MS,
  "grpc.max_reconnect_backoff_ms": RECONNECT_MS,
} as const;

/** gRPC's pings (etcd3's `grpcOptions`). */
export const KEEPALIVE_OPTIONS = {
  "grpc.keepalive_time_ms": KEEPALIVE_MS,
  "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
} as const;

/** Keeps `lease` alive past a member that hangs (LeaseGuard), until the lease is lost or revoked. */
export function guardLease(lease: Lease): void {
  new LeaseGuard(lease);
}

/**
 * Keeps a lease alive past a member that hangs. etcd3 renews a lease on one
 * stream, every TTL/3, and gives that stream up only after a whole TTL
 * without an answer: by then etcd has let the lease expire, and the server
 * has lost its share of the checkers and its pending requests. When a
 * renewal is not answered within ATTEMPT_TIMEOUT_MS, the guard renews the
 * lease on a stream of its own, with a deadline, and again (at most one a
 * ATTEMPT_TIMEOUT_MS) until one is answered; each goes to a member the
 * breakers let through.
 */
class LeaseGuard {
  readonly #lease: Lease;
  #timer: NodeJS.Timeout | null = null;
  #renewing = false;
  #answered = false;
  #closed = false;

  constructor(lease: Lease) {
    this.#lease = lease;
    lease.on("keepaliveFired", this.#fired.bind(this));
    lease.on("keepaliveSucceeded", this.#succeeded.bind(this));
    lease.on("lost", this.close.bind(this));
  }

  /** The lease is lost: nothing left to renew. */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #fired(): void {
    if (this.#timer || this.#closed) return;
    this.#answered = false;
    this.#timer = setTimeout(this.#unanswered.bind(this), ATTEMPT_TIMEOUT_MS).unref();
  }

  #succeeded(): void {
    this.#answered = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #unanswered(): void {
    this.#timer = null;
    if (!this.#answered) void this.#renew();
  }

  async #renew(): Promise<void> {
    if (this.#renewing) return;
    this.#renewing = true;
    try {
      while (!this.#closed && !this.#answered && !this.#lease.revoked()) {
        // gRPC takes a wall-clock deadline (and turns it into a timeout at
        // once); the pause before the next attempt is measured on the
        // monotonic clock, which a step of the wall clock does not move.
        const started = performance.now();
        try {
          await this.#lease.keepaliveOnce({ deadline: Date.now() + ATTEMPT_TIMEOUT_MS });
          return;
        } catch (error) {
          if (error instanceof EtcdLeaseInvalidError) return; // etcd3 has said "lost"
        }
        const rest = started + ATTEMPT_TIMEOUT_MS - performance.now();
        if (rest > 0) await new Promise((resolve) => setTimeout(resolve, rest).unref());
      }
    } finally {
      this.#renewing = false;
    }
  }
}
