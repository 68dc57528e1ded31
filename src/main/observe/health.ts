// Whether the server is doing its job, for /health, load balancers and the
// systemd watchdog: accepting connections, its handshake workers answering,
// and keeping its state (a server
// that cannot save would forget, at its next start, every client disabled
// or every secret's last delivery since).

import { events } from "../events.js";
import { Subscriptions } from "./subscriptions.js";

export type HealthReport = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export interface HealthInputs {
  /** The listener is bound and the server not shutting down. */
  accepting(): boolean;
  /** Why the listening socket no longer accepts though the server did not close it (serve/listening-socket.ts), or null. */
  listenerLost(): string | null;
  /** Why state is not kept at all (an unusable state directory), or null. */
  stateNotKept(): string | null;
  /** Why handshakes are not served as they should be (a handshake worker that does not answer: serve/handshake-runner.ts), or null; absent: never. */
  workersUnanswering?(): string | null;
}

export interface Health {
  report(): HealthReport;
  close(): void;
}

export function trackHealth(inputs: HealthInputs): Health {
  const subs = new Subscriptions();
  // The last save decides: one success clears an earlier failure.
  let lastSaveFailure: string | null = null;
  subs.on(events.stateSaved, () => (lastSaveFailure = null));
  subs.on(events.stateSaveFailed, ({ reason }) => (lastSaveFailure = reason));
  return {
    report() {
      if (!inputs.accepting()) return { ok: false, reason: "not accepting connections" };
      const lost = inputs.listenerLost();
      if (lost !== null) return { ok: false, reason: `not accepting connections: ${lost}` };
      const unanswering = inputs.workersUnanswering?.() ?? null;
      if (unanswering !== null) return { ok: false, reason: unanswering };
      const notKept = inputs.stateNotKept();
      if (notKept !== null) return { ok: false, reason: `state is not saved: ${notKept}` };
      if (lastSaveFailure !== null) return { ok: false, reason: `the last state save failed: ${lastSaveFailure}` };
      return { ok: true };
    },
    close: () => subs.close(),
  };
}
