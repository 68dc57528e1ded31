// Records the fuzz corpus (test/fuzz/corpus.ts) into test/data/tls-corpus: our client
// role's handshakes against gnutls-serv and against our own server role,
// and gnutls-cli's bytes to our server role. Run by hand when the engine's
// ClientHello changes (a recorded flight then no longer completes, and
// test/tls-fuzz.test.ts says so):
//   npx tsc -p . && node dist/bench/record-fuzz-corpus.js
// (Not under test/: node --test would run it, and it rewrites the corpus.)

import { spawn } from "node:child_process";
import { createPublicKey, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { EngineDriver, TlsClient, TlsServer, parsePriority, runLoopback, type TlsEngine } from "../src/tls/index.js";
import { FaultyServer } from "../test/helpers/faulty-server.js";
import { GNUTLS_CLI, GNUTLS_SERV } from "../test/helpers/peers.js";
import { makeKey, type KeyKind } from "../test/helpers/tls-pair.js";
import { CORPUS_DIR, ephemeralOf, type CorpusEntry } from "../test/fuzz/corpus.js";

const MANDOS = "SECURE128:!CTYPE-X.509:+CTYPE-RAWPK:!RSA:!VERS-ALL:+VERS-TLS1.3:%PROFILE_ULTRA";
const OURS = "SECURE128:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3";
const dir = mkdtempSync(join(tmpdir(), "mandos-ts-corpus-"));

function newEphemeral(): NonNullable<CorpusEntry["ephemeral"]> {
  return { privateKey: randomBytes(32).toString("hex"), random: randomBytes(32).toString("hex"), sessionId: randomBytes(32).toString("hex") };
}

function save(name: string, entry: CorpusEntry): void {
  writeFileSync(join(CORPUS_DIR, `${name}.json`), JSON.stringify(entry, null, 1) + "\n");
  console.log(name, entry.peer.length / 2, "bytes");
}

async function port(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "::1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

/** Our client against gnutls-serv: the bytes it sent until our handshake completed. */
async function fromGnutlsServ(kind: KeyKind, suite: string): Promise<void> {
  const key = makeKey(kind);
  const keyFile = join(dir, "key.pem");
  const pubFile = join(dir, "pub.pem");
  writeFileSync(keyFile, key.privateKey.export({ type: "pkcs8", format: "pem" }));
  writeFileSync(pubFile, createPublicKey(key.privateKey).export({ type: "spki", format: "pem" }));
  const p = await port();
  const serv = spawn(GNUTLS_SERV, ["--echo", "-a", "-p", String(p), "--priority", `NORMAL:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+${suite}`, "--rawpkkeyfile", keyFile, "--rawpkfile", pubFile], { stdio: "ignore" });
  try {
    const ephemeral = newEphemeral();
    const priority = kind === "rsa" ? OURS : MANDOS;
    for (let i = 0; ; i++) {
      await delay(100);
      const got = await new Promise<Buffer | null>((resolve) => {
        const tls = new TlsClient(parsePriority(priority), ephemeralOf(ephemeral));
        const received: Buffer[] = [];
        const socket = connect({ host: "::1", port: p });
        const driver = new EngineDriver(tls, {
          write: (bytes) => socket.write(bytes),
          event: (e) => {
            if (e.type === "handshake-complete") resolve(Buffer.concat(received));
            if (e.type === "error") resolve(null);
            driver.stop();
            socket.destroy();
          },
        });
        socket.on("connect", () => {
          tls.start();
          driver.pump();
        });
        socket.on("data", (d: Buffer) => {
          received.push(d);
          driver.receive(d);
        });
        socket.on("error", () => resolve(null));
      });
      if (got) {
        save(`gnutls-serv-${kind}-${suite}`, { role: "client", source: `gnutls-serv ${kind} ${suite}`, priority, ephemeral, peer: got.toString("hex") });
        return;
      }
      if (i > 50) throw new Error("gnutls-serv did not answer");
    }
  } finally {
    serv.kill("SIGKILL");
  }
}

/** Our client against our server, in process; with `fragment`, its flight in records of that many bytes. */
function fromOurServer(kind: KeyKind, fragment: number | null): void {
  const ephemeral = newEphemeral();
  const settings = parsePriority(OURS);
  const client = new TlsClient(settings, ephemeralOf(ephemeral));
  const server = fragment === null ? new TlsServer(settings, makeKey(kind)) : new FaultyServer(settings, makeKey(kind), { fragment });
  const sent: Buffer[] = [];
  let done = false;
  client.start();
  runLoopback(
    { engine: client, event: (e) => (done ||= e.type === "handshake-complete") },
    {
      engine: server,
      event: () => undefined,
      deliver: (bytes: Buffer, to: TlsEngine) => {
        if (done) return;
        sent.push(bytes);
        to.receive(bytes);
      },
    },
  );
  if (!done) throw new Error("our own handshake failed");
  save(`our-server-${kind}${fragment === null ? "" : `-records-of-${fragment}`}`, { role: "client", source: `our server ${kind}${fragment === null ? "" : `, records of ${fragment} bytes`}`, priority: OURS, ephemeral, peer: Buffer.concat(sent).toString("hex") });
}

/** gnutls-cli against our server: everything it sent. */
async function fromGnutlsCli(kind: KeyKind, priority: string, name: string): Promise<void> {
  const settings = parsePriority(OURS);
  const received: Buffer[] = [];
  let connected = false;
  const server = createServer((socket) => {
    const driver = new EngineDriver(new TlsServer(settings, makeKey(kind)), {
      write: (bytes) => socket.write(bytes),
      event: (e) => (connected ||= e.type === "data"),
    });
    socket.on("data", (d: Buffer) => {
      received.push(d);
      driver.receive(d);
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "::1", () => r()));
  const p = (server.address() as { port: number }).port;
  const child = spawn(GNUTLS_CLI, ["--insecure", "--priority", priority, "-p", String(p), "::1"], { stdio: ["pipe", "ignore", "ignore"] });
  child.stdin.write("a line from gnutls-cli\n");
  for (let i = 0; i < 200 && !connected; i++) await delay(25);
  child.kill("SIGKILL");
  server.close();
  if (!connected) throw new Error("gnutls-cli did not connect");
  save(name, { role: "server", source: `gnutls-cli ${priority}`, priority: OURS, peer: Buffer.concat(received).toString("hex") });
}

try {
  for (const kind of ["ed25519", "ed448", "p256", "p384", "rsa"] as KeyKind[]) await fromGnutlsServ(kind, kind === "ed25519" ? "AES-128-GCM" : "AES-256-GCM");
  await fromGnutlsServ("ed25519", "CHACHA20-POLY1305");
  for (const kind of ["ed25519", "p256", "rsa"] as KeyKind[]) fromOurServer(kind, null);
  fromOurServer("ed25519", 40);
  await fromGnutlsCli("ed25519", "NORMAL:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3", "gnutls-cli-normal");
  await fromGnutlsCli("ed25519", MANDOS, "gnutls-cli-mandos");
  await fromGnutlsCli("ed25519", "NORMAL:+CTYPE-RAWPK:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-SECP384R1", "gnutls-cli-secp384r1");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
