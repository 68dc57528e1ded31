// Certificates for a test's etcd over TLS, made with the openssl command
// line in the test's own directory: a CA, etcd's server certificate (for
// ::1, 127.0.0.1 and localhost), a client certificate for our server, and a
// second CA that signed nothing etcd knows (the wrong CA). Keys are P-256:
// quick to make, and spoken by both etcd (Go) and gRPC (Node's TLS).

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./server.js";

export const OPENSSL = "/usr/bin/openssl";

export interface EtcdPki {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** CN "mandos": with --client-cert-auth, etcd takes the CN as the user when no password is given. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** A CA that signed neither certificate. */
  readonly otherCa: string;
}

async function openssl(dir: string, args: readonly string[]): Promise<void> {
  const r = await run(OPENSSL, args, 20_000, {}, dir);
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
}

/** A self-signed CA certificate `name`.pem and its key `name`-key.pem in `dir`. */
async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(dir, [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
    "-keyout", `${name}-key.pem`, "-out", `${name}.pem`, "-subj", `/CN=mandos-ts test ${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

/** A leaf certificate `name`.pem (key `name`-key.pem) for `cn`, signed by ca.pem, with the extensions in `ext`. */
async function makeLeaf(dir: string, name: string, cn: string, ext: string): Promise<void> {
  writeFileSync(join(dir, `${name}.ext`), `basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n${ext}\n`);
  await openssl(dir, ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}-key.pem`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`]);
  await openssl(dir, ["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "2", "-out", `${name}.pem`, "-extfile", `${name}.ext`]);
}

/** Makes the certificates in `dir` (which the test removes). */
export async function makeEtcdPki(dir: string): Promise<EtcdPki> {
  await makeCa(dir, "ca");
  await makeCa(dir, "other-ca");
  // etcd also dials its own client port with this certificate (its gRPC
  // gateway), so it must serve as a client certificate as well.
  await makeLeaf(dir, "server", "localhost", "extendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = IP:::1,IP:127.0.0.1,DNS:localhost");
  await makeLeaf(dir, "client", "mandos", "extendedKeyUsage = clientAuth");
  const at = (f: string): string => join(dir, f);
  return {
    dir,
    ca: at("ca.pem"),
    serverCert: at("server.pem"),
    serverKey: at("server-key.pem"),
    clientCert: at("client.pem"),
    clientKey: at("client-key.pem"),
    otherCa: at("other-ca.pem"),
  };
}
