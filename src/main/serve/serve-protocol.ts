// The messages between the main thread and a serve thread (serve-threads.ts,
// src/workers/serve.ts), and the channels forwarded. Plain data for
// structured clone; each direction sends one batch per turn of its event
// loop.

import type { SecretDecision } from "../clients/contract.js";
import type { TlsSettings } from "../../tls/index.js";
import type { ListenOptions } from "./listener.js";
import type { AdmissionRefusal, HandshakeCounts } from "./admission.js";
import type { SharedBounds } from "./shared-limit.js";
import type { BuildStamp } from "../../build.js";
import { events, type Channel } from "../events.js";

/** The channels a serve thread publishes a connection's facts on, forwarded to the main thread. */
export const FORWARDED_CHANNELS: readonly Channel<unknown>[] = [
  events.connectionAccepted, events.connectionClosed, events.connectionNotAdmitted, events.versionLine,
  events.handshakeDone, events.secretSent, events.clientNotFound, events.clientRejected, events.secretAbandoned,
] as readonly Channel<unknown>[];

/** What a serve thread starts with. */
export interface ServeThreadData {
  /** 0, 1, ...: makes its connection IDs unique in the process. */
  readonly index: number;
  readonly stride: number;
  readonly tlsSettings: TlsSettings;
  /** This thread's share of MAX_HANDSHAKES_IN_FLIGHT: the handshakes its CPU works on at once. */
  readonly slots: number;
  /** The open connections and the slow pool, counted by every thread together. */
  readonly shared: SharedBounds;
  /** The server's build, read as it started (src/build.ts). */
  readonly build?: BuildStamp;
}

/** What a peer may prove, and whose it is: both tables shared by every thread, not copied. */
export interface ClientKeys {
  /** Key ID and fingerprint → client name (client-index.ts). */
  readonly index: SharedArrayBuffer;
  /** The handshake's prefilter of key IDs (src/tls/known-keys.ts). */
  readonly knownKeys: SharedArrayBuffer | null;
}

export type ToThread =
  | { readonly kind: "listen"; readonly options: ListenOptions }
  | { readonly kind: "keys"; readonly keys: ClientKeys }
  /** The connection channels with subscribers on the main thread: the only ones forwarded. */
  | { readonly kind: "channels"; readonly names: readonly string[] }
  | {
      readonly kind: "answers";
      readonly decisions: ReadonlyArray<{ readonly id: number; readonly decision: SecretDecision }>;
      readonly admissions: ReadonlyArray<{ readonly id: number; readonly refusal: AdmissionRefusal | null }>;
    }
  /** Send what you have now, with this round (source-recheck.ts). */
  | { readonly kind: "flush"; readonly round: number }
  /** Are you there? (ServeThreads' liveness watch): answered with "pong" at once. */
  | { readonly kind: "ping" }
  | { readonly kind: "close"; readonly graceMs: number };

export type ThreadOp =
  | { readonly op: "request"; readonly id: number; readonly name: string; readonly key: string; readonly address: string }
  | { readonly op: "abort"; readonly id: number }
  | { readonly op: "enter"; readonly id: number; readonly source: string }
  | { readonly op: "leave"; readonly source: string }
  | { readonly op: "failed"; readonly source: string }
  | { readonly op: "delivered"; readonly name: string }
  | { readonly op: "not-found"; readonly keyId: string; readonly address: string }
  | { readonly op: "log"; readonly level: "critical" | "error" | "warning"; readonly message: string }
  | { readonly op: "event"; readonly channel: string; readonly message: unknown };

export type FromThread =
  | { readonly kind: "loaded" }
  | { readonly kind: "listening"; readonly address: string; readonly port: number; readonly fd: number }
  | { readonly kind: "listen-failed"; readonly message: string; readonly code?: string | undefined }
  /** `round`: sent when asked to flush (source-recheck.ts). */
  | { readonly kind: "batch"; readonly ops: readonly ThreadOp[]; readonly open: number; readonly handshakes: HandshakeCounts; readonly round?: number }
  /**
   * With the counts as they are now: a batch carries them only with events,
   * and a thread whose connections are all stalled peers sends none.
   */
  | { readonly kind: "pong"; readonly open: number; readonly handshakes: HandshakeCounts }
  | { readonly kind: "closed" };
