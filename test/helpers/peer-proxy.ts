// Proxies in front of the etcd members' peer ports, so that a test can cut
// one member off from the others (a network partition) while its client
// port stays open and it stays alive. Every member reaches the others only
// through their proxies. etcd's peer connections say who opened them in
// their first request's X-Server-From header (its member ID in hex), so a
// cut member's connections are refused as well as those made to it; a
// connection that says nothing (a version probe, a lease renewal forwarded
// to the leader) is refused when it goes to the cut member only.

import { connect, createServer, type Server, type Socket } from "node:net";

/** The longest first request head read before a connection is passed on as it is. */
const MAX_HEAD_BYTES = 16_384;

interface Pair {
  /** The member ID (hex) that opened the connection, if it said. */
  readonly from: string | null;
  /** The name of the member it goes to. */
  readonly to: string;
  readonly sockets: readonly Socket[];
}

export class PeerProxies {
  /** Names and member IDs (hex) of the members cut off. */
  readonly #cut = new Set<string>();
  readonly #pairs = new Set<Pair>();
  readonly #servers: Server[] = [];

  /** Listens on `port` ([::1]) for peer connections to member `name`, whose own peer port is `target`. */
  async add(port: number, target: number, name: string): Promise<void> {
    const server = createServer((socket) => this.#accept(socket, target, name));
    this.#servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "::1", () => resolve());
    });
  }

  /** Cuts member `name` (ID `id`) off (every connection to it or from it closed, new ones refused), or joins it again. */
  cut(name: string, id: string, cut: boolean): void {
    if (!cut) {
      this.#cut.delete(name);
      this.#cut.delete(id);
      return;
    }
    this.#cut.add(name);
    this.#cut.add(id);
    for (const pair of this.#pairs) {
      if (pair.to === name || pair.from === id) for (const s of pair.sockets) s.destroy();
    }
  }

  async close(): Promise<void> {
    for (const pair of this.#pairs) for (const s of pair.sockets) s.destroy();
    await Promise.all(this.#servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }

  #accept(socket: Socket, target: number, to: string): void {
    socket.on("error", () => socket.destroy());
    if (this.#cut.has(to)) {
      socket.destroy();
      return;
    }
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0 && head.length < MAX_HEAD_BYTES) return;
      socket.off("data", onData);
      socket.pause();
      const from = /^x-server-from:\s*([0-9a-f]+)\s*$/im.exec(head.subarray(0, end < 0 ? head.length : end).toString("latin1"))?.[1] ?? null;
      if (this.#cut.has(to) || (from !== null && this.#cut.has(from))) {
        socket.destroy();
        return;
      }
      const upstream = connect(target, "::1");
      const pair: Pair = { from, to, sockets: [socket, upstream] };
      this.#pairs.add(pair);
      const close = (): void => {
        this.#pairs.delete(pair);
        socket.destroy();
        upstream.destroy();
      };
      upstream.on("error", close);
      upstream.on("close", close);
      socket.on("close", close);
      upstream.write(head);
      socket.pipe(upstream);
      upstream.pipe(socket);
      socket.resume();
    };
    socket.on("data", onData);
  }
}
