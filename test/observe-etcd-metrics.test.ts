// The metrics of a server's link to etcd (docs/OBSERVABILITY.md): an
// operator alerts on mandos_etcd_degraded, which follows the DEGRADED and
// "reachable again" log lines, and sees elections in
// mandos_etcd_failures_total, which the log keeps at debug level. bin/mandos
// on a real one-member etcd that the test stops and starts again; promtool
// checks the exposition; a server without etcd has neither metric.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeFleetRoot, type Fleet } from "./helpers/dbus.js";
import { etcdForFile, etcdMissing } from "./helpers/etcd.js";
import { startServer, type RunningServer } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const PROMTOOL = "/usr/bin/promtool";
const skip = etcdMissing();
const etcd = etcdForFile(1);
let root: string;
let fleet: Fleet;
const servers: RunningServer[] = [];

before(() => {
  ({ root, fleet } = makeFleetRoot("mandos-ts-etcd-metrics-"));
});
after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  rmSync(root, { recursive: true, force: true });
});

/** bin/mandos with metrics on a port of its choosing, and `args`; resolves to it and that port. */
async function serverWithMetrics(state: string, args: readonly string[]): Promise<{ server: RunningServer; port: number }> {
  const server = await startServer(["--configdir", fleet.conf, "--statedir", state, "--no-restore", "--port", "0", "--address", "::1", "--metrics", ":0", ...args]);
  servers.push(server);
  const port = Number(/Serving \/metrics and \/health on "127\.0\.0\.1", port (\d+)/.exec(server.log())?.[1]);
  assert.ok(port > 0, server.log());
  return { server, port };
}

async function exposition(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

/** A sample's value in `text`, or undefined when the exposition lacks it. */
function sample(text: string, name: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

test("mandos_etcd_degraded is 1 from DEGRADED until etcd answers again; mandos_etcd_failures_total counts every failure", { skip, timeout: 90_000 }, async () => {
  const cluster = etcd();
  const { server, port } = await serverWithMetrics(join(root, "state-a"), ["--etcd", cluster.endpoints, "--etcd_prefix", "/metrics-test/"]);
  const first = await exposition(port);
  assert.equal(sample(first, "mandos_etcd_degraded"), 0);
  assert.equal(sample(first, "mandos_etcd_failures_total"), 0);
  if (existsSync(PROMTOOL)) {
    const checked = spawnSync(PROMTOOL, ["check", "metrics"], { input: first, encoding: "utf8" });
    assert.equal(checked.status, 0, `promtool check metrics: ${checked.stdout}${checked.stderr}`);
  }

  const member = cluster.members[0]!;
  await member.stop();
  await server.waitForLog(/CRITICAL: etcd unreachable .*DEGRADED/);
  const down = await exposition(port);
  assert.equal(sample(down, "mandos_etcd_degraded"), 1);
  const failures = sample(down, "mandos_etcd_failures_total") ?? 0;
  assert.ok(failures >= 2, `failures counted while DEGRADED: ${failures}`);

  member.start();
  await cluster.healthy();
  await server.waitForLog(/etcd is reachable again/);
  // The page may be a second old (observe/metrics-page.ts).
  const up = await eventually(async () => {
    const text = await exposition(port);
    return sample(text, "mandos_etcd_degraded") === 0 && text;
  }, { what: "mandos_etcd_degraded 0" });
  assert.ok((sample(up, "mandos_etcd_failures_total") ?? 0) >= failures, "the failure counter went back");
});

test("a server without etcd has no etcd metrics", { skip, timeout: 60_000 }, async () => {
  const { port } = await serverWithMetrics(join(root, "state-b"), []);
  const text = await exposition(port);
  assert.doesNotMatch(text, /mandos_etcd_/);
  assert.match(text, /^mandos_secrets_sent_total 0$/m, "not the exposition of a running server");
});

test("the example alert rules of docs/OBSERVABILITY.md pass promtool, and name only metrics a server with etcd and an audit file exports", { skip: skip || (existsSync(PROMTOOL) ? false : `${PROMTOOL} missing`), timeout: 60_000 }, async () => {
  const doc = readFileSync(new URL("../../docs/OBSERVABILITY.md", import.meta.url), "utf8");
  const rules = /## Example alert rules\s+```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(rules, "no yaml block under \"Example alert rules\"");
  const file = join(root, "rules.yml");
  writeFileSync(file, rules);
  const checked = spawnSync(PROMTOOL, ["check", "rules", file], { encoding: "utf8" });
  assert.equal(checked.status, 0, `promtool check rules: ${checked.stdout}${checked.stderr}`);
  // With an audit file: the rules name its gauge, which only such a server exports.
  const { port } = await serverWithMetrics(join(root, "state-c"), ["--etcd", etcd().endpoints, "--etcd_prefix", "/metrics-rules/", "--audit-log", join(root, "state-c", "audit.jsonl")]);
  const text = await exposition(port);
  const exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
  for (const name of new Set([...rules.matchAll(/\b((?:mandos|nodejs)_[a-z_]+?)(?:_bucket)?\b/g)].map((m) => m[1]!))) {
    assert.ok(exported.has(name), `the rules name ${name}, which the server does not export`);
  }
});
