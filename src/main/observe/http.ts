// The operator's HTTP listener: GET /metrics (Prometheus text format) and
// GET /health (200 "ok", or 503 and the reason). Nothing else: no client
// data is reachable here, and it binds only where `metrics =` says (a bare
// :PORT is loopback, config/server-settings.ts).

import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";
import type { Registry } from "prom-client";
import { systemClock } from "../clock.js";
import { SummedLines } from "../daemon/log.js";
import type { HealthReport } from "./health.js";
import { MetricsPage } from "./metrics-page.js";

export interface OperatorEndpoint {
  /** The address and port bound (port 0 gets one from the OS). */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Connections held at once: a scraper or two need one each. Past it, the
 * oldest connection whose peer is not reading its response is closed for
 * the new one (so that /health still answers while peers that never read
 * hold every place); with none such, the new one is closed at accept. So
 * nobody reaching this port (an operator may bind it beyond loopback)
 * spends the descriptors the Mandos port needs (serve/limits.ts, FD_RESERVE).
 */
export const OPERATOR_MAX_CONNECTIONS = 64;
/**
 * A connection on which nothing is read or written for 5 s is closed: a
 * peer that does not read its response would otherwise hold it, and the
 * responses queued behind it, for ever (a scraper reads its page at once).
 */
export const OPERATOR_STALL_TIMEOUT_MS = 5_000;
/**
 * Requests on one connection not yet answered in full: past this the
 * connection is closed. Scrapers and load balancers send one at a time;
 * a peer pipelining hundreds and never reading would have a page queued
 * for each.
 */
export const OPERATOR_MAX_PIPELINED = 16;
/**
 * A request's headers must come within 5 s and the whole request within
 * 10 s, checked every second (Node's defaults: 60 s, 300 s, checked every
 * 30 s), so that idle connections do not hold those places long.
 */
export const OPERATOR_HEADERS_TIMEOUT_MS = 5_000;
export const OPERATOR_REQUEST_TIMEOUT_MS = 10_000;

/** Where tests lower the limits above (a few connections, a short stall). */
export interface OperatorEndpointOptions {
  /** Builds /metrics (tests pass their own to count builds). */
  readonly page?: MetricsPage;
  readonly maxConnections?: number;
  readonly stallTimeoutMs?: number;
}

/**
 * Serves /metrics and /health on `host`, `port`. `onError` gets what to
 * log of the listening socket's errors after it listens (a failing accept:
 * ENOBUFS, ENOMEM), the first at once and then a sum every 10 s while they
 * go on: unheard, such an error would be thrown, and end the server.
 */
export async function serveOperatorEndpoint(
  host: string, port: number, registry: Pick<Registry, "metrics" | "contentType">, health: () => HealthReport, onError: (line: string) => void,
  options: OperatorEndpointOptions = {},
): Promise<OperatorEndpoint> {
  const page = options.page ?? new MetricsPage(registry);
  const maxConnections = options.maxConnections ?? OPERATOR_MAX_CONNECTIONS;
  /** Open connections, oldest first (a Map keeps insertion order), and their requests not yet answered in full. */
  const open = new Map<Socket, { unanswered: number }>();
  const server: Server = createServer({
    headersTimeout: OPERATOR_HEADERS_TIMEOUT_MS,
    requestTimeout: OPERATOR_REQUEST_TIMEOUT_MS,
    connectionsCheckingInterval: 1_000,
  }, (req, res) => {
    const held = open.get(req.socket);
    if (held !== undefined) {
      held.unanswered++;
      res.once("close", () => void held.unanswered--);
      if (held.unanswered > OPERATOR_MAX_PIPELINED) {
        req.socket.destroy();
        return;
      }
    }
    const path = (req.url ?? "").split("?", 1)[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      page.get().then(
        (text) => res.writeHead(200, { "Content-Type": registry.contentType }).end(text),
        (error: unknown) => res.writeHead(500, { "Content-Type": "text/plain" }).end(`${String(error)}\n`),
      );
      return;
    }
    if (path === "/health") {
      const report = health();
      res.writeHead(report.ok ? 200 : 503, { "Content-Type": "text/plain; charset=utf-8" }).end(report.ok ? "ok\n" : `${report.reason}\n`);
      return;
    }
    res.writeHead(404, { "Content-Type": "text/plain" }).end("not found: try /metrics or /health\n");
  });
  // Scrapers keep their connection; close() must not wait for them.
  server.keepAliveTimeout = 5_000;
  // No callback: a socket that times out is destroyed (node:http's default).
  server.setTimeout(options.stallTimeoutMs ?? OPERATOR_STALL_TIMEOUT_MS);
  server.on("connection", (socket: Socket) => {
    open.set(socket, { unanswered: 0 });
    socket.once("close", () => open.delete(socket));
    if (open.size <= maxConnections) return;
    // Output Node could not hand to the kernel: a peer that does not read.
    let stalled: Socket | undefined;
    for (const s of open.keys()) {
      if (s.writableLength > 0) {
        stalled = s;
        break;
      }
    }
    (stalled ?? socket).destroy();
    open.delete(stalled ?? socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const errors = new SummedLines(
    systemClock, 10_000,
    (message) => onError(`Metrics listening socket error: ${message}`),
    (count, seconds) => onError(`Metrics listening socket errors: ${count} more in the last ${seconds} s`),
  );
  server.on("error", (error) => errors.note(error.message));
  const bound = server.address();
  if (bound === null || typeof bound === "string") throw new Error("metrics listener has no address");
  return {
    address: bound.address,
    port: bound.port,
    close: () => new Promise<void>((resolve) => {
      errors.stop();
      server.closeAllConnections();
      for (const s of open.keys()) s.destroy();
      server.close(() => resolve());
    }),
  };
}
