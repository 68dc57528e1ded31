// The log lines of the serving core (serve/ and the state saver), written
// from the facts they publish on events.ts's channels. The text and levels
// are the ones the reference server writes (or, where it has none, the ones
// this server always wrote): operators grep for them, and the syslog bytes
// must not change.

import { events, type Channel, type ConnectionClosed } from "../events.js";
import type { Logger } from "./log.js";
import { pyRepr, pyTextLine } from "./python-repr.js";

/** Subscribes `logger` to the serving core's channels; returns the unsubscribe. */
export function logServeEvents(logger: Logger): () => void {
  const subscribed: Array<() => void> = [];
  const on = <T>(channel: Channel<T>, handler: (message: T) => void): void => {
    channel.subscribe(handler);
    subscribed.push(() => channel.unsubscribe(handler));
  };
  on(events.connectionAccepted, ({ connection }) => logger.info(`TCP connection from: ${connection.label}`));
  on(events.connectionNotAdmitted, ({ address, localAddress, why }) => {
    if (why === "admission-timeout") logger.info(`Connection from ${address} waited too long for a handshake slot`);
    else logger.debug(`Refusing connection to ${localAddress}: not on the served interface`);
  });
  on(events.versionLine, ({ connection, line, accepted, reason, maxBytes }) => {
    if (line === null) {
      logger.error(`Unknown protocol version: line from ${connection.label} longer than ${maxBytes} bytes`);
      return;
    }
    // As the reference's %r of the line its text-mode file read: '1\n'.
    logger.debug(`Protocol version: ${pyRepr(pyTextLine(line))}`);
    if (!accepted) logger.error(`Unknown protocol version: ${reason ?? ""}`);
  });
  on(events.handshakeDone, ({ keyId }) => {
    logger.debug("Handshake succeeded");
    logger.debug(`Key ID: ${keyId}`);
  });
  on(events.clientNotFound, ({ connection, keyId }) =>
    logger.info(`Client not found for key ID: ${keyId}, address: ${connection.label}`));
  on(events.clientRejected, ({ client, reason }) => {
    switch (reason) {
      case "disabled":
        return logger.info(`Client ${client} is disabled`);
      case "denied":
        return logger.warning(`Client ${client} was not approved`);
      case "approval_timeout":
        return logger.warning(`Client ${client} timed out while waiting for approval`);
      case "removed":
        return logger.info(`Client ${client} was refused: Removed`);
    }
  });
  on(events.secretSent, ({ client }) => logger.info(`Sending secret to ${client}`));
  on(events.connectionClosed, (closed) => logClosed(logger, closed));
  on(events.stateSaveFailed, ({ reason }) => logger.warning(`Could not save persistent state: ${reason}`));
  return () => {
    for (const unsubscribe of subscribed.splice(0)) unsubscribe();
  };
}

/** The line, if any, for how a connection ended; the other outcomes were logged by their own fact. */
function logClosed(logger: Logger, { connection, outcome, stage, detail }: ConnectionClosed): void {
  const label = connection.label;
  switch (outcome) {
    case "timeout":
      return logger.info(`Connection ${label} timed out ${detail ?? ""}`);
    case "tls-error":
      // The reference's line during the handshake; ours after it.
      if (stage === "Handshaking") return logger.warning(`Handshake failed: ${detail ?? ""}`);
      return logger.warning(`TLS error from ${label}: ${detail ?? ""}`);
    case "socket-error":
      return logger.debug(`Socket error from ${label}: ${detail ?? ""}`);
    case "peer-closed":
      // A bare close (no FIN first) was never logged.
      if (detail !== undefined) logger.debug(`Peer ${label} ${detail}`);
      return;
    default:
      return;
  }
}
