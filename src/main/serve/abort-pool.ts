// The AbortControllers of secret requests, reused. A connection that proved
// its key asks the registry for the secret with a signal it can abort if
// the peer goes away; an AbortSignal is an EventTarget, ~7 µs to make on
// the thread that decides (--cpu-prof, 10,000-client wave), one a secret,
// and nearly every request is decided at once without an abort. The
// registry leaves no listener on a signal once a request settles
// (../clients/contract.ts), so a controller whose request settled
// unaborted is as good as new. One pool per thread (module state).

/** Spare controllers kept at most: a burst's worth. */
const MAX_SPARE = 1024;

const spare: AbortController[] = [];

/** A controller whose signal is not aborted and has no listener. */
export function takeAbortController(): AbortController {
  return spare.pop() ?? new AbortController();
}

/** Its request settled: kept for the next unless it was aborted. */
export function returnAbortController(abort: AbortController): void {
  if (!abort.signal.aborted && spare.length < MAX_SPARE) spare.push(abort);
}
