// The Prometheus metrics (docs/OBSERVABILITY.md lists them): counters and
// histograms fed by the facts on events.ts's channels, gauges read from the
// live objects when scraped. Label values come from closed sets (a reason,
// an outcome, a state), never a client name or an address, so that a
// reboot storm of ten thousand machines is still a few dozen series.

import { getHeapStatistics } from "node:v8";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { events, type ConnectionOutcome, type RefusalReason } from "../events.js";
import type { ClientCounts } from "../clients/contract.js";
import type { EtcdLink } from "../fleet/fleet-state.js";
import type { HandshakeCounts } from "../serve/admission.js";
import type { BuildStamp } from "../../build.js";
import { Subscriptions } from "./subscriptions.js";

/** What the gauges read at scrape time. */
export interface MetricSources {
  /** Read at each scrape: counted in one pass over the registry, no view a client (Registry.counts). */
  clientCounts(): ClientCounts;
  /** Handshakes holding a slot, in the slow pool, waiting for a slot (Listener.handshakes; serve threads' as last told). */
  handshakes(): HandshakeCounts;
  /** Handshake worker threads (0: inline). */
  readonly workers: number;
  /** Serve threads (0: the main thread accepts; serve/serve-threads.ts); absent counts as 0. */
  readonly serveThreads?: number;
  /** Handshake tasks waiting for a worker. */
  workerQueue(): number;
  /** Handshake workers ended and replaced for not answering in time, since the start; absent counts as 0. */
  workersReplaced?(): number;
  /** The link to etcd, when the server has one (fleet-state.ts's FleetState.link). */
  etcd?(): EtcdLink;
  /** The build this server runs, read as it started (src/build.ts). */
  readonly build?: BuildStamp;
  /** The build installed now, read at each scrape; null if the server may not read it. */
  installedBuild?(): BuildStamp | null;
}

export const REFUSAL_REASONS: readonly RefusalReason[] = [
  "unknown_key", "disabled", "denied", "approval_timeout", "removed", "superseded", "bad_version", "tls_error",
];
const OUTCOMES: readonly ConnectionOutcome[] = [
  "secret-sent", "refused", "bad-version", "tls-error", "timeout", "peer-closed", "socket-error", "shutdown", "evicted", "internal-error",
];
/** ConnectionOutcome as a label value: Prometheus label values are conventionally snake_case. */
const outcomeLabel = (outcome: ConnectionOutcome): string => outcome.replace(/-/g, "_");

/**
 * Accept to secret sent includes any approval delay (minutes, with
 * approval_delay), hence the long tail; a plain handshake is milliseconds.
 */
const HANDSHAKE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** A worker wait over 100 ms means the pool is saturated. */
const WORKER_WAIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const SAVE_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

const MISNAMED_DEFAULTS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

export interface Metrics {
  readonly registry: Registry;
  /** Stops listening to the channels. */
  close(): void;
}

/**
 * `healthy`: whether /health would answer 200 now (health.ts);
 * `auditWriting`, given when audit_log names a file: whether its records
 * reach it now (audit.ts).
 */
export function createMetrics(sources: MetricSources, healthy: () => boolean = () => true, auditWriting?: () => boolean): Metrics {
  const registry = new Registry();
  const subs = new Subscriptions();

  const accepted = new Counter({ name: "mandos_connections_accepted_total", help: "Connections accepted past the per-source limits.", registers: [registry] });
  const closed = new Counter({
    name: "mandos_connections_closed_total", help: "Accepted connections closed, by outcome.", labelNames: ["outcome"], registers: [registry],
  });
  for (const outcome of OUTCOMES) closed.inc({ outcome: outcomeLabel(outcome) }, 0);
  const notAdmitted = new Counter({
    name: "mandos_connections_not_admitted_total",
    help: "Connections dropped before a handshake slot (waited too long, too many from the source, throttled, not on the served interface, or past the open connections allowed).",
    labelNames: ["why"], registers: [registry],
  });
  for (const why of ["admission_timeout", "source_limit", "throttled", "not_on_interface", "open_limit"]) notAdmitted.inc({ why }, 0);
  const secrets = new Counter({ name: "mandos_secrets_sent_total", help: "Secrets written to a client.", registers: [registry] });
  const refusals = new Counter({
    name: "mandos_refusals_total", help: "Peers that got no secret, by reason.", labelNames: ["reason"], registers: [registry],
  });
  for (const reason of REFUSAL_REASONS) refusals.inc({ reason }, 0);
  const handshake = new Histogram({
    name: "mandos_handshake_duration_seconds", help: "From accept to the secret sent (approval waits included).",
    buckets: HANDSHAKE_BUCKETS, registers: [registry],
  });
  const workerWait = new Histogram({
    name: "mandos_handshake_worker_wait_seconds", help: "Time a handshake waited on the handshake runner (queue and work).",
    buckets: WORKER_WAIT_BUCKETS, registers: [registry],
  });
  const approvals = new Counter({ name: "mandos_approvals_needed_total", help: "Requests that had to wait for approval.", registers: [registry] });
  const checkerRuns = new Counter({
    name: "mandos_checker_runs_total", help: "Checker processes ended, by result.", labelNames: ["result"], registers: [registry],
  });
  for (const result of ["success", "failure", "crashed"]) checkerRuns.inc({ result }, 0);
  const saves = new Counter({
    name: "mandos_state_saves_total", help: "State file saves, by result.", labelNames: ["result"], registers: [registry],
  });
  for (const result of ["ok", "failed"]) saves.inc({ result }, 0);
  const saveDuration = new Histogram({
    name: "mandos_state_save_duration_seconds", help: "Collecting, writing and syncing the state file.",
    buckets: SAVE_BUCKETS, registers: [registry],
  });
  const stateBytes = new Gauge({ name: "mandos_state_file_bytes", help: "Size of the last state file written.", registers: [registry] });

  new Gauge({
    name: "mandos_handshakes_in_flight", help: "Handshakes under way: holding a handshake slot or in the slow pool.", registers: [registry],
    collect() {
      const h = sources.handshakes();
      this.set(h.holding + h.slow);
    },
  });
  new Gauge({
    name: "mandos_handshakes_slow", help: "Handshakes in the slow pool: their peer kept them waiting, their slot went on.", registers: [registry],
    collect() { this.set(sources.handshakes().slow); },
  });
  new Gauge({
    name: "mandos_handshakes_waiting", help: "Connections that sent a good version line and wait for a handshake slot.", registers: [registry],
    collect() { this.set(sources.handshakes().waiting); },
  });
  const evictedSeen = { silent: 0, slow_peer: 0, crowd: 0 };
  new Counter({
    name: "mandos_connections_evicted_total",
    help: "Connections closed to make room for others, by why: silent (no version line after 1 s, at the open connections cap), " +
      "slow_peer (a handshake whose peer was silent over 1 s in the full slow pool), crowd (waiting for a slot, from the source with the most waiting, at the cap).",
    labelNames: ["why"],
    registers: [registry],
    collect() {
      // The admissions count from the start; the counter takes what came since the last scrape.
      const h = sources.handshakes();
      const now = { silent: h.evictedSilent, slow_peer: h.evictedSlow, crowd: h.evictedWaiting };
      for (const why of ["silent", "slow_peer", "crowd"] as const) {
        this.inc({ why }, Math.max(0, now[why] - evictedSeen[why]));
        evictedSeen[why] = Math.max(evictedSeen[why], now[why]);
      }
    },
  });
  new Gauge({
    name: "mandos_handshake_workers", help: "Handshake worker threads (0: handshakes run on the main thread).", registers: [registry],
    collect() { this.set(sources.workers); },
  });
  let replacedSeen = 0;
  new Counter({
    name: "mandos_handshake_workers_replaced_total", help: "Handshake worker threads ended and replaced because they did not answer a request in time.", registers: [registry],
    collect() {
      const now = sources.workersReplaced?.() ?? 0;
      this.inc(Math.max(0, now - replacedSeen));
      replacedSeen = Math.max(replacedSeen, now);
    },
  });
  // What /health says, for an alert: Prometheus scrapes /metrics, and a
  // state directory unusable since the start, a listening socket lost or a
  // wedged worker moved no counter.
  new Gauge({
    name: "mandos_healthy", help: "1 when /health answers 200; 0 when it answers 503 (not accepting connections, a worker or serve thread not answering, state not saved): its body says why.",
    registers: [registry],
    collect() { this.set(healthy() ? 1 : 0); },
  });
  new Gauge({
    name: "mandos_serve_threads", help: "Threads that accept and serve connections whole (0: the main thread accepts).", registers: [registry],
    collect() { this.set(sources.serveThreads ?? 0); },
  });
  new Gauge({
    name: "mandos_handshake_worker_queue", help: "Handshake tasks waiting for a worker thread.", registers: [registry],
    collect() { this.set(sources.workerQueue()); },
  });
  new Gauge({
    name: "mandos_clients", help: "Configured clients by state (awaiting_approval and secret_sealed count enabled or disabled clients too).",
    labelNames: ["state"], registers: [registry],
    collect() {
      const counts = sources.clientCounts();
      this.set({ state: "enabled" }, counts.enabled);
      this.set({ state: "disabled" }, counts.disabled);
      this.set({ state: "awaiting_approval" }, counts.awaitingApproval);
      this.set({ state: "secret_sealed" }, counts.secretSealed);
    },
  });
  new Gauge({
    name: "mandos_checkers_running", help: "Checker processes running.", registers: [registry],
    collect() { this.set(sources.clientCounts().checkersRunning); },
  });
  new Gauge({
    name: "mandos_checkers_waiting", help: "Checkers due and waiting for their turn to start.", registers: [registry],
    collect() { this.set(sources.clientCounts().checkersWaiting); },
  });
  const running = sources.build;
  if (running) {
    new Gauge({
      name: "mandos_build_info", help: "1, labelled with the version and build (12 hex digits of its files' SHA-256) this server runs.",
      labelNames: ["version", "build"], registers: [registry],
    }).set({ version: running.version, build: running.build }, 1);
    const installed = sources.installedBuild?.bind(sources);
    if (installed) {
      new Gauge({
        name: "mandos_restart_needed", help: "1 when the mandos-ts installed now is another build than this server runs (npm install -g meanwhile): restart to run it.",
        registers: [registry],
        collect() {
          const now = installed();
          this.set(now !== null && now.build !== running.build ? 1 : 0);
        },
      });
    }
  }
  new Gauge({
    name: "mandos_heap_limit_bytes", help: "V8's heap limit on the main thread (old generation cap plus young generation); compare nodejs_heap_size_used_bytes.",
    registers: [registry],
    collect() { this.set(getHeapStatistics().heap_size_limit); },
  });
  const etcd = sources.etcd?.bind(sources);
  if (etcd) {
    new Gauge({
      name: "mandos_etcd_degraded", help: "1 while the server says DEGRADED: etcd has failed for 5 s or more and not answered since.", registers: [registry],
      collect() { this.set(etcd().degraded ? 1 : 0); },
    });
    let counted = 0;
    new Counter({
      name: "mandos_etcd_failures_total", help: "Reads and writes of the shared state that etcd failed, short failures (an election) included.", registers: [registry],
      collect() {
        const failures = etcd().failures;
        this.inc(failures - counted);
        counted = failures;
      },
    });
  }
  collectDefaultMetrics({ register: registry });
  // prom-client's gauges named like counters, which `promtool check metrics`
  // rejects; their per-type siblings (nodejs_active_handles...) stay.
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);

  subs.on(events.connectionAccepted, () => accepted.inc());
  subs.on(events.connectionClosed, ({ outcome, stage }) => {
    closed.inc({ outcome: outcomeLabel(outcome) });
    if (outcome === "tls-error") refusals.inc({ reason: "tls_error" });
    // Accepted, but its time ran out while it waited for a handshake slot.
    else if (outcome === "timeout" && stage === "AwaitingSlot") notAdmitted.inc({ why: "admission_timeout" });
  });
  subs.on(events.connectionNotAdmitted, ({ why }) => notAdmitted.inc({ why: why.replace(/-/g, "_") }));
  subs.on(events.versionLine, ({ accepted: ok }) => {
    if (!ok) refusals.inc({ reason: "bad_version" });
  });
  subs.on(events.handshakeDone, ({ runnerWaitMs }) => workerWait.observe(runnerWaitMs / 1000));
  subs.on(events.clientNotFound, () => refusals.inc({ reason: "unknown_key" }));
  subs.on(events.clientRejected, ({ reason }) => refusals.inc({ reason }));
  subs.on(events.secretSent, ({ durationMs }) => {
    secrets.inc();
    handshake.observe(durationMs / 1000);
  });
  subs.on(events.approvalNeeded, () => approvals.inc());
  subs.on(events.checkerCompleted, ({ exitCode }) =>
    checkerRuns.inc({ result: exitCode === 0 ? "success" : exitCode > 0 ? "failure" : "crashed" }));
  subs.on(events.stateSaved, ({ bytes, durationMs }) => {
    saves.inc({ result: "ok" });
    saveDuration.observe(durationMs / 1000);
    stateBytes.set(bytes);
  });
  subs.on(events.stateSaveFailed, () => saves.inc({ result: "failed" }));
  const auditLost = new Counter({
    name: "mandos_audit_records_lost_total", help: "Audit records that could not be written to the audit file (ENOSPC, EIO...); each was a secret released, a known client refused or its request cut short.", registers: [registry],
  });
  const auditReopen = new Counter({
    name: "mandos_audit_reopen_failures_total", help: "Attempts to open the audit file that failed (at start, at SIGHUP, when it was found deleted, then every 10 s until one succeeds); records go on to the old file, or, if there is none or it was deleted, are counted lost.", registers: [registry],
  });
  subs.on(events.auditFailed, ({ what }) => (what === "write" ? auditLost : auditReopen).inc());
  if (auditWriting) {
    new Gauge({
      name: "mandos_audit_log_writing",
      help: "1 while audit records reach the file audit_log names: open and still under that name (not moved by logrotate without a SIGHUP, not deleted), the last record written; 0 otherwise.",
      registers: [registry],
      collect() { this.set(auditWriting() ? 1 : 0); },
    });
  }

  return { registry, close: () => subs.close() };
}
