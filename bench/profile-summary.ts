// Where a thread's CPU went, from a V8 CPU profile (`node --cpu-prof`; set
// BENCH_SERVER_NODE_FLAGS="--cpu-prof --cpu-prof-dir=DIR" for the bench's
// servers: the main thread and each worker write their own file). Each
// sample goes to the category of the innermost frame on its stack that
// names one (record layer, key schedule, key agreement, signature,
// hand-off to workers, socket I/O, ...); with the number of secrets served
// while profiling, the figures become µs per secret.
//
//   node dist/bench/profile-summary.js SECRETS FILE.cpuprofile...

import { readFileSync } from "node:fs";

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly children?: readonly number[];
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Category rules, tried on each frame from the innermost outwards; the first frame that matches one decides. */
const RULES: ReadonlyArray<readonly [string, (name: string, url: string) => boolean]> = [
  ["GC", (n) => n === "(garbage collector)"],
  ["idle", (n) => n === "(idle)"],
  ["V8 and native, no JS frame", (n) => n === "(program)"],
  ["signature (Ed25519 verify)", (n) => /^(verifySignature|makeSignature)$/.test(n)],
  ["key agreement (X25519)", (n) => /^(computeSharedSecret|agreeEphemeral|generateKeyShare|generateEphemeralKeyShares|montgomeryPrivateKey|diffieHellman)$/.test(n)],
  ["key import, key ID", (n) => /^(parseSpki|requireCanonicalSpki|keyId|createPublicKey)$/.test(n)],
  ["key schedule, transcript hash", (n) => /^(hkdfExtract|hkdfExpand|expandLabel|deriveSecret|handshakeSecrets|applicationSecrets|finishedMac|trafficKeys|nextTrafficSecret|digest|transcriptHash|emptyHash|derivedFromEarly)$/.test(n)],
  ["record layer (AES-GCM, framing)", (n, u) => /^(sealRecord|openRecord|nonce)$/.test(n) || /src\/tls\/(record|flight-buffer|channel)\.js/.test(u)],
  ["hand-off to workers (structured clone, messages)", (n, u) => /piscina|internal\/worker|worker_threads/.test(u) || /^(postMessage|receiveMessage|structuredClone)$/.test(n)],
  ["socket I/O (net, streams, libuv calls)", (_n, u) => /^node:(net|stream|internal\/stream|internal\/net|internal\/streams)/.test(u)],
  ["TLS engine: messages, state machine", (_n, u) => /src\/tls\//.test(u)],
  ["server: connection, registry, admission, events", (_n, u) => /src\/main\//.test(u)],
  ["timers, promises, event loop", (_n, u) => /^node:internal\/(timers|process\/task_queues|async_hooks)/.test(u)],
];

export interface Breakdown {
  /** Category → CPU ms (idle excluded from `busyMs`). */
  readonly byCategory: Map<string, number>;
  /** Function (name, file) → self ms. */
  readonly bySelf: Map<string, number>;
  readonly busyMs: number;
}

export function breakdown(profile: Profile): Breakdown {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const categoryOf = new Map<number, string>();
  const categorize = (id: number): string => {
    const known = categoryOf.get(id);
    if (known !== undefined) return known;
    const frame = byId.get(id)!.callFrame;
    const rule = RULES.find(([, test]) => test(frame.functionName, frame.url));
    const up = parent.get(id);
    const category = rule ? rule[0] : up === undefined ? "other JS (Node internals)" : categorize(up);
    categoryOf.set(id, category);
    return category;
  };
  const byCategory = new Map<string, number>();
  const bySelf = new Map<string, number>();
  let busyMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const category = categorize(id);
    byCategory.set(category, (byCategory.get(category) ?? 0) + ms);
    if (category === "idle") return;
    busyMs += ms;
    const frame = byId.get(id)!.callFrame;
    const key = `${frame.functionName || "(anonymous)"} ${frame.url.replace(/^.*\/(dist|node_modules)\//, "")}`;
    bySelf.set(key, (bySelf.get(key) ?? 0) + ms);
  });
  return { byCategory, bySelf, busyMs };
}

function report(file: string, secrets: number): string {
  const b = breakdown(JSON.parse(readFileSync(file, "utf8")) as Profile);
  const us = (ms: number): string => (secrets > 0 ? ((ms * 1000) / secrets).toFixed(1) : "-");
  let out = `${file}: ${b.busyMs.toFixed(0)} ms busy, ${us(b.busyMs)} µs per secret\n\n| category | ms | % of busy | µs per secret |\n|---|---|---|---|\n`;
  for (const [category, ms] of [...b.byCategory].sort((x, y) => y[1] - x[1])) {
    if (category === "idle") continue;
    out += `| ${category} | ${ms.toFixed(0)} | ${((ms / b.busyMs) * 100).toFixed(1)} | ${us(ms)} |\n`;
  }
  out += "\nTop functions by self time:\n";
  for (const [fn, ms] of [...b.bySelf].sort((x, y) => y[1] - x[1]).slice(0, 25)) out += `  ${ms.toFixed(0).padStart(6)} ms  ${us(ms).padStart(6)} µs  ${fn}\n`;
  return out;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, ""))) {
  const [secrets, ...files] = process.argv.slice(2);
  for (const file of files) process.stdout.write(report(file, Number(secrets)) + "\n");
}
