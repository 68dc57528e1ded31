// How far the opening of the secrets the Python server sealed in
// clients.pickle has come, after a switch from it (minutes for a big fleet:
// each one is gpg's key derivation, docs/ENROLL.md): the server serves
// meanwhile (state/secret-opening.ts), and `mandos-keygen --import-pickle`
// waits for it. Said with `say` (as it begins, every LOG_EVERY_MS, as it
// ends) and to systemd as STATUS=, for `systemctl status`, at most once a
// second, cleared at the end. The server's opening pauses while a reboot
// storm is served: said as it pauses (at most once every LOG_EVERY_MS) and
// goes on, and left out of the time left.

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
export function openingProgress(say: (line: string) => void, systemd: SystemdNotifier | null, then = "", clock: () => number = () => performance.now()): OpeningProgress {
  let started = 0;
  let total = 0;
  let lastNotified = 0;
  let lastLogged = 0;
  /** Since when paused (null: going on), whether that pause was said, and the time paused before it. */
  let pausedAt: number | null = null;
  let pauseSaid = false;
  let lastPauseSaid = -Infinity;
  let pausedBefore = 0;
  const pausedFor = (now: number): number => pausedBefore + (pausedAt === null ? 0 : now - pausedAt);
  const status = (done: number): string => `STATUS=Opening the secrets sealed in clients.pickle: ${done} of ${total}${pausedAt === null ? "" : ", paused while connections are served"}`;
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
        const left = ((now - started - pausedFor(now)) / done) * (total - done);
        say(`Opened ${done} of ${total} sealed secrets (${Math.floor((100 * done) / total)}%); about ${roughly(left)} left`);
      }
    },
    paused(paused, done, _total, forMs) {
      const now = clock();
      if (paused) {
        if (pausedAt !== null) return;
        pausedAt = now - forMs;
        pauseSaid = now - lastPauseSaid >= LOG_EVERY_MS;
        if (pauseSaid) {
          lastPauseSaid = now;
          say(`Paused the opening of the sealed secrets at ${done} of ${total} while the server is busy serving connections; a connecting client's own is still opened at once`);
        }
        lastNotified = now;
        systemd?.notify(status(done));
        return;
      }
      if (pausedAt === null) return;
      if (pauseSaid) say(`Went on opening the sealed secrets after a pause of ${roughly(forMs)}`);
      pausedBefore += forMs;
      pausedAt = null;
      lastNotified = now;
      systemd?.notify(status(done));
    },
    end() {
      if (total === 0) return;
      const now = clock();
      const paused = pausedFor(now);
      say(`Opened the ${total} sealed secrets in ${roughly(now - started)}${paused >= 1_000 ? ` (of which ${roughly(paused)} paused while connections were served)` : ""}`);
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
