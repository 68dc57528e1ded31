// The one way to drive an engine (either role): after each receive(), hand
// its output to a byte sink and its events to the caller, run its worker
// tasks, and repeat until it is quiet. Our client (src/client/fetch.ts), the
// self-test, the benchmark and the tests all use it; the engine itself stays
// free of I/O.
//
// Order within one step, kept from the server's connection code: take an
// event, then the output that came with it, write the output, then hand over
// the event. A caller may prepare for an event's bytes in beforeWrite (the
// server corks its socket on handshake-complete so that our Finished and the
// secret leave in one segment).
//
// Tasks run inline (runHandshakeTask) unless a runner is given; with a
// runner at most one task is out at a time, and its result is dropped if
// the caller stopped the driver meanwhile (the connection closed). Inline,
// a TLS 1.3 task completes within pump(); a TLS 1.2 flight task is async
// (OpenPGP.js) and is then out like a runner's.

import type { TlsEvent } from "./endpoint.js";
import { runHandshakeTask, type HandshakeTask, type HandshakeTaskResult } from "./tasks.js";
import type { FlightContext } from "./flight.js";

/** What the driver needs of an engine: TlsClient and TlsServer both fit. */
export interface TlsEngine {
  receive(data: Uint8Array): void;
  takeOutput(): Buffer | null;
  nextEvent(): TlsEvent | null;
  takeTask(): HandshakeTask | null;
  completeTask(result: HandshakeTaskResult): void;
}

export interface EngineSink {
  /** Bytes for the peer, in the order the engine produced them. */
  write(bytes: Buffer): void;
  /** What happened. The sink may call the driver's stop() from here. */
  event(event: TlsEvent): void;
  /** An event is about to be handed over; the bytes that came with it are written first. */
  beforeWrite?(event: TlsEvent): void;
  /** A task runner rejected (a worker pool torn down, a bug). Not called once stopped. */
  taskFailed?(error: unknown): void;
}

/** Runs a task elsewhere (a worker thread); without one, tasks run inline. */
export type TaskRunner = (task: HandshakeTask) => Promise<HandshakeTaskResult>;

export class EngineDriver {
  readonly engine: TlsEngine;
  readonly #sink: EngineSink;
  readonly #runTask: TaskRunner | null;
  readonly #context: FlightContext;
  #stopped = false;
  /** The task that is out, settled (result handed over or dropped) when it resolves. */
  #pending: Promise<void> | null = null;

  /** Tasks go to `runTask`, or run inline with `context` (the known-key table, flight.ts). */
  constructor(engine: TlsEngine, sink: EngineSink, runTask?: TaskRunner, context: FlightContext = {}) {
    this.engine = engine;
    this.#sink = sink;
    this.#runTask = runTask ?? null;
    this.#context = context;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** The task that is out, if any: resolves once its result is handed over (and pumped) or dropped. */
  get pending(): Promise<void> | null {
    return this.#pending;
  }

  /** The caller is done with this connection: no more output, events or task results. */
  stop(): void {
    this.#stopped = true;
  }

  /** Bytes from the peer, then a pump. */
  receive(data: Uint8Array): void {
    if (this.#stopped) return;
    this.engine.receive(data);
    this.pump();
  }

  /** Drains output and events and runs due tasks until quiet; true if anything moved. */
  pump(): boolean {
    const engine = this.engine;
    let moved = false;
    while (!this.#stopped) {
      const event = engine.nextEvent();
      if (event) this.#sink.beforeWrite?.(event);
      const out = engine.takeOutput();
      if (out) this.#sink.write(out);
      if (event) this.#sink.event(event);
      if (event || out) {
        moved = true;
        continue;
      }
      if (this.#pending) break;
      const task = engine.takeTask();
      if (!task) break;
      moved = true;
      const result = this.#runTask ? this.#runTask(task) : runHandshakeTask(task, this.#context);
      if (result instanceof Promise) {
        this.#await(result);
        break;
      }
      engine.completeTask(result);
    }
    return moved;
  }

  // Bound methods, not arrows made a call: V8 holds optimised code weakly,
  // and an arrow's went with its connection at the next full collection.
  #await(result: Promise<HandshakeTaskResult>): void {
    this.#pending = result.then(this.#taskDone.bind(this), this.#taskFailed.bind(this));
  }

  #taskDone(r: HandshakeTaskResult): void {
    this.#pending = null;
    if (this.#stopped) return;
    this.engine.completeTask(r);
    this.pump();
  }

  #taskFailed(error: unknown): void {
    this.#pending = null;
    if (!this.#stopped) this.#sink.taskFailed?.(error);
  }
}

/** One side of an in-process pair: its engine, what to do with its events, how its bytes reach the other. */
export interface LoopbackSide {
  readonly engine: TlsEngine;
  event(event: TlsEvent): void;
  /** Hands bytes this side wrote to the other engine; tests cut or change them here. Default: whole. */
  deliver?(bytes: Buffer, to: TlsEngine): void;
  /** For this side's inline tasks. */
  readonly context?: FlightContext;
}

/**
 * Two engines talking to each other in process (the self-test, the
 * benchmark, the engine tests), with inline tasks, until both are quiet.
 * Each round pumps both sides, then delivers what each wrote; `maxRounds`
 * bounds a pair that never goes quiet (a bug under test). Synchronous, for
 * TLS 1.3 pairs: a TLS 1.2 flight task (async) needs runLoopbackAsync.
 */
export function runLoopback(a: LoopbackSide, b: LoopbackSide, maxRounds = 50): void {
  const pair = new LoopbackPair(a, b);
  for (let round = 0; round < maxRounds; round++) {
    if (pair.round()) continue;
    if (pair.pending()) throw new Error("runLoopback: a task is async (a TLS 1.2 flight); use runLoopbackAsync");
    return;
  }
}

/** runLoopback, waiting for async tasks (a TLS 1.2 flight's) when both sides are otherwise quiet. */
export async function runLoopbackAsync(a: LoopbackSide, b: LoopbackSide, maxRounds = 50): Promise<void> {
  const pair = new LoopbackPair(a, b);
  for (let round = 0; round < maxRounds; round++) {
    if (pair.round()) continue;
    const pending = pair.pending();
    if (!pending) return;
    await pending;
  }
}

class LoopbackPair {
  readonly #a: LoopbackSide;
  readonly #b: LoopbackSide;
  readonly #da: EngineDriver;
  readonly #db: EngineDriver;
  readonly #toA: Buffer[] = [];
  readonly #toB: Buffer[] = [];

  constructor(a: LoopbackSide, b: LoopbackSide) {
    this.#a = a;
    this.#b = b;
    this.#da = new EngineDriver(a.engine, { write: (bytes) => this.#toB.push(bytes), event: (e) => a.event(e) }, undefined, a.context);
    this.#db = new EngineDriver(b.engine, { write: (bytes) => this.#toA.push(bytes), event: (e) => b.event(e) }, undefined, b.context);
  }

  /** Pumps both sides, then delivers what each wrote; true if anything moved. */
  round(): boolean {
    const pumped = [this.#da.pump(), this.#db.pump()].some(Boolean);
    const delivered = [deliver(this.#a, this.#b.engine, this.#toB), deliver(this.#b, this.#a.engine, this.#toA)].some(Boolean);
    return pumped || delivered;
  }

  /** An async task either side has out. */
  pending(): Promise<void> | null {
    return this.#da.pending ?? this.#db.pending;
  }
}

function deliver(from: LoopbackSide, to: TlsEngine, queue: Buffer[]): boolean {
  const moved = queue.length > 0;
  for (let bytes = queue.shift(); bytes; bytes = queue.shift()) {
    if (from.deliver) from.deliver(bytes, to);
    else to.receive(bytes);
  }
  return moved;
}
