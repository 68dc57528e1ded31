// How a server passes over an etcd member that failed, and how soon it
// tries that member again (docs/ETCD.md "When etcd is away"). etcd3 puts
// a circuit breaker in front of each member: three recoverable failures
// in a row and the member is skipped, a request failing at once without
// reaching it, until the breaker lets one trial through. Its default
// waits 5 s before that trial: after an outage, while etcd answered
// again, every server stayed degraded up to 5 s more (two trials that came
// too early: 10 s). Ours tries again after MEMBER_RETRY_MS.

import { circuitBreaker, ConsecutiveBreaker, handleWhen, type CircuitBreakerPolicy } from "cockatiel";
import { isRecoverableError } from "etcd3";

/** How long a member that failed three times in a row is passed over before a request tries it again. */
export const MEMBER_RETRY_MS = 1_000;
/** Recoverable failures in a row (unreachable, timed out, unavailable) that make a member passed over. */
export const MEMBER_FAILURES = 3;

/** The breaker for one etcd member (etcd3's `faultHandling.host`). */
export function memberPolicy(): CircuitBreakerPolicy {
  return circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: MEMBER_RETRY_MS, breaker: new ConsecutiveBreaker(MEMBER_FAILURES) });
}
