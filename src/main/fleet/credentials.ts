// The files the etcd options name (docs/ETCD.md "Securing etcd"): CA,
// client certificate and key, and the password file, read once when the
// link to etcd is made. The server makes it before it drops privileges, so
// the files may be readable by root only. A file that cannot be read is a
// clear error naming the option, never a silent fall-back to no TLS or no
// password.

import { readFileSync } from "node:fs";
import { CodedError } from "../../errors.js";
import type { EtcdSettings } from "./settings.js";

/** A file named by an etcd option cannot be read, or holds no password. */
export class EtcdFileError extends CodedError<"MANDOS_ETCD_FILE"> {
  constructor(message: string, options?: ErrorOptions) {
    super("MANDOS_ETCD_FILE", message, options);
  }
}

/** What etcd3's client takes for TLS (its IOptions credentials, with the CA optional). */
export interface EtcdTlsFiles {
  /** null: the system's CAs. */
  readonly ca: Buffer | null;
  readonly cert: Buffer | null;
  readonly key: Buffer | null;
}

export interface EtcdCredentials {
  /** null: no TLS options given (an https:// endpoint still gets TLS, with the system's CAs). */
  readonly tls: EtcdTlsFiles | null;
  /** The password is never logged: only the user name is. */
  readonly auth: { readonly username: string; readonly password: string } | null;
}

function read(option: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new EtcdFileError(`cannot read ${option} ${path}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

/**
 * The password is the file's first line, without its line ending (`echo
 * PASSWORD > FILE` writes one); spaces are kept, as etcd keeps them.
 */
export function passwordOf(text: string): string {
  const end = text.search(/\r?\n/);
  return end < 0 ? text : text.slice(0, end);
}

/** Reads every file `s` names; throws EtcdFileError naming the option when one cannot be read. */
export function readEtcdCredentials(s: EtcdSettings): EtcdCredentials {
  const tls = s.ca || s.cert || s.key
    ? {
      ca: s.ca ? read("etcd_ca", s.ca) : null,
      cert: s.cert ? read("etcd_cert", s.cert) : null,
      key: s.key ? read("etcd_key", s.key) : null,
    }
    : null;
  let auth: EtcdCredentials["auth"] = null;
  if (s.user) {
    const password = s.passwordFile ? passwordOf(read("etcd_password_file", s.passwordFile).toString("utf8")) : "";
    if (password === "") throw new EtcdFileError(`etcd_password_file ${s.passwordFile ?? "(none)"} holds no password for etcd_user ${s.user}`);
    auth = { username: s.user, password };
  }
  return { tls, auth };
}
