// A child process's log as it arrives, and waits for a pattern in it: the
// one reader behind the helpers that start a server (server.ts) or a server
// in a network namespace (avahi-host.ts); and a Logger that keeps what an
// in-process server logs.

import type { Logger } from "../../src/main/daemon/log.js";

/** A log that grows as `add` is given chunks, until `exited` settles. */
export class LogWatch {
  #text = "";
  readonly #watchers = new Set<() => void>();
  readonly #exited: Promise<unknown>;

  constructor(exited: Promise<unknown>) {
    this.#exited = exited;
  }

  /** The log so far. */
  get text(): string {
    return this.#text;
  }

  add(chunk: string): void {
    this.#text += chunk;
    for (const w of [...this.#watchers]) w();
  }

  /**
   * The first match of `pattern` in the log from offset `from` on, now or
   * when it comes; rejects after `ms`, or when the process exits first,
   * with the log in the error.
   */
  wait(pattern: RegExp, from = 0, ms = 20_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const stop = (): void => {
        this.#watchers.delete(check);
        clearTimeout(timer);
      };
      const check = (): void => {
        const m = pattern.exec(this.#text.slice(from));
        if (!m) return;
        stop();
        resolve(m[0]);
      };
      const timer = setTimeout(() => {
        stop();
        reject(new Error(`server log did not match ${pattern} within ${ms} ms; log:\n${this.#text}`));
      }, ms);
      this.#watchers.add(check);
      void this.#exited.then(() => {
        if (!this.#watchers.has(check)) return;
        stop();
        reject(new Error(`server exited before its log matched ${pattern}; log:\n${this.#text}`));
      });
      check();
    });
  }
}

/** A logger that keeps every line, as "LEVEL: message". */
export function keptLogger(): Logger & { readonly lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (message: string) => void lines.push(`${level}: ${message}`);
  return { lines, debug: keep("DEBUG"), info: keep("INFO"), warning: keep("WARNING"), error: keep("ERROR"), critical: keep("CRITICAL") };
}
