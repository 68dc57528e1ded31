// tinybench micro-benchmarks of the hot steps: a whole client-role
// handshake (both sides in process), the worker tasks on their own, the key
// ID, a registry lookup among 100,000 clients, parsing a clients.conf
// of 10,000 clients, the D-Bus reply to mandos-ctl for 10,000 clients
// (ours beside dbus-native's marshaller), and the worker pool's
// throughput with 0, 1 and 2 workers.

import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { Bench } from "tinybench";
import {
  DEFAULT_PRIORITY,
  TlsClient,
  TlsServer,
  generateEphemeralKeyShares,
  keyId,
  parsePriority,
  runHandshakeTask,
  runLoopback,
  type HandshakeTask,
} from "../src/tls/index.js";
import { ClientRegistry } from "../src/main/clients/registry.js";
import { ClientHelloTemplate, encodeClientHello } from "../src/tls/messages.js";
import { clientHelloParams } from "../src/tls/client.js";
import { createHandshakeRunner } from "../src/main/serve/handshake-runner.js";
import type { ClientSettings } from "../src/main/clients/settings.js";
import { parseClientsConfig } from "../src/main/config/index.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { clientObjectPath } from "../src/main/clients/object-path.js";
import { interfacesAndPropertiesValue, MarshalledProperties, propertiesValue } from "../src/main/dbus/client-properties.js";
import { marshalMessage } from "../src/main/dbus/marshal.js";
import type { WireMessage } from "../src/main/dbus/connection.js";
import type { WireValue } from "../src/main/dbus/values.js";
import type { ClientView } from "../src/main/clients/contract.js";

export interface MicroResult {
  readonly name: string;
  readonly opsPerSecond: number;
  readonly meanMicroseconds: number;
  readonly p99Microseconds: number;
  readonly samples: number;
}

const settings = parsePriority(DEFAULT_PRIORITY);
const pair = generateKeyPairSync("ed25519");
const identity = { privateKey: pair.privateKey, publicKeySpki: pair.publicKey.export({ type: "spki", format: "der" }) };

/** One handshake, both roles in process; returns the server-flight task it produced. */
function handshake(): HandshakeTask | null {
  const client = new TlsClient(settings, generateEphemeralKeyShares(settings.keyShareGroups));
  const server = new TlsServer(settings, identity);
  let flightTask: HandshakeTask | null = null;
  client.start();
  runLoopback(
    {
      // The driver runs tasks inline; peek at the server-flight one on its way.
      engine: {
        receive: (d) => client.receive(d),
        takeOutput: () => client.takeOutput(),
        nextEvent: () => client.nextEvent(),
        takeTask: () => {
          const t = client.takeTask();
          if (t?.kind === "server-flight") flightTask = t;
          return t;
        },
        completeTask: (r) => client.completeTask(r),
      },
      event: (e) => {
        if (e.type === "handshake-complete") {
          client.send(Buffer.alloc(1200));
          client.close();
        }
      },
    },
    { engine: server, event: () => {} },
  );
  return flightTask;
}

function clientsConf(n: number): string {
  const parts = ["[DEFAULT]\nchecker = true\n"];
  for (let i = 0; i < n; i++) {
    const key = createHash("sha256").update(String(i)).digest("hex");
    parts.push(`[m${i}]\nkey_id = ${key}\nsecret =\n    ${randomBytes(900).toString("base64").replace(/(.{64})/g, "$1\n    ")}\n`);
  }
  return parts.join("\n");
}

export async function runMicro(log: (line: string) => void): Promise<MicroResult[]> {
  const task = handshake();
  if (!task) throw new Error("no server-flight task came out of the handshake");
  const spki = identity.publicKeySpki;

  const many: ClientSettings[] = [];
  for (let i = 0; i < 100_000; i++) {
    many.push({
      name: `m${i}`, keyId: createHash("sha256").update(String(i)).digest("hex").toUpperCase(), fingerprint: "",
      secret: Buffer.alloc(16), host: "", timeout: 300_000, extendedTimeout: 900_000, interval: 120_000,
      checker: "true", approvedByDefault: true, approvalDelay: 0, approvalDuration: 1000, enabled: true,
    });
  }
  const registry = new ClientRegistry(many, { logger: silentLogger });
  const probe = many.map((m) => m.keyId);
  let p = 0;
  const conf = clientsConf(10_000);

  const eph = generateEphemeralKeyShares(settings.keyShareGroups);
  const helloParams = clientHelloParams(settings, eph.random, eph.sessionId, eph.shares, null);
  const helloTemplate = new ClientHelloTemplate(helloParams);

  const bench = new Bench({ time: 1500, warmupTime: 300 });
  bench
    .add("handshake: client role + server role, in process", () => void handshake())
    .add("worker task: server flight (X25519, key schedule, decrypt, Ed25519 verify, Finished)", () => void runHandshakeTask(task))
    .add("worker task: ClientHello key share (X25519)", () => void generateEphemeralKeyShares(settings.keyShareGroups))
    .add("ClientHello (default priority): encoded afresh", () => void encodeClientHello(helloParams))
    .add("ClientHello (default priority): from its template, as each connection makes it", () => void helloTemplate.fill(eph.random, eph.sessionId, eph.shares))
    .add("key ID of a raw public key", () => void keyId(spki))
    .add("registry lookup by key ID among 100,000 clients", () => void registry.byKeyId(probe[(p = (p + 7919) % probe.length)]!))
    .add("parse clients.conf of 10,000 clients", () => void parseClientsConfig(conf, "bench.conf"), { beforeAll() {} });
  await bench.run();
  const results: MicroResult[] = [];
  for (const t of bench.tasks) {
    const r = t.result as unknown as { latency?: { mean: number; p99?: number; samples?: number[] }; throughput?: { mean: number }; samples?: number[] } | undefined;
    const meanMs = r?.latency?.mean ?? 0;
    const p99Ms = r?.latency?.p99 ?? 0;
    const result: MicroResult = {
      name: t.name,
      opsPerSecond: Math.round(r?.throughput?.mean ?? (meanMs ? 1000 / meanMs : 0)),
      meanMicroseconds: Math.round(meanMs * 1000 * 10) / 10,
      p99Microseconds: Math.round(p99Ms * 1000 * 10) / 10,
      samples: r?.latency?.samples?.length ?? r?.samples?.length ?? 0,
    };
    results.push(result);
    log(`${result.name}: ${result.opsPerSecond} ops/s, mean ${result.meanMicroseconds} µs, p99 ${result.p99Microseconds} µs`);
  }
  for (const result of dbusManagedObjects(new ClientRegistry(many.slice(0, 10_000), { logger: silentLogger }))) {
    results.push(result);
    log(`${result.name}: ${result.opsPerSecond} ops/s, mean ${result.meanMicroseconds} µs`);
  }
  for (const workers of [0, 1, 2]) {
    const result = await poolThroughput(workers, task);
    results.push(result);
    log(`${result.name}: ${result.opsPerSecond} ops/s, mean ${result.meanMicroseconds} µs`);
  }
  return results;
}

/**
 * mandos-ctl's GetManagedObjects, answered for the 10,000 clients of
 * `registry`: the value built from the registry, then the message
 * marshalled by src/main/dbus/marshal.ts and by @homebridge/dbus-native's
 * marshaller, which ours replaced (docs/DBUS.md, "Marshalling"); and the
 * server's way since, with each client's properties kept marshalled from
 * the last listing ("Listing the clients"): the first listing, and one
 * with every client unchanged. Each takes its turn, best of three; the
 * main thread does all of it while the call is answered. p99 is not
 * measured (reported as 0).
 */
function dbusManagedObjects(registry: ClientRegistry): MicroResult[] {
  const dbusNative = createRequire(import.meta.url)("@homebridge/dbus-native/lib/message.js") as { marshall(msg: WireMessage): Buffer };
  const reply = (body: WireValue[]): WireMessage => ({ type: 2, serial: 2, replySerial: 1, destination: ":1.1", signature: "a{oa{sa{sv}}}", body });
  const live = (): Array<[string, ClientView]> => registry.list().map((c) => [clientObjectPath(c.name), c]);
  const build = (): WireMessage => reply([live().map(([path, c]) => [path, interfacesAndPropertiesValue(propertiesValue(c, path))])]);
  const kept = new MarshalledProperties();
  const listed = (): Buffer => marshalMessage(reply([kept.list(live()).map(([path, props]) => [path, interfacesAndPropertiesValue(props)])]));
  const best = { build: Infinity, ours: Infinity, theirs: Infinity, first: Infinity, again: Infinity };
  let bytes = 0;
  const time = (key: keyof typeof best, f: () => void): void => {
    const t0 = performance.now();
    f();
    best[key] = Math.min(best[key], performance.now() - t0);
  };
  for (let round = 0; round < 3; round++) {
    let msg: WireMessage | null = null;
    time("build", () => (msg = build()));
    time("ours", () => (bytes = marshalMessage(msg!).length));
    let theirs = 0;
    time("theirs", () => (theirs = dbusNative.marshall(msg!).length));
    if (theirs !== bytes) throw new Error(`dbus-native wrote ${theirs} bytes, we wrote ${bytes}`);
    kept.clear();
    let first: Buffer = Buffer.alloc(0);
    time("first", () => (first = listed()));
    time("again", () => {
      const again = listed();
      if (!again.equals(first)) throw new Error("a listing of unchanged clients differs from the first");
    });
    if (first.length !== bytes) throw new Error(`the kept listing is ${first.length} bytes, the built one ${bytes}`);
  }
  kept.clear();
  const result = (name: string, ms: number): MicroResult => ({
    name: `D-Bus GetManagedObjects, 10,000 clients (${(bytes / 1e6).toFixed(1)} MB): ${name}`,
    opsPerSecond: Math.round((1000 / ms) * 100) / 100,
    meanMicroseconds: Math.round(ms * 1000),
    p99Microseconds: 0,
    samples: 3,
  });
  return [
    result("the value built", best.build),
    result("marshalled (ours)", best.ours),
    result("marshalled (dbus-native's)", best.theirs),
    result("the server's first listing (built, each client's properties kept marshalled)", best.first),
    result("the server's next listing, every client unchanged (kept)", best.again),
  ];
}

/**
 * The pool on its own, without sockets or a load generator: 3,000
 * server-flight tasks submitted at once through the runner the server uses
 * (inline, or 1 or 2 workers), best of three. Shows how the handshake's
 * crypto scales with worker threads when cores are free for them; p99 is
 * not measured (reported as 0).
 */
async function poolThroughput(workers: number, task: HandshakeTask): Promise<MicroResult> {
  const runner = createHandshakeRunner(workers, settings);
  const count = 3000;
  let best = Infinity;
  try {
    await Promise.all(Array.from({ length: 200 }, () => runner.run(task))); // start the threads, compile
    for (let round = 0; round < 3; round++) {
      const t0 = performance.now();
      await Promise.all(Array.from({ length: count }, () => runner.run(task)));
      best = Math.min(best, performance.now() - t0);
    }
  } finally {
    await runner.close();
  }
  return {
    name: `pool: ${count} server-flight tasks at once, ${workers === 0 ? "inline" : `${workers} worker${workers > 1 ? "s" : ""}`}`,
    opsPerSecond: Math.round((count / best) * 1000),
    meanMicroseconds: Math.round((best / count) * 1000 * 10) / 10,
    p99Microseconds: 0,
    samples: count,
  };
}
