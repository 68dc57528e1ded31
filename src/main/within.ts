// Waiting on a promise no longer than a stop may wait: an etcd watch
// being cancelled, a lease being asked for, the bus names being given up.
// Each once raced its promise against a timer of its own and cleared it.

/**
 * `promise`'s value, or `otherwise` if it has not settled within `ms`
 * (none: at once) or fails. The timer is cleared once either comes; until
 * then it holds the process open, so that a stop's later steps (the state
 * saved last) still run when nothing else is left to wait for.
 */
export async function within<T>(promise: Promise<T>, ms: number, otherwise: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise.catch(() => otherwise),
      new Promise<T>((resolve) => (timer = setTimeout(() => resolve(otherwise), Math.max(0, ms)))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
