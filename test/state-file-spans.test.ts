// The state file's unchanged clients are copied from the file written last
// instead of kept in memory (state-writer.ts, FileSpan): the output stays
// exactly buildState's through every kind of change, on either writer, a
// list handed out earlier still writes its own bytes, no descriptor is
// left behind, and a file changed under the server is never copied from.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientRegistry, type CheckerSpawner } from "../src/main/clients/registry.js";
import { ManualClock } from "../src/main/clock.js";
import { silentLogger } from "../src/main/daemon/log.js";
import { buildState, SAVE_DELAY_MS, StateSaver, StateSerialiser } from "../src/main/state/state-file.js";
import { batchesOf, isSpan, writeAtomically, writeAtomicallyInBackground, type StateList } from "../src/main/state/state-writer.js";
import { events } from "../src/main/events.js";
import { clientSettings } from "./helpers/clients.js";

const never: CheckerSpawner = () => ({ kill() {} });
let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "mandos-ts-spans-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A registry and a serialiser wired as main.ts wires them, saving to a file of its own. */
function fleet(name: string, count: number) {
  const clock = new ManualClock();
  let config = Array.from({ length: count }, (_, i) => clientSettings(`c${i}`, { enabled: i !== 7 }));
  const reg = new ClientRegistry(config, { logger: silentLogger, clock, spawner: never });
  const serialiser = new StateSerialiser();
  reg.subscribe((event) => {
    if (event.type === "client-not-found" || event.type === "need-approval" || event.type === "checker-started" || event.type === "approval-wait-ended") return;
    serialiser.changed(event.type === "client-added" || event.type === "client-removed" ? null : event.client.name);
  });
  const own = mkdtempSync(join(dir, `${name}-`));
  const path = join(own, "clients.json");
  return {
    clock,
    reg,
    path,
    own,
    list: (): StateList => serialiser.list(config, reg.entries(), clock.now(), [], (n) => reg.entry(n)),
    prepare: (budgetMs: number): boolean => serialiser.prepare(config, (n) => reg.entry(n), budgetMs),
    expected: (): string => JSON.stringify(buildState(config, reg.snapshot(), clock.now())) + "\n",
    reload: (edit: (c: ReturnType<typeof clientSettings>) => ReturnType<typeof clientSettings>) => {
      config = config.map(edit);
    },
    get config() {
      return config;
    },
  };
}

function spans(list: StateList): number {
  return list.pieces.filter(isSpan).length;
}

/** Every kind of change a registry makes, each followed by `save` and a check of the file against buildState. */
async function everyChange(f: ReturnType<typeof fleet>, save: () => Promise<void>): Promise<void> {
  const check = async (what: string): Promise<void> => {
    await save();
    assert.equal(readFileSync(f.path, "utf8"), f.expected(), what);
  };
  await check("first save");
  // Nothing changed: the header, one span of every client, the end.
  const idle = f.list();
  assert.equal(idle.pieces.length, 3, "unchanged clients are one span");
  assert.ok(isSpan(idle.pieces[1]!));
  idle.settle(null);
  f.clock.advance(1_000);
  for (let i = 0; i < 40; i += 3) f.reg.secretDelivered(`c${i}`);
  await check("secrets sent");
  f.clock.advance(1_000);
  f.reg.checkedOk("c1");
  f.reg.update("c2", { host: "moved.example.org" });
  f.reg.update("c3", { secret: Buffer.from("another secret") });
  f.reg.enable("c7");
  f.reg.disable("c39");
  f.reg.disable("c0");
  const mixed = f.list();
  assert.ok(spans(mixed) >= 2, "the unchanged runs between the changed clients are copied");
  mixed.settle(null);
  await check("settings, a secret, enabled and disabled, first and last");
  f.reg.update("c3", { secret: f.config[3]!.secret });
  await check("a secret set back to clients.conf's: the same bytes, another close");
  f.reg.remove("c5");
  await check("a client removed");
  f.reload((c) => (c.name === "c9" ? clientSettings("c9", { timeout: 1_234 }) : c));
  await check("clients.conf reloaded");
  f.clock.advance(1_000);
  f.reg.secretDelivered("c9");
  await check("after the reload");
  await check("nothing changed, twice in a row");
}

test("on this thread: unchanged clients are copied from the file in place, and the file is exactly buildState's after every kind of change", async () => {
  const f = fleet("sync", 40);
  await everyChange(f, async () => writeAtomically(f.path, f.list()));
});

test("in the background: the same, with the writes and copies on libuv's thread pool", async () => {
  const f = fleet("background", 40);
  await everyChange(f, async () => {
    assert.equal(await writeAtomicallyInBackground(f.path, f.list(), () => true), true);
  });
});

/** Every client's runtime changed, as by a reboot wave: each gets its secret. */
function wave(f: ReturnType<typeof fleet>, count: number): void {
  f.clock.advance(1_000);
  for (let i = 0; i < count; i++) f.reg.secretDelivered(`c${i}`);
}

for (const [where, save] of [
  ["on this thread", async (path: string, list: StateList) => writeAtomically(path, list)],
  ["in the background", async (path: string, list: StateList) => assert.equal(await writeAtomicallyInBackground(path, list, () => true), true)],
] as const) {
  test(`a wave, ${where}: each client's head is copied from the file and only its runtime made; the file is read in one range, not a read a client`, async () => {
    const f = fleet(`wave-${where.replaceAll(" ", "-")}`, 40);
    writeAtomically(f.path, f.list());
    wave(f, 40);
    const list = f.list();
    // c7 is disabled, so unchanged: its bytes and c8's head are one span.
    assert.equal(spans(list), 39, "one head a client");
    const inMemory = list.pieces.filter((p): p is Uint8Array => !isSpan(p)).reduce((n, p) => n + p.length, 0);
    const size = readFileSync(f.path).length;
    assert.ok(inMemory < size / 2, `${inMemory} of ${size} bytes made anew`);
    assert.equal([...batchesOf(list.pieces)].filter((b) => b.read !== null).length, 1, "the heads read as one range");
    await save(f.path, list);
    assert.equal(readFileSync(f.path, "utf8"), f.expected());
    // Twice in a row: the heads now lie in the file the first wave wrote.
    wave(f, 40);
    await save(f.path, f.list());
    assert.equal(readFileSync(f.path, "utf8"), f.expected());
  });
}

test("the writer reads spans far apart, or longer than its buffer, in pieces, and writes them in order", () => {
  const f = fleet("far", 400);
  writeAtomically(f.path, f.list());
  assert.ok(readFileSync(f.path).length > 256 * 1024, "a file larger than the writer's buffer");
  // The first and the last client changed: two runs of the file and two heads far apart.
  wave(f, 1);
  f.reg.secretDelivered("c399");
  const list = f.list();
  const reads = [...batchesOf(list.pieces)].filter((b) => b.read !== null);
  assert.ok(reads.length >= 2, `${reads.length} reads`);
  for (const batch of reads) assert.ok(batch.read!.length <= 256 * 1024);
  writeAtomically(f.path, list);
  assert.equal(readFileSync(f.path, "utf8"), f.expected());
});

test("prepare makes the changed clients' pieces ahead of the save, a slice at a time; the save is the same", async () => {
  const f = fleet("prepare", 200);
  writeAtomically(f.path, f.list());
  wave(f, 200);
  // No time at all: one step of 16 clients a call, then it says whether any are left.
  let calls = 0;
  while (!f.prepare(0)) calls++;
  assert.ok(calls >= 200 / 16 - 1, `${calls} calls`);
  assert.equal(f.prepare(0), true, "none left");
  writeAtomically(f.path, f.list());
  assert.equal(readFileSync(f.path, "utf8"), f.expected());
  // A client changed again after it was prepared, one removed before: the save has the latest of each.
  wave(f, 10);
  assert.equal(f.prepare(1_000), true);
  f.clock.advance(1_000);
  f.reg.secretDelivered("c3");
  f.reg.remove("c4");
  f.reg.secretDelivered("c5");
  assert.equal(f.prepare(1_000), true);
  writeAtomically(f.path, f.list());
  assert.equal(readFileSync(f.path, "utf8"), f.expected());
});

test("a changed client's head left in a file that is then changed in place is made again from its values", () => {
  const f = fleet("head-tampered", 10);
  writeAtomically(f.path, f.list());
  wave(f, 10);
  // The save with the heads in the file fails; the file is then changed under the server.
  f.list().settle(null);
  const fd = openSync(f.path, "r+");
  writeSync(fd, "X", readFileSync(f.path, "utf8").indexOf('"host":"') + 8);
  closeSync(fd);
  const next = f.list();
  assert.equal(spans(next), 0);
  writeAtomically(f.path, next);
  assert.equal(readFileSync(f.path, "utf8"), f.expected());
});

test("a state file changed in place under the server is not copied from: the next save makes its clients again", () => {
  const f = fleet("tampered", 10);
  writeAtomically(f.path, f.list());
  // Same inode, same size, one byte of a client's JSON changed.
  const text = readFileSync(f.path, "utf8");
  const at = text.indexOf('"host":"') + 8;
  const fd = openSync(f.path, "r+");
  writeSync(fd, "X", at);
  closeSync(fd);
  assert.notEqual(readFileSync(f.path, "utf8"), f.expected());
  const next = f.list();
  assert.equal(spans(next), 0, "nothing is copied from a changed file");
  writeAtomically(f.path, next);
  assert.equal(readFileSync(f.path, "utf8"), f.expected());
  // And the save after that copies from the new file again.
  const after = f.list();
  assert.ok(spans(after) > 0);
  writeAtomically(f.path, after);
  assert.equal(readFileSync(f.path, "utf8"), f.expected());
});

test("a file changed while a save copies from it fails that save, which renames nothing; the next one is whole", async () => {
  const f = fleet("changed-midway", 10);
  writeAtomically(f.path, f.list());
  const list = f.list();
  assert.ok(spans(list) > 0);
  const fd = openSync(f.path, "r+");
  writeSync(fd, "XX", 40);
  closeSync(fd);
  const tampered = readFileSync(f.path, "utf8");
  await assert.rejects(writeAtomicallyInBackground(f.path, list, () => true), { name: "StateFileChanged" });
  assert.equal(readFileSync(f.path, "utf8"), tampered, "not replaced by a copy of changed bytes");
  assert.deepEqual(readdirSync(f.own), ["clients.json"], "no temporary file left");
  writeAtomically(f.path, f.list());
  assert.equal(readFileSync(f.path, "utf8"), f.expected());
});

test("a list handed out before a newer save was put in place still writes its own bytes; no descriptor is left open", () => {
  const f = fleet("overtaken", 40);
  writeAtomically(f.path, f.list());
  const fds = (): number => readdirSync("/proc/self/fd").length;
  const before = fds();
  f.clock.advance(1_000);
  f.reg.secretDelivered("c4");
  const older = f.list();
  const olderText = f.expected();
  assert.ok(spans(older) > 0);
  for (let i = 0; i < 20; i++) {
    f.clock.advance(1_000);
    f.reg.secretDelivered(`c${i}`);
    writeAtomically(f.path, f.list());
    assert.equal(readFileSync(f.path, "utf8"), f.expected());
  }
  // Its spans are in a file replaced 20 times since, still open for it.
  const elsewhere = join(f.own, "older.json");
  writeAtomically(elsewhere, older.pieces);
  assert.equal(readFileSync(elsewhere, "utf8"), olderText);
  older.settle(null);
  assert.equal(fds(), before, "one state file open, as before");
  // And open read-only, so that its file system can be remounted read-only.
  const open = readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === f.path;
    } catch {
      return false;
    }
  });
  assert.equal(open.length, 1);
  const flags = Number.parseInt(/^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${open[0]}`, "utf8"))![1]!, 8);
  assert.equal(flags & 0o3, 0, "open for writing (O_ACCMODE not O_RDONLY)");
});

test("StateSaver with the serialiser's lists: background saves and a save at shutdown each leave exactly buildState's file", async () => {
  const f = fleet("saver", 40);
  const saver = new StateSaver(f.path, () => f.list(), f.clock);
  saver.changed();
  f.clock.advance(SAVE_DELAY_MS);
  await saver.idle();
  assert.equal(readFileSync(f.path, "utf8"), f.expected());
  f.reg.secretDelivered("c1");
  saver.changed();
  f.clock.advance(SAVE_DELAY_MS);
  // Overtaken while it writes: the shutdown save wins, and the background one is not renamed.
  f.reg.secretDelivered("c2");
  saver.saveNow();
  const final = f.expected();
  await saver.idle();
  assert.equal(readFileSync(f.path, "utf8"), final);
  assert.deepEqual(readdirSync(f.own), ["clients.json"]);
  f.reg.secretDelivered("c3");
  saver.saveNow();
  assert.equal(readFileSync(f.path, "utf8"), f.expected());
});

test("StateSaver: a save that copied from a file changed under it is said, and saved again whole (at once at shutdown, soon in the background)", async () => {
  const f = fleet("saver-changed", 10);
  let tamper = false;
  const collect = (): StateList => {
    const list = f.list();
    if (tamper) {
      tamper = false;
      const fd = openSync(f.path, "r+");
      writeSync(fd, "XX", 40);
      closeSync(fd);
    }
    return list;
  };
  const failures: string[] = [];
  const unsubscribe = subscribeFailures(failures);
  try {
    const saver = new StateSaver(f.path, collect, f.clock);
    saver.saveNow();
    assert.equal(readFileSync(f.path, "utf8"), f.expected());
    f.reg.secretDelivered("c1");
    tamper = true;
    saver.saveNow();
    assert.equal(failures.length, 1);
    assert.match(failures[0]!, /changed under the server/);
    assert.equal(readFileSync(f.path, "utf8"), f.expected(), "saved again at once");
    f.reg.secretDelivered("c2");
    tamper = true;
    saver.changed();
    f.clock.advance(SAVE_DELAY_MS);
    await saver.idle();
    assert.equal(failures.length, 2);
    assert.notEqual(readFileSync(f.path, "utf8"), f.expected(), "not replaced by the failed save");
    f.clock.advance(SAVE_DELAY_MS);
    await saver.idle();
    assert.equal(readFileSync(f.path, "utf8"), f.expected(), "saved again without another change");
    assert.deepEqual(readdirSync(f.own), ["clients.json"]);
  } finally {
    unsubscribe();
  }
});

function subscribeFailures(into: string[]): () => void {
  const on = ({ reason }: { reason: string }): void => void into.push(reason);
  events.stateSaveFailed.subscribe(on);
  return () => events.stateSaveFailed.unsubscribe(on);
}
