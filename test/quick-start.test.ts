// The README's first command, as a newcomer runs it: taken from the README
// (so the two cannot drift), in a fresh clone, as root and as an
// unprivileged user. The real mandos-client and our own client get the demo
// password; a state file is written; and nothing is said at WARNING or above,
// by the server or by npm, that the README does not list as expected.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { chownSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { parseClientsConfig } from "../src/main/config/clients-config.js";
import { MANDOS_CLIENT, missing } from "./helpers/peers.js";
import { REPO, run } from "./helpers/server.js";
import { alive } from "./helpers/process.js";

const README = readFileSync(join(REPO, "README.md"), "utf8");
const STATE_DIR = "/tmp/mandos-ts-state";
const NOBODY = 65534;
const USER_NPMRC = join(homedir(), ".npmrc");

/** The first shell block after a marker comment, joined into one command line. */
function codeAfter(marker: string): string {
  const from = README.indexOf(marker);
  assert.ok(from >= 0, `README has ${marker}`);
  const block = /```sh\n([\s\S]*?)```/.exec(README.slice(from));
  assert.ok(block?.[1], `a sh block follows ${marker}`);
  return block[1].replace(/\\\n\s*/g, "").trim();
}

/** The expected warnings: each backquoted text in the README's list. */
function expectedWarnings(): string[] {
  const list = /<!-- expected-warnings -->([\s\S]*?)<!-- \/expected-warnings -->/.exec(README)?.[1] ?? "";
  return [...list.matchAll(/^- `([^`]+)`/gm)].map((m) => m[1]!);
}

const FIRST_COMMAND = codeAfter("<!-- install-and-run: the README's first command -->");
/** The README's second block: the real client asking for the password. */
const CLIENT_COMMAND = codeAfter("gets the demo password:");

interface Started {
  readonly child: ChildProcess;
  output(): string;
  listening: Promise<void>;
}

function startFirstCommand(clone: string, asUser: boolean, home: string): Started {
  let text = "";
  const child = spawn("/bin/sh", ["-c", FIRST_COMMAND], {
    cwd: clone,
    detached: true, // its own process group: npm, node and the reader all go at the end
    stdio: ["ignore", "pipe", "pipe"],
    // npm may use its cache without asking the registry first: the same
    // install, without a minute of round trips.
    env: asUser
      ? {
          ...process.env,
          npm_config_prefer_offline: "true",
          HOME: home,
          // A copy of our npm cache, so that it installs as fast as ours; and
          // the machine's npm settings that live in root's own ~/.npmrc.
          npm_config_cache: join(home, ".npm"),
          npm_config_userconfig: join(home, ".npmrc"),
        }
      : { ...process.env, npm_config_prefer_offline: "true" },
    ...(asUser ? { uid: NOBODY, gid: NOBODY } : {}),
  });
  const listening = new Promise<void>((resolve, reject) => {
    const onText = (chunk: Buffer): void => {
      text += chunk.toString("utf8");
      if (/Now listening on address/.test(text)) resolve();
    };
    child.stdout!.on("data", onText);
    child.stderr!.on("data", onText);
    child.on("exit", (code) => reject(new Error(`the first command exited (${code}) before listening:\n${text}`)));
  });
  return { child, output: () => text, listening };
}

/** SIGTERM to the server alone (it logs its pid), and wait until it has saved and exited. */
async function stop(started: Started): Promise<void> {
  const pid = Number(/mandos \[(\d+)\]/.exec(started.output())?.[1]);
  if (pid > 0 && alive(pid)) {
    process.kill(pid, "SIGTERM");
    for (const deadline = Date.now() + 15_000; alive(pid) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
  }
  // Whatever is left of the command's process group (the shell, npm).
  try {
    process.kill(-started.child.pid!, "SIGKILL");
  } catch {
    // gone already
  }
}

/** Lines at WARNING or above, and anything npm warns about. */
function warnings(output: string): string[] {
  return output.split("\n").filter((line) => /\b(WARNING|ERROR|CRITICAL):|^npm (warn|error|ERR)|cannot log/i.test(line));
}

async function quickStart(t: { after(fn: () => void | Promise<void>): void }, asUser: boolean): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "mandos-ts-quickstart-"));
  // One hook, in this order: a server still running at a failure saves its
  // state as it stops, into a STATE_DIR removed before would be made again.
  let started: Started | undefined;
  t.after(async () => {
    if (started) await stop(started);
    rmSync(STATE_DIR, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  });
  const clone = join(root, "clone");
  const cloned = await run("git", ["clone", "--quiet", REPO, clone]);
  assert.equal(cloned.code, 0, cloned.stderr);
  if (asUser) {
    cpSync(join(homedir(), ".npm"), join(root, ".npm"), { recursive: true });
    if (existsSync(USER_NPMRC)) cpSync(USER_NPMRC, join(root, ".npmrc"));
    chownSync(root, NOBODY, NOBODY);
    await new Promise<void>((resolve) => spawn("chown", ["-R", `${NOBODY}:${NOBODY}`, root]).on("exit", () => resolve()));
  }
  rmSync(STATE_DIR, { recursive: true, force: true });

  const server = (started = startFirstCommand(clone, asUser, root));
  await server.listening;

  // The real client, as the README's second command.
  const [client, ...args] = CLIENT_COMMAND.split(/\s+/).map((word) => word.replace(/^(--connect=)'(.*)'$/, "$1$2"));
  const got = await run(client!, args, 60_000, {}, clone);
  assert.equal(got.stdout.toString(), readFileSync(join(clone, "example/client/password"), "utf8"), got.stderr);

  // Our client: the raw secret, byte for byte as clients.conf holds it.
  const ours = await run(process.execPath, [join(clone, "bin/mandos-ts-client"), "--connect=[::1]:7999", "--tls-privkey=example/client/tls-privkey.pem"], 30_000, {}, clone);
  const [demo] = parseClientsConfig(readFileSync(join(clone, "example/clients.conf"), "utf8"), "example/clients.conf");
  assert.ok(demo !== undefined && ours.stdout.equals(demo.secret), `our client got the demo secret; stderr: ${ours.stderr}`);

  await stop(server);
  assert.ok(existsSync(join(STATE_DIR, "clients.json")), `a state file was written; output:\n${server.output()}`);
  const allowed = expectedWarnings();
  assert.ok(allowed.length >= 1, "the README lists the expected warnings");
  // UID:GID in the README stands for whichever user the server would become.
  const patterns = allowed.map((text) => new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace("UID:GID", "\\d+:\\d+")));
  const unexpected = warnings(server.output()).filter((line) => !patterns.some((p) => p.test(line)));
  assert.deepEqual(unexpected, [], `only the README's expected warnings; output:\n${server.output()}`);
}

const needsRoot = process.getuid?.() !== 0 ? "needs root (runs the command as root and as nobody)" : false;

test("the README's first command serves the demo password as root, with no unexpected warning", { skip: missing(MANDOS_CLIENT) || needsRoot, timeout: 300_000 }, (t) =>
  quickStart(t, false));

test("the README's first command serves the demo password as an unprivileged user, with no unexpected warning", { skip: missing(MANDOS_CLIENT) || needsRoot, timeout: 300_000 }, (t) =>
  quickStart(t, true));
