// A Piscina worker for the migration from the Python server: opens one
// secret it sealed in clients.pickle (src/main/state/reference-secret.ts),
// off the main thread, so that the secrets open on every core at once.

import { threadId } from "node:worker_threads";
import { openReferenceSecret, type OpenedSecret, type SealedSecret } from "../main/state/reference-secret.js";

export default async function open({ sealed, configSecret }: SealedSecret): Promise<OpenedSecret> {
  // Structured clone turns a Buffer into a plain Uint8Array.
  const secret = await openReferenceSecret(Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength), Buffer.from(configSecret.buffer, configSecret.byteOffset, configSecret.byteLength));
  return { secret, threadId };
}
