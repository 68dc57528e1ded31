// Where and how the shared registry reaches etcd (docs/ETCD.md): the
// `etcd*` options of mandos.conf and the command line, merged.

/** One etcd can hold several fleets, each under its own prefix. */
export const DEFAULT_ETCD_PREFIX = "/mandos/";

export interface EtcdSettings {
  /** Endpoint URLs, e.g. http://[::1]:2379. */
  readonly endpoints: readonly string[];
  /** Ends with "/" by convention; used as given. */
  readonly prefix: string;
  /** PEM files for TLS to etcd; null: none. */
  readonly ca: string | null;
  readonly cert: string | null;
  readonly key: string | null;
  readonly user: string | null;
  /** A file holding the password of `user` (never the password itself on the command line). */
  readonly passwordFile: string | null;
}

/** The options as given (mandos.conf or the command line), each absent when not given. */
export interface EtcdOptions {
  etcd?: string;
  etcdPrefix?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  etcdUser?: string;
  etcdPasswordFile?: string;
}
