// The summaries the load generators and the native comparison make of
// their figures: a percentile of sorted values, a median, and the steady
// rate of a wave.

/** The p-th percentile (nearest rank) of ascending `sorted`; 0 when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)]!;
}

/** The middle of `values` in any order (the mean of the two middles when even); 0 when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Secrets per second between the 10th and 90th percentile of ascending
 * completion times (ms): the wave in full flow, without the pipeline
 * filling and draining.
 */
export function steadyRate(completions: readonly number[]): number {
  if (completions.length < 10) return 0;
  const lo = Math.floor(completions.length * 0.1);
  const hi = Math.ceil(completions.length * 0.9) - 1;
  const span = completions[hi]! - completions[lo]!;
  return span > 0 ? ((hi - lo) / span) * 1000 : 0;
}
