// The real peers the integration tests talk to (Debian packages), and how
// to tell whether they are here. A test that needs a missing peer skips
// with the reason instead of failing or pretending.

import { accessSync, constants } from "node:fs";
// Stops, at exit, the gpg-agents the real mandos-client leaves behind.
import "./gpg-agents.js";

export const MANDOS_CLIENT = "/usr/lib/x86_64-linux-gnu/mandos/plugins.d/mandos-client";
export const MANDOS_KEYGEN = "/usr/sbin/mandos-keygen";
export const MANDOS_REFERENCE = "/usr/sbin/mandos";
export const MANDOS_CTL = "/usr/sbin/mandos-ctl";
export const GNUTLS_CLI = "/usr/bin/gnutls-cli";
export const GNUTLS_SERV = "/usr/bin/gnutls-serv";
/** GnuPG, as the reference seals the secrets in its clients.pickle with it. */
export const GPG = "/usr/bin/gpg";

export function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `false` when all are present, else the reason to skip (for node:test's `skip`). */
export function missing(...paths: string[]): string | false {
  const absent = paths.filter((p) => !executable(p));
  return absent.length === 0 ? false : `missing ${absent.join(", ")} (npm test installs them when run as root)`;
}
