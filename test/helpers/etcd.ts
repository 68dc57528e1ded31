// A real etcd cluster for tests (Debian's etcd-server): three members on
// loopback, each with its own data directory and free ports, started
// together and stopped (or killed, or restarted) one by one. Optionally
// secured as docs/ETCD.md "Securing etcd" says: TLS on the client URLs
// with client certificates demanded (certificates from etcd-pki.ts), and
// authentication on, with a user limited to the fleet's prefix.

import { after, before } from "node:test";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./dbus.js";
import type { EtcdSettings } from "../../src/main/fleet/settings.js";
import type { EtcdPki } from "./etcd-pki.js";
import { PeerProxies } from "./peer-proxy.js";
import { run, type ProcessResult } from "./server.js";
import { eventually } from "./wait.js";

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
  /** Stops (SIGSTOP) or resumes (SIGCONT) the member's process: an etcd that hangs, or a partition that drops every packet. */
  freeze(frozen: boolean): void;
  /**
   * Cuts the member off from the others, or joins it again: alive, its
   * client port open, but no peer traffic (a cluster started partitionable).
   */
  partition(cut: boolean): Promise<void>;
}

export interface EtcdClusterOptions {
  /** Peer traffic through proxies (peer-proxy.ts), so that members can be partitioned. */
  readonly partitionable?: boolean;
}

/** etcd's password authentication, as an operator sets it up (docs/ETCD.md "Securing etcd"). */
export interface EtcdAuth {
  readonly rootPassword: string;
  /** A user whose role may read and write `prefix` and nothing else. */
  readonly user: string;
  readonly password: string;
  readonly prefix: string;
}

export interface EtcdSecurity {
  /** https client URLs with these certificates; a client certificate signed by `tls.ca` is demanded (--client-cert-auth). */
  readonly tls?: EtcdPki;
  /** Authentication on (`etcdctl auth enable`) once the cluster is healthy. */
  readonly auth?: EtcdAuth;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Comma-separated client URLs of every member, for `etcd =`. */
  readonly endpoints: string;
  /** etcdctl on every member, as root (with the test's client certificate when over TLS). */
  ctl(args: readonly string[]): Promise<ProcessResult>;
  /** `etcdctl get --prefix PREFIX` output (keys and values), asked of `members` (all by default). */
  dump(prefix: string, members?: readonly EtcdMember[]): Promise<string>;
  /** Resolves when every running member reports healthy. */
  healthy(members?: readonly EtcdMember[], ms?: number): Promise<void>;
  /**
   * Stops every member, deletes its data and starts the cluster anew, with
   * the same members (a lost data directory, or a restore: a history of
   * its own, from revision 1). Not with `auth` (set up once, at the start).
   */
  wipe(): Promise<void>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export async function startEtcdCluster(size = 3, security: EtcdSecurity = {}, options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-etcd-"));
  const ports: Array<{ client: number; peer: number; advertised: number }> = [];
  for (let i = 0; i < size; i++) {
    const peer = await freePort();
    ports.push({ client: await freePort(), peer, advertised: options.partitionable ? await freePort() : peer });
  }
  const names = ports.map((_, i) => `e${i + 1}`);
  const proxies = options.partitionable ? new PeerProxies() : null;
  for (const [i, p] of ports.entries()) await proxies?.add(p.advertised, p.peer, names[i]!);
  const initialCluster = ports.map((p, i) => `${names[i]}=http://[::1]:${p.advertised}`).join(",");
  const { tls, auth } = security;
  const tlsArgs = tls ? ["--cert-file", tls.serverCert, "--key-file", tls.serverKey, "--trusted-ca-file", tls.ca, "--client-cert-auth"] : [];
  let firstStart = true;
  const members: EtcdMember[] = ports.map((p, i) => {
    const name = names[i]!;
    const clientUrl = `${tls ? "https" : "http"}://[::1]:${p.client}`;
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
          "--listen-peer-urls", `http://[::1]:${p.peer}`, "--initial-advertise-peer-urls", `http://[::1]:${p.advertised}`,
          "--initial-cluster", initialCluster, "--initial-cluster-state", firstStart ? "new" : "existing",
          "--log-level", "error", ...tlsArgs,
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
        child.kill("SIGCONT");
        child.kill("SIGTERM");
        await exited;
      },
      freeze(frozen) {
        child?.kill(frozen ? "SIGSTOP" : "SIGCONT");
      },
      async partition(cut) {
        if (!proxies) throw new Error("a cluster started without partitionable: true");
        const list = (await ctl(["member", "list"])).stdout.toString();
        const id = new RegExp(`^([0-9a-f]+), \\w+, ${name},`, "m").exec(list)?.[1];
        if (!id) throw new Error(`${name} not in etcdctl member list: ${list}`);
        proxies.cut(name, id, cut);
      },
    };
  });
  for (const m of members) m.start();
  firstStart = false;
  const endpoints = members.map((m) => m.clientUrl).join(",");
  const certArgs = tls ? [`--cacert=${tls.ca}`, `--cert=${tls.clientCert}`, `--key=${tls.clientKey}`] : [];
  let asRoot: string[] = [];
  const ctl = (args: readonly string[], urls = endpoints): Promise<ProcessResult> =>
    run(ETCDCTL, [`--endpoints=${urls}`, ...certArgs, ...asRoot, ...args], 10_000, { ETCDCTL_API: "3" });
  const cluster: EtcdCluster = {
    members,
    endpoints,
    ctl: (args) => ctl(args),
    async dump(prefix, which = members) {
      return (await ctl(["get", "--prefix", prefix], which.map((m) => m.clientUrl).join(","))).stdout.toString("utf8");
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
    async wipe() {
      if (auth) throw new Error("wipe() would lose the cluster's users");
      await Promise.all(members.map((m) => m.stop()));
      for (const m of members) rmSync(join(root, m.name), { recursive: true, force: true });
      firstStart = true;
      for (const m of members) m.start();
      firstStart = false;
      await cluster.healthy();
    },
    async stop() {
      await Promise.all(members.map((m) => m.stop()));
      await proxies?.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    await cluster.healthy();
    if (auth) {
      // As docs/ETCD.md "Securing etcd" tells the operator (there with the
      // passwords typed at etcdctl's prompt, not on its command line).
      const steps: string[][] = [
        ["user", "add", "root", `--new-user-password=${auth.rootPassword}`],
        ["role", "add", auth.user],
        ["role", "grant-permission", auth.user, "readwrite", "--prefix=true", auth.prefix],
        ["user", "add", auth.user, `--new-user-password=${auth.password}`],
        ["user", "grant-role", auth.user, auth.user],
        ["auth", "enable"],
      ];
      for (const step of steps) {
        const r = await ctl(step);
        if (r.code !== 0) throw new Error(`etcdctl ${step[0]} ${step[1]} exited ${r.code}: ${r.stderr}`);
      }
      asRoot = [`--user=root:${auth.rootPassword}`];
    }
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

/**
 * Waits until `count` servers hold keys under `prefix`servers/ (each one
 * bound to a live lease), as `members` say; fails with what etcd holds there.
 */
export async function serversRegistered(cluster: EtcdCluster, prefix: string, count: number, members = cluster.members): Promise<void> {
  let dump = "";
  await eventually(async () => {
    dump = await cluster.dump(`${prefix}servers/`, members);
    return dump.split("\n").filter((l) => l.startsWith(`${prefix}servers/`)).length === count;
  }, { what: `${count} servers registered under servers/`, timeoutMs: 10_000, context: () => dump });
}

/**
 * A real etcd of `size` members for one test file: started before its
 * tests and stopped after them (hooks at the file's top level), nothing
 * when etcd is missing (the tests skip). The getter gives it to a test.
 */
export function etcdForFile(size = 1): () => EtcdCluster {
  let cluster: EtcdCluster | undefined;
  before(async () => {
    if (!etcdMissing()) cluster = await startEtcdCluster(size);
  });
  after(async () => {
    await cluster?.stop();
  });
  return () => {
    if (!cluster) throw new Error("etcd is not running");
    return cluster;
  };
}

/** A server's etcd settings for `cluster` under `prefix`: no TLS, no login. */
export function plainEtcdSettings(cluster: EtcdCluster, prefix: string): EtcdSettings {
  return { endpoints: cluster.endpoints.split(","), prefix, ca: null, cert: null, key: null, user: null, passwordFile: null };
}
