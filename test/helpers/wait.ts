// Waiting in tests, one way: for a port to give a server, for a condition
// to hold. Every wait has a deadline and fails loudly with what it waited
// for, so no test passes by merely not timing out. The benchmark uses
// these too.

import { connect, createServer } from "node:net";

/** A port the OS just chose on `host` (the reference takes port 0 as "no port"). */
export function freePort(host = "::1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen({ host, port: 0 }, () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface EventuallyOptions {
  /** What is awaited, for the error. */
  readonly what: string;
  readonly timeoutMs?: number;
  /** More context for the error (a log, say), read only on failure. */
  readonly context?: () => string;
}

/**
 * Polls `probe` (20 ms, doubling up to 500 ms) until it returns something
 * other than undefined or false, and resolves with that; rejects when
 * `timeoutMs` (default 20 s) passes first, naming `what`.
 */
export async function eventually<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, options: EventuallyOptions): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() >= deadline) {
      const context = options.context?.();
      throw new Error(`${options.what}: not within ${timeoutMs} ms${context ? `\n${context}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, Math.min(20 * 2 ** i, 500)));
  }
}

/** True once something accepts TCP connections on host:port. */
export function accepting(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.on("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}
