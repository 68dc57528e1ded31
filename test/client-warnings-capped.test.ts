// The clients.conf warnings in bin/mandos's log are capped per kind, at a
// start, at a reload that parses the file again (in a worker thread), and
// at one that finds it unchanged; `--check` lists every one. A fleet's
// clients.conf whose secrets were all written as plain passphrases wrote a
// line a client at each of them: 20,000 lines at a start, and again at
// logrotate's weekly SIGHUP.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOGGED_WARNINGS_PER_KIND } from "../src/main/config/clients-config.js";
import { machine, machineSection } from "./helpers/keys.js";
import { BIN_MANDOS, hangUp, run, startServer, type RunningServer } from "./helpers/server.js";

const PLAIN = LOGGED_WARNINGS_PER_KIND + 15;
const warned = /WARNING: Client plain\d+'s secret in clients\.conf /g;
const counted = (n: number): RegExp => new RegExp(`WARNING: ${n} more clients' secrets in clients\\.conf are of a form mandos-client cannot decrypt \\(not each said here: mandos --check lists them all\\)$`, "m");

describe("clients.conf warnings, capped per kind in the log", () => {
  let root = "";
  let conf = "";
  let server: RunningServer;
  const plainSection = (i: number): string => {
    const m = machine(`plain${i}`);
    // A passphrase as a migration script might have put it: not an OpenPGP message.
    return machineSection({ ...m, secret: Buffer.from(`the disk passphrase of machine ${i}`) });
  };

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "mandos-ts-warnings-capped-"));
    conf = join(root, "conf");
    mkdirSync(conf);
    const sections = [machineSection(machine("good"))];
    for (let i = 0; i < PLAIN; i++) sections.push(plainSection(i));
    writeFileSync(join(conf, "clients.conf"), sections.join("\n"), { mode: 0o600 });
    server = await startServer(["--configdir", conf, "--statedir", join(root, "state"), "--no-restore", "--port", "0"]);
  });

  after(async () => {
    await server?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const since = (from: number): string => server.log().slice(from);

  test("a start says the first of the kind, then counts the rest", () => {
    const log = server.log();
    assert.equal(log.match(warned)?.length, LOGGED_WARNINGS_PER_KIND);
    assert.match(log, counted(PLAIN - LOGGED_WARNINGS_PER_KIND));
    assert.doesNotMatch(log, /disk passphrase/, "no secret in the log");
  });

  test("a reload that parses the file again, in its worker thread, caps them too", async () => {
    appendFileSync(join(conf, "clients.conf"), `\n${plainSection(PLAIN)}`);
    const from = server.log().length;
    await hangUp(server, /Reloaded clients\.conf: 1 added \(plain\d+\)/);
    assert.equal(since(from).match(warned)?.length, LOGGED_WARNINGS_PER_KIND);
    assert.match(since(from), counted(PLAIN + 1 - LOGGED_WARNINGS_PER_KIND));
  });

  test("a reload that finds the file unchanged caps them too", async () => {
    const from = server.log().length;
    await hangUp(server, /Reloaded clients\.conf: 0 added/);
    assert.equal(since(from).match(warned)?.length, LOGGED_WARNINGS_PER_KIND);
    assert.match(since(from), counted(PLAIN + 1 - LOGGED_WARNINGS_PER_KIND));
  });

  test("--check lists every one, and counts none", async () => {
    const r = await run(process.execPath, [BIN_MANDOS, "--check", "--configdir", conf, "--no-restore"]);
    const out = r.stdout.toString();
    assert.equal(r.code, 0, out + String(r.stderr));
    assert.equal(out.match(/WARNING: clients\.conf: Client plain\d+'s secret in clients\.conf /g)?.length, PLAIN + 1);
    assert.doesNotMatch(out, /more clients' secrets/);
    assert.doesNotMatch(out, /disk passphrase/);
  });
});
