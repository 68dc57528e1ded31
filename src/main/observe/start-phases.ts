// Where a start's time went, said in one DEBUG line once the server serves
// (docs/OPERATION.md, "Starting"): a fleet's start takes seconds (20,000
// clients: a 37 MB clients.conf and a 17 MB state file), during which a
// rebooting data centre's clients wait and retry, and the log said only
// when it began and when it listened. Each step is the main thread's wall
// time from the end of the step before it; the first is counted from the
// process's start (Node's time origin: bin/mandos runs node at once), so
// the line's total is the time from exec to serving. The reference logs no
// such line.

/** A start's steps, in order, and the one line that says them. */
export class StartPhases {
  readonly #clock: () => number;
  #last = 0;
  readonly #steps: Array<{ readonly name: string; readonly ms: number }> = [];

  /** `clock`: milliseconds since the process started (performance.now()). */
  constructor(clock: () => number = () => performance.now()) {
    this.#clock = clock;
  }

  /** The step `name` ended now; it began as the one before it ended (the first, at the process's start). */
  end(name: string): void {
    const now = this.#clock();
    this.#steps.push({ name, ms: now - this.#last });
    this.#last = now;
  }

  /** The line: the total from the process's start to now, then each step. */
  line(clients: number): string {
    const steps = this.#steps.map((s) => `${s.name} ${ms(s.ms)}`);
    return `Serving ${clients} client${clients === 1 ? "" : "s"} ${ms(this.#clock())} after the process started: ${steps.join(", ")}`;
  }
}

/** A duration in milliseconds, in the line's words: "1234 ms". */
export function ms(duration: number): string {
  return `${Math.max(0, Math.round(duration))} ms`;
}
