// How far the opening of the secrets the Python server sealed in
// clients.pickle has come, after a switch from it (minutes for a big fleet:
// each one is gpg's key derivation, docs/ENROLL.md): the server serves
// meanwhile (state/secret-opening.ts), and `mandos-keygen --import-pickle`
// waits for it. Said with `say` (as it begins, every LOG_EVERY_MS, as it
// ends) and to systemd as STATUS=, for `systemctl status`, at most once a
// second, cleared at the end.

import type { OpeningWatch } from "../state/reference-secret.js";
import type { SystemdNotifier } from "./sd-notify.js";

/** systemd is told at most this often. */
const NOTIFY_EVERY_MS = 1_000;
/** A progress line at most this often: a small fleet's opening logs only its start and its end. */
export const LOG_EVERY_MS = 30_000;

export interface OpeningProgress extends Required<OpeningWatch> {
  /** Every secret is open: said, and systemd's status cleared. */
  end(): void;
}

/**
 * A watch for an opening that says its lines with `say` (the log, standard
 * error) and, under Type=notify, tells systemd; `then` ends the first line
 * (what happens meanwhile).
 */
export function openingProgress(say: (line: string) => void, systemd: SystemdNotifier | null, then = "", clock: () => number = Date.now): OpeningProgress {
  let started = 0;
  let total = 0;
  let lastNotified = 0;
  let lastLogged = 0;
  const status = (done: number): string => `STATUS=Opening the secrets sealed in clients.pickle: ${done} of ${total}`;
  return {
    begin(count, threads) {
      started = lastNotified = lastLogged = clock();
      total = count;
      say(`Opening the ${count} secrets the Python server sealed in clients.pickle, on ${threads} thread${threads === 1 ? "" : "s"}${then}`);
      systemd?.notify(status(0));
    },
    opened(done) {
      const now = clock();
      if (now - lastNotified >= NOTIFY_EVERY_MS || done === total) {
        lastNotified = now;
        systemd?.notify(status(done));
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
      // An empty STATUS= clears it.
      systemd?.notify("STATUS=");
    },
  };
}

/** "40 s", "7 min": a wait as an operator reads it. */
export function roughly(ms: number): string {
  const s = Math.max(1, Math.round(ms / 1000));
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}
