// A real etcd cluster for tests (Debian's etcd-server): three members on
// loopback, each with its own data directory and free ports, started
// together and stopped (or killed, or restarted) one by one.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./dbus.js";
import { run } from "./server.js";

export const ETCD = "/usr/bin/etcd";
export const ETCDCTL = "/usr/bin/etcdctl";

export function etcdMissing(): string | false {
  return existsSync(ETCD) && existsSync(ETCDCTL) ? false : "needs etcd-server and etcd-client (scripts/install-test-peers.sh)";
}

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  /** Starts the member again, on its data directory (after stop or kill). */
  start(): void;
  stop(): Promise<void>;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Comma-separated client URLs of every member, for `etcd =`. */
  readonly endpoints: string;
  /** `etcdctl get --prefix PREFIX` output (keys and values). */
  dump(prefix: string): Promise<string>;
  /** Resolves when every running member reports healthy. */
  healthy(members?: readonly EtcdMember[], ms?: number): Promise<void>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-etcd-"));
  const ports: Array<{ client: number; peer: number }> = [];
  for (let i = 0; i < size; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const names = ports.map((_, i) => `e${i + 1}`);
  const initialCluster = ports.map((p, i) => `${names[i]}=http://[::1]:${p.peer}`).join(",");
  let firstStart = true;
  const members: EtcdMember[] = ports.map((p, i) => {
    const name = names[i]!;
    const clientUrl = `http://[::1]:${p.client}`;
    let child: ChildProcess | null = null;
    let exited: Promise<void> = Promise.resolve();
    return {
      name,
      clientUrl,
      start() {
        if (child) return;
        const args = [
          "--name", name, "--data-dir", join(root, name),
          "--listen-client-urls", clientUrl, "--advertise-client-urls", clientUrl,
          "--listen-peer-urls", `http://[::1]:${p.peer}`, "--initial-advertise-peer-urls", `http://[::1]:${p.peer}`,
          "--initial-cluster", initialCluster, "--initial-cluster-state", firstStart ? "new" : "existing",
          "--log-level", "error",
        ];
        const c = spawn(ETCD, args, { stdio: "ignore" });
        child = c;
        live.add(c);
        exited = new Promise((resolve) => c.once("exit", () => {
          live.delete(c);
          if (child === c) child = null;
          resolve();
        }));
      },
      async stop() {
        if (!child) return;
        child.kill("SIGTERM");
        await exited;
      },
    };
  });
  for (const m of members) m.start();
  firstStart = false;
  const endpoints = members.map((m) => m.clientUrl).join(",");
  const ctl = (args: string[], urls = endpoints): ReturnType<typeof run> => run(ETCDCTL, [`--endpoints=${urls}`, ...args], 10_000, { ETCDCTL_API: "3" });
  const cluster: EtcdCluster = {
    members,
    endpoints,
    async dump(prefix) {
      return (await ctl(["get", "--prefix", prefix])).stdout.toString("utf8");
    },
    async healthy(which = members, ms = 30_000) {
      const deadline = Date.now() + ms;
      for (let i = 0; ; i++) {
        const r = await ctl(["endpoint", "health"], which.map((m) => m.clientUrl).join(","));
        if (r.code === 0) return;
        if (Date.now() > deadline) throw new Error(`etcd not healthy within ${ms} ms: ${r.stderr}`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** i, 1_000)));
      }
    },
    async stop() {
      await Promise.all(members.map((m) => m.stop()));
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    await cluster.healthy();
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
