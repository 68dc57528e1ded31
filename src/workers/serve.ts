// A serve thread: accepts on the listening socket it shares with the other
// serve threads and runs each connection whole (version line, TLS, record
// layer, socket reads and writes, the handshake's crypto inline). What only
// the main thread has, it asks for in one batch a turn: the count of each
// source's connections and failures, the registry's decision, the log, and
// the events, which the main thread publishes on its own channels
// (src/main/events.ts) for its subscribers.

import { parentPort, workerData } from "node:worker_threads";
import { buildClientIndex, ClientIndex } from "../main/serve/client-index.js";
import { createHandshakeRunner } from "../main/serve/handshake-runner.js";
import { Listener, type SourceGate } from "../main/serve/listener.js";
import { sharedLimits } from "../main/serve/shared-limit.js";
import type { AdmissionRefusal } from "../main/serve/admission.js";
import { numberConnections } from "../main/serve/connection.js";
import type { Channel } from "../main/events.js";
import { systemClock } from "../main/clock.js";
import type { Logger } from "../main/daemon/log.js";
import type { SecretDecision, SecretSource } from "../main/clients/contract.js";
import { FORWARDED_CHANNELS, type FromThread, type ServeThreadData, type ThreadOp, type ToThread } from "../main/serve/serve-protocol.js";
import { bufferView } from "../tls/record.js";
import { otherBuildThan } from "../build.js";

const port = parentPort;
if (!port) throw new Error("src/workers/serve.ts runs in a worker thread");
const data = workerData as ServeThreadData;
// Files of another build than the server's (installed while it started):
// this thread ends, the server with it, saying why (src/build.ts).
const otherBuild = otherBuildThan(data.build);
if (otherBuild !== null) throw new Error(otherBuild);
numberConnections(data.index, data.stride);

let ops: ThreadOp[] = [];
let flushScheduled = false;
function send(op: ThreadOp): void {
  ops.push(op);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(flush);
}
/** `round`: the main thread asked for what this thread has (source-recheck.ts); the batch goes even empty. */
function flush(round?: number): void {
  flushScheduled = false;
  if (ops.length === 0 && round === undefined) return;
  const batch: FromThread = { kind: "batch", ops, open: listener.openConnections, handshakes: listener.handshakes, ...(round === undefined ? {} : { round }) };
  ops = [];
  port!.postMessage(batch);
}
function post(message: FromThread): void {
  port!.postMessage(message);
}

// The connection channels, forwarded as they are published, those that
// have subscribers on the main thread (all until it says which): a channel
// without a forwarder costs the connection nothing (events.ts).
const forwarders = new Map<string, { channel: Channel<unknown>; forward: (message: unknown) => void; on: boolean }>();
for (const channel of FORWARDED_CHANNELS) {
  const forward = (message: unknown): void => send({ op: "event", channel: channel.name, message });
  channel.subscribe(forward);
  forwarders.set(channel.name, { channel, forward, on: true });
}
function forwardOnly(names: readonly string[]): void {
  for (const [name, f] of forwarders) {
    const on = names.includes(name);
    if (on === f.on) continue;
    f.on = on;
    if (on) f.channel.subscribe(f.forward);
    else f.channel.unsubscribe(f.forward);
  }
}

let knownKeys: SharedArrayBuffer | null = null;
let clients = new ClientIndex(buildClientIndex([]));
const pending = new Map<number, PendingRequest>();
let lastRequest = 0;

/**
 * A secret request waiting for the main thread's decision. Its own abort
 * listener (an EventTarget calls a listener object's handleEvent), so that
 * no closure is made a request: made anew each time, a closure lost its
 * optimised code at each full collection and was compiled again
 * (docs/BENCHMARK.md, "Closures compiled again").
 */
class PendingRequest {
  readonly #id: number;
  readonly #signal: AbortSignal;
  readonly #resolve: (decision: SecretDecision) => void;

  constructor(id: number, signal: AbortSignal, resolve: (decision: SecretDecision) => void) {
    this.#id = id;
    this.#signal = signal;
    this.#resolve = resolve;
  }

  /** The decision came. */
  settle(decision: SecretDecision): void {
    this.#signal.removeEventListener("abort", this);
    this.#resolve(decision);
  }

  /** The connection's signal aborted: withdraw the request. */
  handleEvent(): void {
    if (!pending.delete(this.#id)) return;
    send({ op: "abort", id: this.#id });
    this.#resolve({ give: false, reason: "aborted" });
  }
}

const registry: SecretSource = {
  byKeyId: (keyId) => clients.byKeyId(keyId),
  byFingerprint: (fingerprint) => clients.byFingerprint(fingerprint),
  requestSecret(name, key, address, signal) {
    const id = ++lastRequest;
    return new Promise<SecretDecision>((resolve) => {
      const request = new PendingRequest(id, signal, resolve);
      pending.set(id, request);
      signal.addEventListener("abort", request, { once: true });
      send({ op: "request", id, name, key, address });
    });
  },
  secretDelivered: (name) => send({ op: "delivered", name }),
  notFound: (keyId, address) => send({ op: "not-found", keyId, address }),
};

// The sources are counted on the main thread, for all serve threads.
const entering = new Map<number, (refusal: AdmissionRefusal | null) => void>();
let lastEnter = 0;
const gate: SourceGate = {
  enter(source) {
    const id = ++lastEnter;
    return new Promise((resolve) => {
      entering.set(id, resolve);
      send({ op: "enter", id, source });
    });
  },
  leave: (source) => send({ op: "leave", source }),
  failed: (source) => send({ op: "failed", source }),
};

const logger: Logger = {
  debug() {}, info() {},
  warning: (message) => send({ op: "log", level: "warning", message }),
  error: (message) => send({ op: "log", level: "error", message }),
  critical: (message) => send({ op: "log", level: "critical", message }),
  enabledFor: (level) => level !== "DEBUG" && level !== "INFO",
};

const runner = createHandshakeRunner(0, data.tlsSettings, () => knownKeys);
const listener = new Listener({ registry, runner, tlsSettings: data.tlsSettings, logger, clock: systemClock, gate, slots: data.slots, shared: sharedLimits(data.shared) });

port.on("message", (message: ToThread) => {
  switch (message.kind) {
    case "channels":
      forwardOnly(message.names);
      return;
    case "keys":
      knownKeys = message.keys.knownKeys;
      clients = new ClientIndex(message.keys.index);
      return;
    case "answers":
      for (const { id, refusal } of message.admissions) {
        const resolve = entering.get(id);
        entering.delete(id);
        resolve?.(refusal);
      }
      for (const { id, decision } of message.decisions) {
        const request = pending.get(id);
        if (!request) continue;
        pending.delete(id);
        // A Buffer arrives as a Uint8Array.
        request.settle(decision.give ? { give: true, secret: bufferView(decision.secret) } : decision);
      }
      return;
    case "flush":
      flush(message.round);
      return;
    case "ping":
      post({ kind: "pong", open: listener.openConnections, handshakes: listener.handshakes });
      return;
    case "listen":
      listener.listen(message.options).then(
        (bound) => post({ kind: "listening", address: bound.address, port: bound.port, fd: listener.fd }),
        (error: NodeJS.ErrnoException) => post({ kind: "listen-failed", message: error.message, code: error.code }),
      );
      return;
    case "close":
      void listener.close(message.graceMs, true).then(() => {
        flush();
        post({ kind: "closed" });
      });
      return;
  }
});
// No collection is forced after a burst, idle or not: it would throw the
// thread's compiled code away with the dead connections' shapes, and the
// next wave, however much later, would meet a cold thread (1,100-1,150 µs
// a secret against 660-670 after 30 s of rest, two serve threads;
// docs/BENCHMARK.md, "Waves after a rest"). The heap a wave grew stays
// until V8's own collections shrink it, at most about a wave's peak.

post({ kind: "loaded" });
