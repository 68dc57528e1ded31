// The real mandos-ctl against our D-Bus service (issue 7): every option,
// each with its effect read back through mandos-ctl --dump-json, and where
// it matters by what the real mandos-client then gets; runtime changes
// survive a SIGTERM and a restart with restore.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  DBUS_DAEMON, DBUS_SEND, dumpJson, makeFleetRoot, mandosCtl, parseTable, startOurServer, startPrivateBus,
  startReference,
  type Fleet, type PrivateBus,
} from "./helpers/dbus.js";
import { MANDOS_CLIENT, MANDOS_CTL, MANDOS_KEYGEN, MANDOS_REFERENCE, missing } from "./helpers/peers.js";
import { makeClients } from "./helpers/keys.js";
import { REPO, runMandosClient } from "./helpers/server.js";
import { eventually } from "./helpers/wait.js";

const noService = existsSync(join(REPO, "dist/src/main/dbus")) ? false : "D-Bus service not on this branch yet";
const peers = missing(DBUS_DAEMON, DBUS_SEND, MANDOS_CTL, MANDOS_CLIENT, MANDOS_KEYGEN);
const skipFor = {
  ours: peers || noService,
  // The reference first: it shows that the harness and the expectations
  // hold for the server we replace.
  reference: peers || missing(MANDOS_REFERENCE) || (process.getuid?.() === 0 ? false : "needs root: the reference server must drop to _mandos"),
} as const;

/** What the tests need of either server. */
interface Served {
  readonly port: number;
  /** Ours only: the reference quits on SIGHUP, ours reloads clients.conf. */
  readonly process?: { kill(signal: NodeJS.Signals): boolean };
  waitForLog(pattern: RegExp, ms?: number): Promise<string>;
  stop(): Promise<unknown>;
}

/** Polls `mandos-ctl --dump-json` until `pred` holds for `client` (bounded). */
async function until(address: string, client: string, pred: (p: Record<string, unknown>) => boolean, ms = 15_000): Promise<Record<string, unknown>> {
  let last: Record<string, unknown> = {};
  return eventually(async () => {
    last = (await dumpJson(address))[client] ?? {};
    return pred(last) && last;
  }, { what: `${client} in the expected state`, timeoutMs: ms, context: () => JSON.stringify(last) });
}

/** The whole option list against one server; the reference first, as the expectation. */
function mandosCtlSuite(kind: "reference" | "ours"): void {
  describe(`mandos-ctl against ${kind === "ours" ? "our D-Bus service" : "the Python reference server"}`, { skip: skipFor[kind] }, () => {
    let root = "";
    let checkerDir = "";
    let fleet: Fleet;
    let bus: PrivateBus;
    let server: Served;
    const state = (): string => join(root, "state");
    const start = async (restore: boolean): Promise<Served> => {
      if (kind === "ours") return startOurServer(fleet.conf, state(), bus.address, restore);
      mkdirSync(state(), { recursive: true });
      return startReference(fleet.conf, state(), bus.address, restore);
    };
    const ctl = async (...args: string[]): Promise<void> => {
      const r = await mandosCtl(bus.address, ...args);
      assert.equal(r.code, 0, `mandos-ctl ${args.join(" ")}: ${r.stderr}`);
    };
    const client = (name: string) => fleet.clients.find((c) => c.name === name)!;
  /** The password --secret gave alpha. */
  let newPassword = "";

    before(async () => {
      ({ root, checkerDir, fleet } = makeFleetRoot("mandos-ts-dbusctl-"));
      bus = await startPrivateBus();
      server = await start(false);
    });

    after(async () => {
      await server?.stop();
      await bus?.stop();
      if (root) rmSync(root, { recursive: true, force: true });
    });

    test("listing, --verbose and --dump-json show the configured clients", async () => {
      const plain = await mandosCtl(bus.address);
      assert.equal(plain.code, 0, plain.stderr);
      const rows = parseTable(plain.stdout);
      assert.deepEqual([...rows.keys()].sort(), ["alpha", "bravo", "charlie", "delta"]);
      assert.equal(rows.get("bravo")?.Enabled, "No");
      assert.equal(rows.get("charlie")?.Timeout, "01:00:00");
      const verbose = parseTable((await mandosCtl(bus.address, "--verbose")).stdout);
      assert.equal(verbose.get("charlie")?.Host, "charlie.example.org");
      assert.equal(verbose.get("charlie")?.["Approved By Default"], "No");
      assert.equal(verbose.get("charlie")?.["Approval Delay"], "00:00:30");
      assert.equal(verbose.get("alpha")?.["Key ID"], client("alpha").keyId);
      const json = await dumpJson(bus.address);
      assert.equal(json.charlie?.ExtendedTimeout, 7_200_000);
      assert.equal(json.charlie?.Interval, 600_000);
      assert.equal(json.delta?.ApprovalDelay, 3_000);
      assert.equal(json.bravo?.Enabled, false);
      // Naming clients limits the output to them.
      assert.deepEqual(Object.keys(await dumpJson(bus.address, "alpha")), ["alpha"]);
    });

    test("--is-enabled, --disable and --enable; a disabled client's mandos-client gets nothing", async () => {
      assert.equal((await mandosCtl(bus.address, "--is-enabled", "alpha")).code, 0);
      assert.notEqual((await mandosCtl(bus.address, "--is-enabled", "bravo")).code, 0);
      await ctl("--disable", "alpha");
      assert.equal((await dumpJson(bus.address, "alpha")).alpha?.Enabled, false);
      assert.notEqual((await mandosCtl(bus.address, "--is-enabled", "alpha")).code, 0);
      const refused = await runMandosClient(client("alpha").dir, "::1", server.port, 3_000);
      assert.equal(refused.stdout.length, 0, "a disabled client got a secret");
      await server.waitForLog(/Client alpha is disabled/);
      await ctl("--enable", "alpha");
      assert.equal((await dumpJson(bus.address, "alpha")).alpha?.Enabled, true);
      const ok = await runMandosClient(client("alpha").dir, "::1", server.port, 30_000);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout.toString(), client("alpha").password);
    });

    test("settings: --timeout, --interval, --extended-timeout, --checker, --host, --approval-delay, --approval-duration, --approve-by-default, --deny-by-default", async () => {
      await ctl("--timeout", "PT7M", "--interval", "PT3M", "--extended-timeout", "PT25M", "--host", "delta.example.net",
        "--approval-delay", "PT4S", "--approval-duration", "PT9S", "--deny-by-default", "delta");
      // Over D-Bus the checker is the raw string: no config-file %% escape.
      await ctl("--checker", `touch ${checkerDir}/delta-%(host)s`, "delta");
      let d = (await dumpJson(bus.address, "delta")).delta!;
      assert.equal(d.Timeout, 420_000);
      assert.equal(d.Interval, 180_000);
      assert.equal(d.ExtendedTimeout, 1_500_000);
      assert.equal(d.Host, "delta.example.net");
      assert.equal(d.ApprovalDelay, 4_000);
      assert.equal(d.ApprovalDuration, 9_000);
      assert.equal(d.ApprovedByDefault, false);
      assert.equal(d.Checker, `touch ${checkerDir}/delta-%(host)s`);
      await ctl("--approve-by-default", "delta");
      d = (await dumpJson(bus.address, "delta")).delta!;
      assert.equal(d.ApprovedByDefault, true);
      // The other clients are untouched.
      assert.equal((await dumpJson(bus.address, "alpha")).alpha?.Timeout, 300_000);
    });

    test("--bump-timeout moves Expires to now + Timeout", async () => {
      await ctl("--timeout", "PT1H", "alpha");
      const before = Date.now();
      await ctl("--bump-timeout", "alpha");
      const expires = Date.parse(`${String((await dumpJson(bus.address, "alpha")).alpha?.Expires)}Z`);
      assert.ok(Math.abs(expires - (before + 3_600_000)) < 10_000, `Expires ${new Date(expires).toISOString()} not about an hour from now`);
    });

    test("--start-checker runs the checker with %(host)s, --stop-checker stops it", async () => {
      await ctl("--start-checker", "charlie");
      await until(bus.address, "charlie", (p) => p.LastCheckerStatus === 0);
      assert.ok(existsSync(join(checkerDir, "ran-charlie.example.org")), "the checker did not run");
      await ctl("--checker", "sleep 30", "alpha");
      await ctl("--start-checker", "alpha");
      await until(bus.address, "alpha", (p) => p.CheckerRunning === true);
      await ctl("--stop-checker", "alpha");
      await until(bus.address, "alpha", (p) => p.CheckerRunning === false);
      await ctl("--checker", "true", "alpha");
    });

    // Found by session 56's D-Bus audit: ours answered success and ran
    // nothing; the reference's call fails with the KeyError, and
    // mandos-ctl exits 1.
    test("--start-checker with a checker that cannot be expanded fails, and runs nothing", async () => {
      await ctl("--checker", "echo %(nosuch)s", "alpha");
      const before = (await dumpJson(bus.address)).alpha!;
      const r = await mandosCtl(bus.address, "--start-checker", "alpha");
      assert.notEqual(r.code, 0, "mandos-ctl --start-checker succeeded");
      if (kind === "ours") assert.match(r.stderr, /the checker of alpha cannot be expanded: .*nosuch/);
      const after = (await dumpJson(bus.address)).alpha!;
      assert.equal(after.CheckerRunning, false);
      assert.equal(after.LastCheckerStatus, before.LastCheckerStatus);
      await ctl("--checker", "true", "alpha");
    });

    test("--deny refuses, --approve gives the secret to a waiting mandos-client", async () => {
      const charlie = client("charlie");
      const denied = runMandosClient(charlie.dir, "::1", server.port, 5_000);
      await until(bus.address, "charlie", (p) => p.ApprovalPending === true);
      await ctl("--deny", "charlie");
      await until(bus.address, "charlie", (p) => p.ApprovalPending === false);
      await server.waitForLog(/Client charlie was not approved/);
      const d = await denied;
      assert.equal(d.stdout.length, 0, "a denied client got a secret");

      const approved = runMandosClient(charlie.dir, "::1", server.port, 30_000);
      await until(bus.address, "charlie", (p) => p.ApprovalPending === true);
      await ctl("--approve", "charlie");
      const a = await approved;
      assert.equal(a.code, 0, a.stderr);
      assert.equal(a.stdout.toString(), charlie.password);
    });

    test("--secret FILE changes the password the client receives", async () => {
      const alpha = client("alpha");
      const password = `a new password ${Math.random().toString(36).slice(2)}`;
      newPassword = password;
      const passfile = join(root, "new-password");
      writeFileSync(passfile, password);
      const section = execFileSync(MANDOS_KEYGEN, ["--dir", alpha.dir, "--passfile", passfile, "--no-ssh", "--name", "alpha"], { encoding: "utf8" });
      // The secret's base64 follows "secret =" on indented continuation lines.
      const lines = section.split("\n");
      const first = lines.findIndex((l) => /^secret\s*=/.test(l));
      const tail = lines.slice(first + 1);
      const end = tail.findIndex((l) => !/^\s/.test(l) || l.trim() === "");
      const body = [lines[first]!.replace(/^secret\s*=/, ""), ...tail.slice(0, end < 0 ? tail.length : end)].join("");
      const secretFile = join(root, "new-secret");
      writeFileSync(secretFile, Buffer.from(body.replace(/\s+/g, ""), "base64"));
      await ctl("--secret", secretFile, "alpha");
      const r = await runMandosClient(alpha.dir, "::1", server.port, 30_000);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), password);
    });

    test("runtime changes survive SIGTERM and a restart with restore", async () => {
      await ctl("--disable", "charlie");
      await server.stop();
      server = await start(true);
      const d = (await dumpJson(bus.address, "delta")).delta!;
      assert.equal(d.Timeout, 420_000);
      assert.equal(d.Host, "delta.example.net");
      assert.equal(d.ApprovalDuration, 9_000);
      assert.equal(d.ApprovedByDefault, true);
      assert.equal((await dumpJson(bus.address, "alpha")).alpha?.Timeout, 3_600_000);
      assert.equal((await dumpJson(bus.address, "charlie")).charlie?.Enabled, false);
      // The secret set over D-Bus, too.
      assert.ok(newPassword, "the --secret test ran first");
      const r = await runMandosClient(client("alpha").dir, "::1", server.port, 30_000);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), newPassword);
    });

    test("--remove forgets the client: gone from the listing, its key unknown to the server", async () => {
      await ctl("--remove", "bravo", "alpha");
      const json = await dumpJson(bus.address);
      assert.deepEqual(Object.keys(json).sort(), ["charlie", "delta"]);
      const r = await runMandosClient(client("alpha").dir, "::1", server.port, 3_000);
      assert.equal(r.stdout.length, 0, "a removed client got a secret");
      await server.waitForLog(new RegExp(`Client not found for key ID: ${client("alpha").keyId}`, "i"));
    });

    // mandos(8): run-time changes override clients.conf. The reference keeps a
    // client removed while clients.conf (unchanged here) still has its section.
    test("a client removed with --remove stays removed across a restart with restore (and, ours, a SIGHUP)", async () => {
      if (kind === "ours") {
        server.process?.kill("SIGHUP");
        await server.waitForLog(/Reloaded clients\.conf: 0 added, 0 removed, 0 changed/);
        assert.deepEqual(Object.keys(await dumpJson(bus.address)).sort(), ["charlie", "delta"], "after SIGHUP");
      }
      await server.stop();
      server = await start(true);
      assert.deepEqual(Object.keys(await dumpJson(bus.address)).sort(), ["charlie", "delta"], "after a restart");
      const r = await runMandosClient(client("alpha").dir, "::1", server.port, 3_000);
      assert.equal(r.stdout.length, 0, "a removed client got a secret after a restart");
      await server.waitForLog(new RegExp(`Client not found for key ID: ${client("alpha").keyId}`, "i"));
    });

    // The reference's restore takes a key_id edited in clients.conf and keeps
    // the rest of the client's state: disabled at run time, it stays so.
    test("a new key_id in clients.conf keeps the client's run-time state; the new key is served, the old one is not (a restart with restore; ours, a SIGHUP first)", async () => {
      const delta = client("delta");
      await ctl("--disable", "delta");
      const [renewed] = makeClients(root, join(root, "pgp"), 1, "renewed");
      const file = join(fleet.conf, "clients.conf");
      const text = readFileSync(file, "utf8");
      const old = new RegExp(delta.keyId, "i");
      assert.match(text, old);
      writeFileSync(file, text.replace(old, renewed!.keyId));
      const expectKept = async (when: string): Promise<void> => {
        const d = (await dumpJson(bus.address, "delta")).delta!;
        assert.deepEqual([d.KeyID, d.Enabled, d.Host, d.Timeout], [renewed!.keyId, false, "delta.example.net", 420_000], when);
        const refused = await runMandosClient(renewed!.dir, "::1", server.port, 3_000);
        assert.equal(refused.stdout.length, 0, `${when}: a client disabled at run time got a secret`);
        const stale = await runMandosClient(delta.dir, "::1", server.port, 3_000);
        assert.equal(stale.stdout.length, 0, `${when}: the old key got a secret`);
        await server.waitForLog(new RegExp(`Client not found for key ID: ${delta.keyId}`, "i"));
      };
      if (kind === "ours") {
        server.process?.kill("SIGHUP");
        await server.waitForLog(/Reloaded clients\.conf: 0 added, 0 removed, 1 changed/);
        await expectKept("after SIGHUP");
      }
      await server.stop();
      server = await start(true);
      await expectKept("after a restart");
      await ctl("--enable", "delta");
      const r = await runMandosClient(renewed!.dir, "::1", server.port, 30_000);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), delta.password);
    });
  });
}

mandosCtlSuite("reference");
mandosCtlSuite("ours");
