// A bounded attack of hostile connections from many loopback sources, for
// test/server-fair-admission.test.ts, run on a worker thread of its own
// (AttackThread): its thousands of socket events then do not hold back
// the test's own client on the test's event loop, which a loaded machine
// made miss its deadline while the server was serving it in time.

import { connect, type Socket } from "node:net";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

/** Sockets an attack may open in all, reconnects included. */
export const ATTACK_OPENS = 40_000;

/**
 * idle: says nothing; slow-line: "1" then a byte a second, never a line
 * end; junk: 200 random bytes, again on each reopen; stall: a good version
 * line, then never a byte in answer to our ClientHello (each holds a
 * handshake until HANDSHAKE_TIMEOUT_MS).
 */
export type Behaviour = "idle" | "slow-line" | "junk" | "stall";

export interface AttackPlan {
  readonly port: number;
  readonly sources: readonly string[];
  readonly perSource: number;
  readonly behaviour: Behaviour;
}

/** What the attack's thread says: once, when asked to stop. */
interface Stopped {
  readonly opened: number;
}

/**
 * Holds `perSource` sockets from each of `sources` open at once, each
 * reopened as soon as the server drops it, until stopped or ATTACK_OPENS.
 */
class Attack {
  opened = 0;
  #running = true;
  readonly #sockets = new Set<Socket>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #plan: AttackPlan;

  constructor(plan: AttackPlan) {
    this.#plan = plan;
    for (const source of plan.sources) for (let i = 0; i < plan.perSource; i++) this.#open(source);
  }

  #open(localAddress: string): void {
    if (!this.#running || this.opened >= ATTACK_OPENS) return;
    this.opened++;
    const behaviour = this.#plan.behaviour;
    const socket = connect({ host: "127.0.0.1", port: this.#plan.port, localAddress });
    this.#sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("data", () => undefined);
    socket.on("connect", () => {
      if (behaviour === "junk") socket.write(randomJunk());
      if (behaviour === "stall") socket.write("1\r\n");
      if (behaviour === "slow-line") {
        socket.write("1");
        const trickle = setInterval(() => socket.write(" "), 1_000);
        this.#timers.add(trickle);
        socket.once("close", () => {
          clearInterval(trickle);
          this.#timers.delete(trickle);
        });
      }
    });
    socket.once("close", () => {
      this.#sockets.delete(socket);
      // Reopen on the next turn, not in the close handler's stack.
      setImmediate(() => this.#open(localAddress));
    });
  }

  stop(): void {
    this.#running = false;
    for (const t of this.#timers) clearInterval(t);
    for (const s of this.#sockets) s.destroy();
  }
}

function randomJunk(): Buffer {
  const junk = Buffer.alloc(200);
  for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(Math.random() * 256);
  return junk;
}

/** An Attack on a worker thread, started at once; stop() ends it and says how many sockets it opened. */
export class AttackThread {
  /** Sockets opened in all, known once stop() has resolved. */
  opened = 0;
  readonly #worker: Worker;
  readonly #ended: Promise<void>;

  constructor(plan: AttackPlan) {
    this.#worker = new Worker(new URL(import.meta.url), { workerData: plan });
    this.#ended = new Promise((resolve, reject) => {
      this.#worker.once("message", (m: Stopped) => {
        this.opened = m.opened;
        void this.#worker.terminate().then(() => resolve());
      });
      this.#worker.once("error", reject);
    });
  }

  async stop(): Promise<void> {
    this.#worker.postMessage("stop");
    await this.#ended;
  }
}

if (!isMainThread && parentPort !== null) {
  const port = parentPort;
  const attack = new Attack(workerData as AttackPlan);
  port.once("message", () => {
    attack.stop();
    port.postMessage({ opened: attack.opened } satisfies Stopped);
  });
}
