// Why TLS to an etcd endpoint fails, in words, for `--check` and the
// DEGRADED log line. gRPC reports a refused handshake only as "14
// UNAVAILABLE: No connection established. Last error: null": the operator
// would not learn whether the CA is wrong, the certificate names another
// host, or etcd wants a client certificate. So the same handshake is made
// once more with node:tls, with the same files, and its error is told.

import { readFileSync } from "node:fs";
import { connect, type TLSSocket } from "node:tls";
import { readEtcdCredentials, type EtcdTlsFiles } from "./credentials.js";
import type { EtcdSettings } from "./settings.js";

/**
 * The HTTP/2 client preface and an empty SETTINGS frame (RFC 9113 §3.4):
 * etcd answers them only once the handshake is really over. With TLS 1.3
 * a server refuses a client certificate after the client thinks the
 * handshake done, so "connected" alone proves nothing.
 */
const H2_PREFACE = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/** OpenSSL and Node codes with a cause an operator can act on. */
const CAUSES: ReadonlyArray<readonly [RegExp, string]> = [
  [/CERT_IN_CHAIN|SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY_LEAF/, "etcd's certificate is not signed by etcd_ca (or, without etcd_ca, by a CA gRPC trusts)"],
  [/ALTNAME_INVALID/, "etcd's certificate does not name the host of the endpoint"],
  [/CERTIFICATE_REQUIRED/, "etcd demands a client certificate (etcd_cert and etcd_key)"],
  // Sent both for no certificate (TLS 1.2) and for one etcd does not trust.
  [/BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN/, "etcd refused the client certificate (etcd_cert and etcd_key: none, or not signed by a CA etcd trusts)"],
  [/WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG/, "the endpoint does not speak TLS (http://, not https://?)"],
];

/** What a connection closed in the middle of the handshake means. */
const PLAIN_ENDPOINT = "the endpoint closed the connection during the TLS handshake: does etcd serve plain http:// there? (TLS is used for an https:// endpoint, or when etcd_ca, etcd_cert or etcd_key is given)";

/** The CAs gRPC trusts when given none: the file GRPC_DEFAULT_SSL_ROOTS_FILE_PATH names, else Node's (null). */
function grpcDefaultRoots(): Buffer | null {
  const path = process.env.GRPC_DEFAULT_SSL_ROOTS_FILE_PATH;
  if (!path) return null;
  try {
    return readFileSync(path);
  } catch {
    return null;
  }
}

/** `host` and `port` of an endpoint URL (IPv6 without its brackets); null when it is not a URL. */
function hostPort(endpoint: string): { host: string; port: number } | null {
  try {
    const url = new URL(endpoint);
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    return { host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port };
  } catch {
    return null;
  }
}

/**
 * Null when a TLS connection to `endpoint` with `files` (null: the
 * system's CAs, no client certificate) works, else why not.
 */
export function explainTlsFailure(endpoint: string, files: EtcdTlsFiles | null, timeoutMs: number): Promise<string | null> {
  const target = hostPort(endpoint);
  if (!target) return Promise.resolve(null);
  const ca = files?.ca ?? grpcDefaultRoots();
  return new Promise((resolve) => {
    let socket: TLSSocket | null = null;
    const done = (why: string | null): void => {
      clearTimeout(timer);
      socket?.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    socket = connect({
      host: target.host,
      port: target.port,
      ALPNProtocols: ["h2"],
      ...(ca ? { ca } : {}),
      ...(files?.cert ? { cert: files.cert } : {}),
      ...(files?.key ? { key: files.key } : {}),
    });
    let handshaken = false;
    socket.once("secureConnect", () => {
      handshaken = true;
      socket?.write(H2_PREFACE);
    });
    socket.once("data", () => done(null));
    // etcd on a plain port reads our ClientHello as neither HTTP nor gRPC and closes (or resets).
    socket.once("end", () => done(handshaken ? "etcd closed the connection after the TLS handshake" : PLAIN_ENDPOINT));
    socket.once("error", (error: NodeJS.ErrnoException & { reason?: string }) => {
      if (!handshaken && error.code === "ECONNRESET") return done(PLAIN_ENDPOINT);
      const cause = CAUSES.find(([pattern]) => pattern.test(error.code ?? ""))?.[1];
      // OpenSSL's message carries its source file and line; its reason is the words.
      const detail = error.reason ?? error.message;
      done(cause ? `${cause} (${detail})` : detail);
    });
  });
}

/**
 * When `settings` use TLS (an https:// endpoint, or any of etcd_ca,
 * etcd_cert, etcd_key) and no endpoint completes a handshake: why not, for
 * the first endpoint. Null when TLS is not used, or works somewhere (then
 * the trouble is elsewhere), or the files cannot be read (that error is
 * told where they are read).
 */
export async function explainEtcdTls(settings: EtcdSettings, timeoutMs: number): Promise<string | null> {
  let files: EtcdTlsFiles | null;
  try {
    files = readEtcdCredentials(settings).tls;
  } catch {
    return null;
  }
  if (!files && !settings.endpoints.some((e) => e.startsWith("https:"))) return null;
  const whys = await Promise.all(settings.endpoints.map((e) => explainTlsFailure(e, files, timeoutMs)));
  if (whys.some((why) => why === null)) return null;
  return `TLS to ${settings.endpoints[0]}: ${whys[0]}`;
}
