// The observability pieces alone, in process: the metrics address syntax,
// /health following state saves, and the audit log's records, failures and
// reopen, fed by publishing on the channels as the core would; and the
// operator endpoint's connection cap, its bounds on peers that never read
// or pipeline without end, its /metrics page built once for many
// requests, and its listening socket's errors.

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import http, { type Server } from "node:http";
import { syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseMetricsAddress } from "../src/main/config/server-settings.js";
import { events, type ConnectionRef } from "../src/main/events.js";
import { trackHealth } from "../src/main/observe/health.js";
import { Observability } from "../src/main/observe/index.js";
import { openAuditLog } from "../src/main/observe/audit.js";
import { OPERATOR_HEADERS_TIMEOUT_MS, OPERATOR_MAX_CONNECTIONS, OPERATOR_MAX_PIPELINED, serveOperatorEndpoint, type OperatorEndpoint, type OperatorEndpointOptions } from "../src/main/observe/http.js";
import { MetricsPage, PAGE_REUSE_MS } from "../src/main/observe/metrics-page.js";
import { Registry as PromRegistry } from "prom-client";
import { connect, type Socket } from "node:net";
import { eventually } from "./helpers/wait.js";
import { idleSources } from "./helpers/observe-sources.js";

test("metrics addresses: HOST:PORT, [IPV6]:PORT, and a bare :PORT on loopback", () => {
  assert.deepEqual(parseMetricsAddress(":9100"), { host: "127.0.0.1", port: 9100 });
  assert.deepEqual(parseMetricsAddress("[::1]:9100"), { host: "::1", port: 9100 });
  assert.deepEqual(parseMetricsAddress("[::]:9100"), { host: "::", port: 9100 });
  assert.deepEqual(parseMetricsAddress("0.0.0.0:9100"), { host: "0.0.0.0", port: 9100 });
  assert.deepEqual(parseMetricsAddress("monitor.example:80"), { host: "monitor.example", port: 80 });
  for (const bad of ["9100", "[::1]", "::1:9100", ":70000", "host:", "host:port"]) {
    assert.throws(() => parseMetricsAddress(bad), { code: "MANDOS_BAD_METRICS_ADDRESS" }, bad);
  }
});

test("/health follows the last state save, and says why it is not ok", () => {
  let accepting = true;
  let notKept: string | null = null;
  let lost: string | null = null;
  const health = trackHealth({ accepting: () => accepting, listenerLost: () => lost, stateNotKept: () => notKept });
  try {
    assert.deepEqual(health.report(), { ok: true });
    events.stateSaveFailed.publish({ path: "/x/clients.pickle", reason: "ENOSPC" });
    assert.deepEqual(health.report(), { ok: false, reason: "the last state save failed: ENOSPC" });
    events.stateSaved.publish({ path: "/x/clients.pickle", bytes: 10, durationMs: 1, replacedOther: false });
    assert.deepEqual(health.report(), { ok: true });
    notKept = "/x is not usable";
    assert.deepEqual(health.report(), { ok: false, reason: "state is not saved: /x is not usable" });
    lost = "the listening socket was closed under the server";
    assert.deepEqual(health.report(), { ok: false, reason: "not accepting connections: the listening socket was closed under the server" });
    accepting = false;
    assert.deepEqual(health.report(), { ok: false, reason: "not accepting connections" });
  } finally {
    health.close();
  }
});

test("mandos_healthy says what /health says, for Prometheus, which scrapes /metrics only", async () => {
  let notKept: string | null = null;
  const observe = await Observability.start({ metrics: { host: "127.0.0.1", port: 0 }, auditLog: "", auditSyslog: false, servicename: "Mandos" }, null,
    idleSources({ stateNotKept: () => notKept }));
  try {
    await observe.open(() => undefined);
    const get = async (path: string): Promise<string> => (await fetch(`http://127.0.0.1:${observe.endpoint!.port}${path}`)).text();
    assert.match(await get("/metrics"), /^mandos_healthy 1$/m);
    // A state directory unusable since the start moves no counter: only this.
    notKept = "/var/lib/mandos is not usable";
    assert.match(await get("/health"), /state is not saved/);
    await eventually(async () => /^mandos_healthy 0$/m.test(await get("/metrics")), { what: "mandos_healthy 0 (the page is reused for a second)", timeoutMs: 5_000 });
  } finally {
    await observe.close();
  }
});

const connection: ConnectionRef = { id: 1, address: "192.0.2.7", port: 40000, source: "192.0.2.7", label: "('192.0.2.7', 40000)" };

test("the audit log: one line per release, per refusal of a known client and per request cut short, none for unknown keys; reopen follows logrotate", () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-audit-"));
  const path = join(dir, "audit.jsonl");
  const audit = openAuditLog({ path, server: { host: "h", pid: 7, name: "Mandos" }, now: () => new Date(0) });
  try {
    events.secretSent.publish({ connection, client: "foo", keyId: "AB", durationMs: 3 });
    events.clientNotFound.publish({ connection, keyId: "CD", proven: true });
    events.clientRejected.publish({ connection, client: "bar", keyId: "EF", reason: "denied" });
    events.secretAbandoned.publish({ connection, client: "qux", keyId: "12", outcome: "shutdown", stage: "AwaitingDecision" });
    events.secretAbandoned.publish({ connection, client: "quux", keyId: "34", outcome: "socket-error", stage: "Sending" });
    const server = { host: "h", pid: 7, name: "Mandos" };
    const base = { time: "1970-01-01T00:00:00.000Z", address: "192.0.2.7", port: 40000 };
    assert.equal(readFileSync(path, "utf8"), [
      JSON.stringify({ time: base.time, outcome: "released", reason: null, client: "foo", key_id: "AB", address: base.address, port: base.port, server }),
      JSON.stringify({ time: base.time, outcome: "refused", reason: "denied", client: "bar", key_id: "EF", address: base.address, port: base.port, server }),
      JSON.stringify({ time: base.time, outcome: "abandoned", reason: "shutdown", client: "qux", key_id: "12", address: base.address, port: base.port, server }),
      JSON.stringify({ time: base.time, outcome: "unconfirmed", reason: "socket_error", client: "quux", key_id: "34", address: base.address, port: base.port, server }),
      "",
    ].join("\n"));
    assert.equal(statSync(path).mode & 0o777, 0o640 & ~process.umask());
    renameSync(path, `${path}.1`);
    audit.reopen();
    events.secretSent.publish({ connection, client: "baz", keyId: "01", durationMs: 3 });
    assert.match(readFileSync(path, "utf8"), /^\{"time":"1970-01-01T00:00:00.000Z","outcome":"released","reason":null,"client":"baz",/);
    // A legacy peer's record names its fingerprint too.
    events.secretSent.publish({ connection, client: "old", keyId: "", fingerprint: "9A2B", durationMs: 3 });
    const legacy = JSON.parse(readFileSync(path, "utf8").trim().split("\n")[1]!) as Record<string, unknown>;
    assert.equal(legacy.key_id, "");
    assert.equal(legacy.fingerprint, "9A2B");
    assert.equal(readFileSync(`${path}.1`, "utf8").split("\n").length, 5);
  } finally {
    audit.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an audit write that fails is reported, not thrown into the core", () => {
  const errors: string[] = [];
  // /dev/full: every write fails with ENOSPC.
  const audit = openAuditLog({ path: "/dev/full", server: { host: "h", pid: 7, name: "Mandos" }, onError: (m) => errors.push(m) });
  try {
    events.secretSent.publish({ connection, client: "foo", keyId: "AB", durationMs: 3 });
    events.secretSent.publish({ connection, client: "foo", keyId: "AB", durationMs: 3 });
    assert.deepEqual(errors, ["cannot write the audit log: ENOSPC"]);
  } finally {
    audit.close();
  }
});

test("a disk that fills mid-record costs that record alone: a short write is finished, a cut line ends before the next record", () => {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-audit-"));
  const path = join(dir, "audit.jsonl");
  // As write(2) on a filling disk: what fits is written and counted, then ENOSPC.
  let room = Infinity;
  // One call takes at most this many bytes with room to spare (a short write that is no failure).
  let takeOnce = Infinity;
  const write = (fd: number, bytes: Uint8Array, offset: number, length: number): number => {
    if (room <= 0) throw Object.assign(new Error("ENOSPC"), { code: "ENOSPC" });
    const n = writeSync(fd, bytes, offset, Math.min(length, room, takeOnce));
    takeOnce = Infinity;
    room -= n;
    return n;
  };
  const errors: string[] = [];
  const again: number[] = [];
  const failed: string[] = [];
  const onFailed = ({ what, reason }: { what: string; reason: string }): void => void failed.push(`${what} ${reason}`);
  events.auditFailed.subscribe(onFailed);
  const audit = openAuditLog({ path, server: { host: "h", pid: 7, name: "Mandos" }, now: () => new Date(0), onError: (m) => errors.push(m), onWritingAgain: (n) => again.push(n), write });
  const sent = (client: string): void => events.secretSent.publish({ connection, client, keyId: "AB", durationMs: 3 });
  try {
    sent("whole");
    takeOnce = 10;
    sent("short");
    room = 10;
    sent("cut");
    sent("lost");
    room = Infinity;
    sent("after");
    assert.deepEqual(errors, ["cannot write the audit log: ENOSPC"], "said once, at the record that was cut");
    // Each lost record published (mandos_audit_records_lost_total), and the end of the run said.
    assert.deepEqual(failed, ["write ENOSPC", "write ENOSPC"]);
    assert.deepEqual(again, [2]);
    const lines = readFileSync(path, "utf8").split("\n");
    assert.equal(lines.at(-1), "", "the file ends with a whole line");
    const clients = lines.slice(0, -1).map((l) => {
      try {
        return (JSON.parse(l) as { client: string }).client;
      } catch {
        return "(cut)";
      }
    });
    assert.deepEqual(clients, ["whole", "short", "(cut)", "after"]);
  } finally {
    events.auditFailed.unsubscribe(onFailed);
    audit.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

interface RetryingAudit {
  readonly logs: string;
  readonly path: string;
  readonly errors: string[];
  readonly notes: string[];
  /** What onWritingAgain was told: records lost before the file was written again. */
  readonly again: number[];
  /** What events.auditFailed published: "write ENOSPC", "reopen ENOENT"... */
  readonly failed: string[];
  readonly sent: (client: string) => void;
  readonly reopen: () => void;
}

/**
 * An audit log in a directory of its own (DIR/logs/audit.jsonl) whose failed
 * reopens are tried again every 20 ms; with `madeAtStart` false, the
 * directory is not there when it is first opened.
 */
async function withRetryingAudit(body: (a: RetryingAudit) => Promise<void>, { madeAtStart = true } = {}): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-audit-"));
  const logs = join(dir, "logs");
  if (madeAtStart) mkdirSync(logs);
  const path = join(logs, "audit.jsonl");
  const errors: string[] = [];
  const notes: string[] = [];
  const again: number[] = [];
  const failed: string[] = [];
  const onFailed = ({ what, reason }: { what: string; reason: string }): void => void failed.push(`${what} ${reason}`);
  events.auditFailed.subscribe(onFailed);
  const audit = openAuditLog({ path, server: { host: "h", pid: 7, name: "Mandos" }, onError: (m) => errors.push(m), onNote: (m) => notes.push(m), onWritingAgain: (n) => again.push(n), reopenRetryMs: 20 });
  const sent = (client: string): void => events.secretSent.publish({ connection, client, keyId: "AB", durationMs: 3 });
  try {
    await body({ logs, path, errors, notes, again, failed, sent, reopen: () => audit.reopen() });
  } finally {
    events.auditFailed.unsubscribe(onFailed);
    audit.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The directory of a failing audit file is gone: opens are tried again and
 * the failure said once; once it is back the file opens, which is said
 * (`word`: "Opened", "Reopened"), and takes the next record.
 */
async function opensOnceDirectoryIsBack({ logs, path, errors, notes, failed, sent }: RetryingAudit, word: string): Promise<void> {
  const tried = failed.length;
  await eventually(() => failed.length >= tried + 2, { what: "opens tried again" });
  assert.equal(errors.length, 1, "said once");
  mkdirSync(logs);
  await eventually(() => notes.length > 0, { what: "the open said" });
  assert.match(notes[0]!, new RegExp(`^${word} the audit log .*audit\\.jsonl, after \\d+ failed attempts(;|$)`));
  sent("after");
  assert.match(readFileSync(path, "utf8"), /^\{[^\n]*"client":"after"[^\n]*\n$/);
}

test("an audit reopen that fails is said, not thrown, tried again until it succeeds, and said again; records go on to the file open meanwhile", () =>
  withRetryingAudit(async (audit) => {
    const { logs, errors, failed, sent, reopen } = audit;
    // The directory moved away: the reopen cannot create the file (as ENOSPC or EPERM would refuse it).
    renameSync(logs, `${logs}.old`);
    reopen();
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^cannot reopen the audit log .*audit\.jsonl: No such file or directory \(ENOENT\); tried again every [\d.]+ s, records go on to the file open until then$/);
    assert.deepEqual(failed, ["reopen ENOENT"]);
    sent("meanwhile");
    assert.match(readFileSync(join(`${logs}.old`, "audit.jsonl"), "utf8"), /"client":"meanwhile"/);
    await opensOnceDirectoryIsBack(audit, "Reopened");
  }));

test("an audit file that cannot be opened at start is said, not thrown, tried again until it opens; the records meanwhile are counted lost", () =>
  // Its directory is missing (as on a /var/log not mounted yet, or read-only: EROFS).
  withRetryingAudit(async (audit) => {
    assert.deepEqual(audit.errors.map((e) => e.replace(audit.path, "PATH")), ["cannot open the audit log PATH: No such file or directory (ENOENT); tried again every 0.02 s, records are lost meanwhile"]);
    assert.deepEqual(audit.failed, ["open ENOENT"]);
    audit.sent("lost");
    assert.deepEqual(audit.failed.slice(0, 2), ["open ENOENT", "write ENOENT"]);
    await opensOnceDirectoryIsBack(audit, "Opened");
    assert.match(audit.notes[0]!, /; 1 record could not be written meanwhile$/, "the lost record said as the file opens");
    assert.deepEqual(audit.again, [], "not said again at the next record");
  }, { madeAtStart: false }));

test("an audit open failing for a new reason, or at a SIGHUP, is said again; the same reason is not", () =>
  withRetryingAudit(async ({ logs, errors, failed, reopen }) => {
    await eventually(() => failed.length >= 3, { what: "opens tried again" });
    assert.equal(errors.length, 1);
    // The operator's fix half done: something made where the directory should be, but not a directory.
    writeFileSync(logs, "");
    await eventually(() => errors.length === 2, { what: "the new reason said" });
    assert.match(errors[1]!, /: Not a directory \(ENOTDIR\); tried again every/);
    const tried = failed.length;
    await eventually(() => failed.length >= tried + 2, { what: "opens tried again" });
    assert.equal(errors.length, 2, "the same reason said once");
    reopen();
    assert.equal(errors.length, 3, "said at the operator's SIGHUP");
    assert.match(errors[2]!, /: Not a directory \(ENOTDIR\)/);
    rmSync(logs);
  }, { madeAtStart: false }));

test("an audit file deleted while open is opened anew and said; where it cannot be, the records are counted lost until it can", () =>
  withRetryingAudit(async ({ logs, path, errors, notes, failed, sent }) => {
    sent("first");
    unlinkSync(path);
    sent("second");
    assert.match(errors[0] ?? "", /^the audit log .*audit\.jsonl was deleted while open: opening it anew$/);
    assert.match(readFileSync(path, "utf8"), /^\{[^\n]*"client":"second"[^\n]*\n$/);
    // Deleted with its directory: no new file can be made until the directory is back.
    rmSync(logs, { recursive: true });
    sent("lost");
    assert.match(errors.join("\n"), /cannot reopen the audit log .*: No such file or directory \(ENOENT\); tried again every [\d.]+ s, records are lost meanwhile/);
    assert.ok(failed.includes("write ENOENT"), failed.join(", "));
    mkdirSync(logs);
    await eventually(() => notes.some((n) => n.startsWith("Reopened the audit log")), { what: "the reopen said" });
    sent("back");
    assert.match(readFileSync(path, "utf8"), /^\{[^\n]*"client":"back"/);
  }));

test("an audit file replaced by a FIFO is refused at reopen, not opened (which could hold the server for ever), and tried again", () =>
  withRetryingAudit(async ({ path, errors, notes, sent, reopen }) => {
    renameSync(path, `${path}.1`);
    execFileSync("mkfifo", [path]);
    // With a reader, as a collector would be: opening it for writing then succeeds, and is refused for what it is.
    const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      reopen();
      assert.match(errors[0] ?? "", /^cannot reopen the audit log .*audit\.jsonl: a FIFO, not a regular file; tried again every [\d.]+ s, records go on to the file open until then$/);
      sent("meanwhile");
      assert.match(readFileSync(`${path}.1`, "utf8"), /"client":"meanwhile"/);
    } finally {
      closeSync(reader);
    }
    rmSync(path);
    await eventually(() => notes.some((n) => n.startsWith("Reopened the audit log")), { what: "the reopen said" });
  }));

test("the operator endpoint holds OPERATOR_MAX_CONNECTIONS, and idle ones go after the headers' timeout", async () => {
  const endpoint = await serveOperatorEndpoint("127.0.0.1", 0, new PromRegistry(), () => ({ ok: true }), () => undefined);
  const sockets: Socket[] = [];
  try {
    const idle = OPERATOR_MAX_CONNECTIONS + 36;
    const closedAt: number[] = [];
    const start = Date.now();
    await Promise.all(Array.from({ length: idle }, () => new Promise<void>((resolve) => {
      const s = connect({ host: "127.0.0.1", port: endpoint.port }, resolve);
      s.on("error", () => undefined);
      s.on("close", () => void closedAt.push(Date.now() - start));
      s.resume();
      sockets.push(s);
    })));
    await eventually(() => closedAt.length >= idle - OPERATOR_MAX_CONNECTIONS, { what: "the connections past the cap closed", timeoutMs: 2_000 });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(closedAt.length, idle - OPERATOR_MAX_CONNECTIONS, "closed past the cap at once");
    // Nothing said: gone within the headers' timeout and a check's interval.
    await eventually(() => closedAt.length === idle, { what: "every idle connection closed", timeoutMs: OPERATOR_HEADERS_TIMEOUT_MS + 3_000 });
    const res = await fetch(`http://127.0.0.1:${endpoint.port}/health`);
    assert.equal(await res.text(), "ok\n");
  } finally {
    for (const s of sockets) s.destroy();
    await endpoint.close();
  }
});

test("the operator endpoint's listening socket failing (an accept's ENOBUFS) is said, summed up while it goes on, and ends nothing", async (t) => {
  // The failure cannot be made to order (libuv hides EMFILE behind a
  // reserved descriptor), so the test reaches the http.Server the endpoint
  // creates and emits it there.
  const lines: string[] = [];
  const { endpoint, server: created } = await endpointAndServer(t, () =>
    serveOperatorEndpoint("127.0.0.1", 0, new PromRegistry(), () => ({ ok: true }), (line) => lines.push(line)));
  try {
    for (let i = 0; i < 3; i++) created.emit("error", Object.assign(new Error("accept ENOBUFS"), { code: "ENOBUFS", syscall: "accept" }));
    assert.deepEqual(lines, ["Metrics listening socket error: accept ENOBUFS"], "the first at once, the others counted");
    const res = await fetch(`http://127.0.0.1:${endpoint.port}/health`);
    assert.equal(await res.text(), "ok\n", "still serving");
  } finally {
    await endpoint.close();
  }
  assert.deepEqual(lines, ["Metrics listening socket error: accept ENOBUFS", "Metrics listening socket errors: 2 more in the last 1 s"], "summed up as it closed");
});

/** A /metrics source that counts its builds and finishes each when told. */
class HeldSource {
  builds = 0;
  readonly contentType = "text/plain; version=0.0.4; charset=utf-8";
  #release: Array<() => void> = [];
  metrics(): Promise<string> {
    this.builds++;
    const n = this.builds;
    return new Promise((resolve) => this.#release.push(() => resolve(`page ${n}\n`)));
  }
  releaseAll(): void {
    for (const release of this.#release.splice(0)) release();
  }
}

/** Counts the requests that reached the page. */
class CountedPage extends MetricsPage {
  asked = 0;
  override get(): Promise<string> {
    this.asked++;
    return super.get();
  }
}

test("a flood of /metrics requests builds the page once, and a page asked for after PAGE_REUSE_MS is built again", async () => {
  const source = new HeldSource();
  let now = 0;
  const page = new CountedPage(source, () => now);
  const endpoint = await serveOperatorEndpoint("127.0.0.1", 0, source, () => ({ ok: true }), () => undefined, { page });
  const url = `http://127.0.0.1:${endpoint.port}/metrics`;
  try {
    const many = 20;
    const answers = Array.from({ length: many }, () => fetch(url).then((r) => r.text()));
    // Built per request (the defect), the builds themselves are the arrivals.
    await eventually(() => page.asked === many || source.builds === many, { what: "every request waiting for the page", timeoutMs: 5_000 });
    source.releaseAll();
    assert.deepEqual(await Promise.all(answers), Array(many).fill("page 1\n"));
    assert.equal(source.builds, 1, "one build for every request that waited");
    now += PAGE_REUSE_MS - 1;
    assert.equal(await (await fetch(url)).text(), "page 1\n", "reused within PAGE_REUSE_MS");
    now += 1;
    const later = fetch(url).then((r) => r.text());
    await eventually(() => source.builds === 2, { what: "a new build", timeoutMs: 5_000 });
    source.releaseAll();
    assert.equal(await later, "page 2\n");
  } finally {
    source.releaseAll();
    await endpoint.close();
  }
});

test("a failed /metrics build is not reused: the next request builds again", async () => {
  let builds = 0;
  const page = new MetricsPage({ metrics: () => (++builds === 1 ? Promise.reject(new Error("collect failed")) : Promise.resolve("ok\n")) }, () => 0);
  await assert.rejects(page.get(), /collect failed/);
  assert.equal(await page.get(), "ok\n");
  assert.equal(await page.get(), "ok\n");
  assert.equal(builds, 2);
});

/** A /metrics page larger than loopback's socket buffers: a peer that does not read stalls its write. */
const PAGE_BYTES = 4 << 20;
const bigPage = { contentType: new PromRegistry().contentType, metrics: () => Promise.resolve("x".repeat(PAGE_BYTES)) };
const serveBigPage = (options: OperatorEndpointOptions): Promise<OperatorEndpoint> =>
  serveOperatorEndpoint("127.0.0.1", 0, bigPage, () => ({ ok: true }), () => undefined, options);

/**
 * The operator endpoint `start` opens and the http.Server it created,
 * reached through node:http's own export: to emit on it, or to ask its
 * getConnections() what the server still holds (a peer that does not read
 * cannot see its close).
 */
async function endpointAndServer(t: TestContext, start: () => Promise<OperatorEndpoint>): Promise<{ endpoint: OperatorEndpoint; server: Server; held: () => Promise<number> }> {
  let created: Server | undefined;
  const original = http.createServer;
  http.createServer = ((...args: Parameters<typeof http.createServer>) => (created = original(...args))) as typeof http.createServer;
  syncBuiltinESMExports();
  t.after(() => {
    http.createServer = original;
    syncBuiltinESMExports();
  });
  const endpoint = await start();
  http.createServer = original;
  syncBuiltinESMExports();
  const server = created;
  assert.ok(server, "the endpoint's server was seen");
  return { endpoint, server, held: () => new Promise((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n)))) };
}

/** GET /health on a connection of its own, closed after (Connection: close). */
function health(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: "/health", agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => void (body += d)).on("end", () => resolve(body));
    }).on("error", reject);
  });
}

/** A connection that sends `requests`, and stops reading at its first bytes; `drain` reads on and counts bytes until it closes. */
function neverReading(port: number, requests: string): { seen: () => boolean; drain: () => Promise<number>; socket: Socket } {
  let seen = false;
  let bytes = 0;
  let closed = false;
  const s = connect({ host: "127.0.0.1", port }, () => void s.write(requests));
  s.on("error", () => undefined);
  s.on("close", () => void (closed = true));
  s.on("data", (d: Buffer) => {
    bytes += d.length;
    if (!seen) s.pause();
    seen = true;
  });
  return {
    seen: () => seen,
    drain: async () => {
      s.resume();
      await eventually(() => closed, { what: "the connection closed", timeoutMs: 10_000 });
      return bytes;
    },
    socket: s,
  };
}

const metricsRequest = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

test("a peer that never reads its responses is closed once nothing moves, and /health answers meanwhile", async (t) => {
  const { endpoint, held } = await endpointAndServer(t, () => serveBigPage({ stallTimeoutMs: 300 }));
  const peer = neverReading(endpoint.port, metricsRequest.repeat(4));
  try {
    await eventually(peer.seen, { what: "the page's first bytes", timeoutMs: 5_000 });
    assert.equal(await health(endpoint.port), "ok\n");
    await eventually(async () => (await held()) === 0, { what: "the stalled connection closed by the server", timeoutMs: 5_000 });
    assert.ok((await peer.drain()) < 4 * PAGE_BYTES, "its queued pages were dropped");
  } finally {
    peer.socket.destroy();
    await endpoint.close();
  }
});

test("at the connections cap, the oldest peer that does not read makes room: /health still answers", async (t) => {
  const { endpoint, held } = await endpointAndServer(t, () => serveBigPage({ maxConnections: 2, stallTimeoutMs: 60_000 }));
  const first = neverReading(endpoint.port, metricsRequest);
  const second = neverReading(endpoint.port, metricsRequest);
  try {
    await eventually(() => first.seen() && second.seen(), { what: "both pages' first bytes", timeoutMs: 5_000 });
    assert.equal(await health(endpoint.port), "ok\n");
    await eventually(async () => (await held()) === 1, { what: "one stalled connection closed", timeoutMs: 5_000 });
    assert.ok((await first.drain()) < PAGE_BYTES, "the oldest was closed");
    second.socket.resume();
    await eventually(() => second.socket.bytesRead > PAGE_BYTES, { what: "the other's whole page", timeoutMs: 10_000 });
  } finally {
    first.socket.destroy();
    second.socket.destroy();
    await endpoint.close();
  }
});

test("a connection pipelining past OPERATOR_MAX_PIPELINED unanswered requests is closed", async () => {
  const endpoint = await serveOperatorEndpoint("127.0.0.1", 0, new PromRegistry(), () => ({ ok: true }), () => undefined);
  let received = "";
  let closed = false;
  const s = connect({ host: "127.0.0.1", port: endpoint.port }, () => void s.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200)));
  s.on("error", () => undefined);
  s.on("data", (d: Buffer) => void (received += d.toString("latin1")));
  s.on("close", () => void (closed = true));
  try {
    await eventually(() => closed, { what: "the connection closed", timeoutMs: 10_000 });
    const answers = received.split("HTTP/1.1 200").length - 1;
    assert.ok(answers <= OPERATOR_MAX_PIPELINED, `${answers} answers`);
  } finally {
    s.destroy();
    await endpoint.close();
  }
});
