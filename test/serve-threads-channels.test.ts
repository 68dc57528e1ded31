// A serve thread forwards a connection channel only while the main thread
// has subscribers on it (src/main/serve/serve-threads.ts): a subscriber
// that comes after the listener started still gets the facts, from the
// next answer the main thread sends on. And the key tables the threads
// read are built once for a reload's many changes, not once a change. In
// process, real sockets on ::1.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { DEFAULT_PRIORITY, parsePriority } from "../src/tls/index.js";
import { createRegistry, type ClientRegistry } from "../src/main/clients/registry.js";
import { applyReload } from "../src/main/clients/reload.js";
import { events, type VersionLine } from "../src/main/events.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { ServeThreads } from "../src/main/serve/serve-threads.js";
import { clientSettings } from "./helpers/clients.js";

let threads: ServeThreads;
let registry: ClientRegistry;
let port = 0;

before(async () => {
  registry = createRegistry([], { logger: silentLogger });
  threads = new ServeThreads(1, { registry, tlsSettings: parsePriority(DEFAULT_PRIORITY), logger: silentLogger, maxPerSource: 0 });
  assert.equal(await threads.ready(), true);
  // Nobody subscribes yet: the thread is told to forward nothing.
  port = (await threads.listen({ address: "::1", port: 0, ipv6: true })).port;
});

after(async () => {
  await threads.close(0);
});

test("a channel subscribed after listen() is forwarded from the next connection on", async () => {
  const seen: VersionLine[] = [];
  const onLine = (m: VersionLine): void => void seen.push(m);
  events.versionLine.subscribe(onLine);
  try {
    const socket = connect({ host: "::1", port });
    socket.on("connect", () => socket.write("2\n"));
    socket.on("error", () => undefined);
    await new Promise((resolve) => socket.on("close", resolve));
    const deadline = Date.now() + 5_000;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(seen.length, 1);
    assert.match(seen[0]!.line ?? "", /^2/);
    assert.equal(seen[0]!.accepted, false);
  } finally {
    events.versionLine.unsubscribe(onLine);
  }
});

test("a reload that adds and removes many clients builds the threads' key tables once, after it", async () => {
  // Each build lists the registry once (ServeThreads' #sendKeys).
  let builds = 0;
  const list = registry.list.bind(registry);
  registry.list = () => {
    builds++;
    return list();
  };
  try {
    const client = (name: string, i: number) => clientSettings(name, { keyId: i.toString(16).toUpperCase().padStart(64, "0") });
    const first = Array.from({ length: 300 }, (_, i) => client(`c${i}`, i));
    applyReload(registry, [], first, silentLogger);
    assert.equal(builds, 0, "none while the reload runs");
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(builds, 1);
    const second = first.slice(100).concat(Array.from({ length: 100 }, (_, i) => client(`n${i}`, 1_000 + i)));
    applyReload(registry, first, second, silentLogger);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(builds, 2, "200 changes, one build");
    // An event that changes no key builds nothing.
    registry.disable("n0");
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(builds, 2);
  } finally {
    registry.list = list;
  }
});
