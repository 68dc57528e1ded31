// The log lines of the clients/ layer, written from the facts it publishes
// (../events.ts) rather than by the registry itself. The texts and levels
// are the ones the registry wrote before it published, which follow the
// reference's (mandos(8) LOGGING); keep them byte for byte.

import { events, type Channel } from "../events.js";
import type { Logger } from "./log.js";
import { pyRepr } from "../python/repr.js";
import { strerror } from "../config/os-error.js";
import { MAX_CONCURRENT_CHECKERS } from "../clients/checker.js";

/** At most one "started late" line this often. */
const LATE_LINE_MS = 60_000;

/** Logs the registry's facts through `logger` until the returned function is called. */
export function logClientEvents(logger: Logger): () => void {
  const unsubscribes: Array<() => void> = [];
  const on = <T>(ch: Channel<T>, onMessage: (message: T) => void): void => {
    ch.subscribe(onMessage);
    unsubscribes.push(() => ch.unsubscribe(onMessage));
  };
  // Three lines a client, at DEBUG only: with DEBUG off, not even listened
  // to, so that a fleet's start (20,000 clients) makes no view of each
  // client for them (record.ts's publish).
  if (logger.enabledFor?.("DEBUG") !== false) {
    on(events.clientAdded, ({ client }) => {
      logger.debug(`Creating client ${pyRepr(client.name)}`);
      logger.debug(`  Key ID: ${client.keyId}`);
      logger.debug(`  Fingerprint: ${client.fingerprint}`);
    });
  }
  on(events.clientDisabled, ({ client, why }) => {
    // The reference's disable() is quiet by default, and every caller of
    // it in 1.8.16 leaves it so: it never logs this. Ours says it at DEBUG;
    // a removed client goes without it.
    if (why !== "removed") logger.debug(`Disabling client ${client.name}`);
  });
  on(events.checkerStarted, ({ client, command }) => logger.info(`Starting checker ${pyRepr(command)} for ${client.name}`));
  on(events.checkerCompleted, ({ client, exitCode, startError }) => {
    // Not the command's 127 ("not found"): the shell itself did not start.
    if (startError !== undefined) logger.warning(`Could not start checker for ${client.name}: ${strerror(startError)}`);
    else if (exitCode === 0) logger.info(`Checker for ${client.name} succeeded`);
    else if (exitCode > 0) logger.info(`Checker for ${client.name} failed`);
    else logger.warning(`Checker for ${client.name} crashed?`);
  });
  on(events.checkerCommandInvalid, ({ client, checker, reason }) =>
    logger.error(`Could not format string "${checker}" for client ${client.name}: ${reason}`),
  );
  on(events.checkerStopped, ({ client }) => logger.debug(`Stopping checker for ${client.name}`));
  // Ours alone (the reference starts every checker at once): a line a
  // minute at most, with how many more since.
  let lateLineAt = -Infinity;
  let lateSince = 0;
  on(events.checkerLate, ({ client, waitedMs, waiting }) => {
    const now = performance.now();
    if (now - lateLineAt < LATE_LINE_MS) {
      lateSince++;
      return;
    }
    const more = lateSince > 0 ? `; ${lateSince} more started late since the last such line` : "";
    logger.warning(`Checker for ${client.name} started ${Math.round(waitedMs / 1000)} s late, after its next was due: ${waiting} checkers wait for one of the ${MAX_CONCURRENT_CHECKERS} that start at once${more}`);
    lateLineAt = now;
    lateSince = 0;
  });
  // "Client NAME needs approval" is log-serve.ts's: one line a connection, charged to the client.
  return () => {
    for (const unsubscribe of unsubscribes.splice(0)) unsubscribe();
  };
}
