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
// the caller stopped the driver meanwhile (the connection closed).

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
  #taskOut = false;

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
      if (this.#taskOut) break;
      const task = engine.takeTask();
      if (!task) break;
      moved = true;
      if (this.#runTask) {
        this.#startTask(this.#runTask, task);
        break;
      }
      engine.completeTask(runHandshakeTask(task, this.#context));
    }
    return moved;
  }

  #startTask(runTask: TaskRunner, task: HandshakeTask): void {
    this.#taskOut = true;
    runTask(task).then(
      (result) => {
        this.#taskOut = false;
        if (this.#stopped) return;
        this.engine.completeTask(result);
        this.pump();
      },
      (error: unknown) => {
        this.#taskOut = false;
        if (!this.#stopped) this.#sink.taskFailed?.(error);
      },
    );
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
 * bounds a pair that never goes quiet (a bug under test).
 */
export function runLoopback(a: LoopbackSide, b: LoopbackSide, maxRounds = 50): void {
  const toB: Buffer[] = [];
  const toA: Buffer[] = [];
  const da = new EngineDriver(a.engine, { write: (bytes) => toB.push(bytes), event: (e) => a.event(e) }, undefined, a.context);
  const db = new EngineDriver(b.engine, { write: (bytes) => toA.push(bytes), event: (e) => b.event(e) }, undefined, b.context);
  const deliver = (from: LoopbackSide, to: TlsEngine, queue: Buffer[]): boolean => {
    const moved = queue.length > 0;
    for (let bytes = queue.shift(); bytes; bytes = queue.shift()) {
      if (from.deliver) from.deliver(bytes, to);
      else to.receive(bytes);
    }
    return moved;
  };
  for (let round = 0; round < maxRounds; round++) {
    const pumped = [da.pump(), db.pump()].some(Boolean);
    const delivered = [deliver(a, b.engine, toB), deliver(b, a.engine, toA)].some(Boolean);
    if (!pumped && !delivered) return;
  }
}
