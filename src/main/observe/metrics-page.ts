// The /metrics page, built at most once at a time and reused for a moment:
// building it (prom-client's registry.metrics(), the gauges' collects
// included) runs on the main thread, so a flood of scrapes, each building
// its own, would take the time the Mandos port's handshakes need.
//
// Invariants: at most one build runs; every request that comes while it
// runs gets its result; a page is served for PAGE_REUSE_MS after its build
// ended, then the next request starts a new build. A failed build is
// never reused (the next request tries again).

/**
 * How long a built page is served again. Prometheus scrapes every 15 s or
 * more (its default: 1 min), so one scraper never sees a reused page; the
 * values may be up to this old (docs/OBSERVABILITY.md).
 */
export const PAGE_REUSE_MS = 1_000;

/** What builds the page: prom-client's Registry is one. */
export interface PageSource {
  metrics(): Promise<string>;
}

export class MetricsPage {
  readonly #source: PageSource;
  readonly #now: () => number;
  readonly #reuseMs: number;
  #building: Promise<string> | undefined;
  #page: { readonly text: string; readonly builtAt: number } | undefined;

  /** `now`: monotonic milliseconds (tests pass their own). */
  constructor(source: PageSource, now: () => number = () => performance.now(), reuseMs = PAGE_REUSE_MS) {
    this.#source = source;
    this.#now = now;
    this.#reuseMs = reuseMs;
  }

  /** The page: a fresh enough one, the build under way, or a new build. */
  get(): Promise<string> {
    if (this.#page !== undefined && this.#now() - this.#page.builtAt < this.#reuseMs) return Promise.resolve(this.#page.text);
    if (this.#building !== undefined) return this.#building;
    const building = this.#source.metrics().then(
      (text) => {
        this.#page = { text, builtAt: this.#now() };
        this.#building = undefined;
        return text;
      },
      (error: unknown) => {
        this.#building = undefined;
        throw error;
      },
    );
    this.#building = building;
    return building;
  }
}
