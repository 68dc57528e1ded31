// The operator's view of a running server, as subscribers to events.ts:
// Prometheus metrics and the health check on one HTTP listener, the audit
// log, and systemd's readiness and watchdog. main.ts wires it in a few lines:
// `watch` before the listener accepts (so that every connection is counted),
// `open` once privileges are dropped (the audit file and its SIGHUP reopen
// are the running user's), `ready` when serving, `close` at shutdown.

import { hostname } from "node:os";
import type { MetricsAddress } from "../config/server-settings.js";
import { openAuditLog, type AuditLog } from "./audit.js";
import { trackHealth, type Health, type HealthInputs } from "./health.js";
import { serveOperatorEndpoint, type OperatorEndpoint } from "./http.js";
import type { MetricSources, Metrics } from "./metrics.js";
import type { SystemdNotifier } from "./sd-notify.js";
import { reasonWithCode } from "../config/os-error.js";
import { RepeatedFailure } from "../daemon/log.js";

/** How often an HTTP listener that could not listen is tried again. */
export const OPERATOR_RETRY_MS = 10_000;

export interface ObserveSettings {
  readonly metrics: MetricsAddress | undefined;
  readonly auditLog: string;
  readonly auditSyslog: boolean;
  readonly servicename: string;
}

export type ObserveSources = MetricSources & HealthInputs;

export class Observability {
  readonly #settings: ObserveSettings;
  readonly #health: Health;
  readonly #accepting: () => boolean;
  /** Set once by start(), when metrics are asked for. */
  #metrics: Metrics | undefined;
  #endpoint: OperatorEndpoint | undefined;
  #audit: AuditLog | undefined;
  /** Tries the HTTP listener again while it cannot listen. */
  #retry: NodeJS.Timeout | undefined;
  /** Tries the HTTP listener now, if it is being tried again (SIGHUP). */
  #listenAgain: () => void = () => undefined;
  #closed = false;
  readonly #systemd: SystemdNotifier | null;

  /**
   * Starts counting at once: call before the listener accepts. prom-client
   * is loaded only when metrics are asked for (a server without them
   * carries none of its code or memory).
   */
  static async start(settings: ObserveSettings, systemd: SystemdNotifier | null, sources: ObserveSources): Promise<Observability> {
    const health = trackHealth(sources);
    const self = new Observability(settings, systemd, sources, health);
    if (settings.metrics) {
      // The audit file's state, read at each scrape (the file is opened later, by open()).
      const auditWriting = settings.auditLog === "" ? undefined : (): boolean => self.#audit?.writing ?? false;
      self.#metrics = (await import("./metrics.js")).createMetrics(sources, () => health.report().ok, auditWriting);
    }
    return self;
  }

  private constructor(settings: ObserveSettings, systemd: SystemdNotifier | null, sources: ObserveSources, health: Health) {
    this.#settings = settings;
    this.#systemd = systemd;
    this.#health = health;
    this.#accepting = () => sources.accepting() && sources.listenerLost() === null && (sources.workersUnanswering?.() ?? null) === null;
  }

  /**
   * Opens the audit log and the HTTP listener. Neither throws: one that
   * cannot be had (a /var/log remounted read-only, a port another process
   * holds) is said at ERROR (`onError`) and tried again every
   * OPERATOR_RETRY_MS until it can, and said again (`onNote`), while the
   * server serves: what it is there for is the secrets, and the reference
   * has neither. `onError` gets what to log of their failures afterwards
   * too (rate-limited).
   */
  async open(onError: (message: string) => void, onNote: (message: string) => void = () => undefined): Promise<void> {
    if (this.#settings.auditLog !== "" || this.#settings.auditSyslog) {
      this.#audit = openAuditLog({
        ...(this.#settings.auditLog !== "" ? { path: this.#settings.auditLog } : {}),
        syslog: this.#settings.auditSyslog,
        server: { host: hostname(), pid: process.pid, name: this.#settings.servicename },
        onError,
        onWritingAgain: (lost) => onNote(`Writing the audit log again, after ${lost} ${lost === 1 ? "record" : "records"} could not be written`),
        onNote,
      });
    }
    const m = this.#settings.metrics;
    const metrics = this.#metrics;
    if (!m || !metrics) return;
    let failures = 0;
    // Said as RepeatedFailure says (`asked`: a SIGHUP): a port another web
    // server holds (node_exporter's 9100) answers Prometheus and /health
    // probes in our place, so this line may be all that shows it.
    const failure = new RepeatedFailure(() => performance.now());
    // One attempt at a time: a SIGHUP's beside the timer's would fail on the port the other just took.
    let trying = false;
    const listen = async (asked = false): Promise<void> => {
      if (trying || this.#endpoint !== undefined || this.#closed) return;
      trying = true;
      let endpoint: OperatorEndpoint;
      try {
        endpoint = await serveOperatorEndpoint(m.host, m.port, metrics.registry, () => this.#health.report(), onError);
      } catch (error) {
        trying = false;
        failures++;
        const reason = reasonWithCode(error);
        if (failure.shouldSay(reason, asked)) {
          onError(`cannot serve /metrics and /health on ${JSON.stringify(m.host)}, port ${m.port}: ${reason}; tried again every ${OPERATOR_RETRY_MS / 1000} s`);
        }
        if (this.#retry === undefined && !this.#closed) {
          this.#retry = setInterval(() => void listen(), OPERATOR_RETRY_MS);
          this.#retry.unref();
        }
        return;
      }
      trying = false;
      // Closed while it listened: nothing is to serve any more.
      if (this.#closed) {
        await endpoint.close();
        return;
      }
      this.#endpoint = endpoint;
      clearInterval(this.#retry);
      this.#retry = undefined;
      onNote(`Serving /metrics and /health on ${JSON.stringify(endpoint.address)}, port ${endpoint.port}${failures === 0 ? "" : `, after ${failures} failed ${failures === 1 ? "attempt" : "attempts"}`}`);
    };
    this.#listenAgain = () => {
      if (this.#retry !== undefined) void listen(true);
    };
    await listen();
  }

  /** Where /metrics listens, if it does. */
  get endpoint(): { address: string; port: number } | undefined {
    return this.#endpoint;
  }

  /**
   * Serving: tells systemd (Type=notify) and starts its watchdog pings. The
   * watchdog asks only "accepting?" (the listening socket still there) and
   * "no handshake worker stuck?" (one that missed its deadline and could
   * not be ended): a restart cures a wedged server, not a full disk, so a
   * failing state save shows on /health and in the log instead.
   */
  ready(): void {
    this.#systemd?.notify("READY=1");
    this.#systemd?.startWatchdog(this.#accepting);
  }

  /**
   * SIGHUP: logrotate moved the audit file. A failure is said and tried
   * again (audit.ts), not thrown. An HTTP listener that could not listen is
   * tried now too, and its outcome said.
   */
  reopen(): void {
    this.#audit?.reopen();
    this.#listenAgain();
  }

  /**
   * A SIGHUP's reload of clients.conf begins (`systemctl reload`: the
   * unit's ExecReload sends the signal); systemd shows the unit reloading
   * until reloaded().
   */
  reloading(): void {
    this.#systemd?.notify("RELOADING=1");
  }

  /** The reload has ended, applied or refused. */
  reloaded(): void {
    this.#systemd?.notify("READY=1");
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#retry);
    this.#systemd?.notify("STOPPING=1");
    this.#systemd?.close();
    await this.#endpoint?.close();
    this.#audit?.close();
    this.#metrics?.close();
    this.#health.close();
  }
}
