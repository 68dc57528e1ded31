// How far the longest start-up step has come, for the operator who waits:
// the opening of the secrets the Python server sealed in clients.pickle,
// when switching from it (minutes for a big fleet: each one is gpg's key
// derivation, docs/ENROLL.md). Said in the log (as it begins, every
// LOG_EVERY_MS, as it ends) and to systemd: STATUS= for `systemctl status`,
// and EXTEND_TIMEOUT_USEC= as it progresses, so that a start that still
// moves outlives TimeoutStartSec (Type=notify: systemd would otherwise kill
// it and start it again, to open the same secrets again, for ever), while
// one that stops moving is still timed out.

import type { OpeningWatch } from "../state/reference-secret.js";
import type { SystemdNotifier } from "./sd-notify.js";

/** Each EXTEND_TIMEOUT_USEC gives the start this long to say more: ~800 secrets' time on one core. */
export const EXTEND_WINDOW_MS = 60_000;
/** systemd is told at most this often. */
const NOTIFY_EVERY_MS = 1_000;
/** A progress line at most this often: a small fleet's opening logs only its start and its end. */
export const LOG_EVERY_MS = 30_000;

export interface OpeningProgress extends Required<Pick<OpeningWatch, "begin" | "opened">> {
  /** Every secret is open: said, and systemd's status cleared (READY=1 follows once serving). */
  end(): void;
}

/**
 * A watch for openReferenceSecrets that says its lines with `say` (the
 * log, a waiting starter, standard error) and, under Type=notify, tells
 * systemd; `then` ends the first line (what waits for it).
 */
export function openingProgress(say: (line: string) => void, systemd: SystemdNotifier | null, then = "", clock: () => number = Date.now): OpeningProgress {
  let started = 0;
  let total = 0;
  let lastNotified = 0;
  let lastLogged = 0;
  const extend = `EXTEND_TIMEOUT_USEC=${EXTEND_WINDOW_MS * 1000}`;
  const status = (done: number): string => `STATUS=Opening the secrets sealed in clients.pickle: ${done} of ${total}`;
  return {
    begin(count, threads) {
      started = lastNotified = lastLogged = clock();
      total = count;
      say(`Opening the ${count} secrets the Python server sealed in clients.pickle, on ${threads} thread${threads === 1 ? "" : "s"}${then}`);
      systemd?.notify(`${status(0)}\n${extend}`);
    },
    opened(done) {
      const now = clock();
      if (now - lastNotified >= NOTIFY_EVERY_MS || done === total) {
        lastNotified = now;
        systemd?.notify(`${status(done)}\n${extend}`);
      }
      if (now - lastLogged >= LOG_EVERY_MS && done < total) {
        lastLogged = now;
        const left = ((now - started) / done) * (total - done);
        say(`Opened ${done} of ${total} sealed secrets (${Math.floor((100 * done) / total)}%); about ${roughly(left)} left`);
      }
    },
    end() {
      if (total === 0) return;
      say(`Opened the ${total} sealed secrets in ${roughly(clock() - started)}`);
      // An empty STATUS= clears it; the window covers the rest of the start.
      systemd?.notify(`STATUS=\n${extend}`);
    },
  };
}

/** "40 s", "7 min": a wait as an operator reads it. */
export function roughly(ms: number): string {
  const s = Math.max(1, Math.round(ms / 1000));
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}
