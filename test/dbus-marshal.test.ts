// Our D-Bus marshaller (src/main/dbus/marshal.ts) against
// @homebridge/dbus-native's, which it replaced for what we send: random
// messages of random signatures and values must come out byte for byte as
// dbus-native writes them, and read back by dbus-native's unmarshaller as
// what went in. What the bus would refuse (a NUL in a string, a bad object
// path or signature, a number out of range, an array beyond 64 MiB) is
// refused before it is sent, saying why, and the connection stays. Arrays
// marshalled once and copied into later messages (marshalArray, for the
// client listings) give the same bytes as the values they were made of,
// wherever they land in a message. A real
// dbus-daemon, which drops a connection that sends it a malformed message,
// carries a large reply between two of our connections; mandos-ctl and
// mandos-monitor read what we write in the other dbus-*.test.ts files.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { MAX_ARRAY_BYTES, MessageTooLarge, marshalArray, marshalMessage, parseSignature, type TypeNode } from "../src/main/dbus/marshal.js";
import { BUS_MAX_MESSAGE_BYTES, BusConnection, type WireMessage } from "../src/main/dbus/connection.js";
import { DBUS_ERROR } from "../src/main/dbus/errors.js";
import { DBUS_DAEMON, DBUS_SEND, startPrivateBus } from "./helpers/dbus.js";
import { missing } from "./helpers/peers.js";
import type { WireValue } from "../src/main/dbus/values.js";
import { random } from "./config-oracle.js";

const require = createRequire(import.meta.url);
const dbusMessage = require("@homebridge/dbus-native/lib/message.js") as {
  marshall(msg: WireMessage): Buffer;
  unmarshall(bytes: Buffer): WireMessage;
};

type Rng = () => number;
const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
const int = (rng: Rng, min: number, max: number): number => min + Math.floor(rng() * (max - min + 1));

const BASIC = ["y", "b", "n", "q", "i", "u", "x", "t", "d", "s", "o", "g"];

/** A random complete type, at most `depth` containers deep. */
function randomType(rng: Rng, depth: number): string {
  const r = rng();
  if (depth === 0 || r < 0.45) return pick(rng, BASIC);
  if (r < 0.6) return "v";
  if (r < 0.75) return "a" + randomType(rng, depth - 1);
  if (r < 0.88) return `a{${pick(rng, BASIC)}${randomType(rng, depth - 1)}}`;
  const n = int(rng, 1, 4);
  return "(" + Array.from({ length: n }, () => randomType(rng, depth - 1)).join("") + ")";
}

const TEXTS = ["", "a", "Mandos", "é", "日本語", "😀", "tab\there", "x".repeat(300), "quote\"'"];

function randomString(rng: Rng): string {
  if (rng() < 0.5) return pick(rng, TEXTS);
  return Array.from({ length: int(rng, 0, 20) }, () => String.fromCodePoint(int(rng, 1, rng() < 0.8 ? 0x7f : 0x2fff))).join("");
}

function randomPath(rng: Rng): string {
  if (rng() < 0.2) return "/";
  return Array.from({ length: int(rng, 1, 4) }, () => "/" + pick(rng, ["clients", "se", "recompile", "Mandos", "a_1", "X9"])).join("");
}

/** A random value of the one complete type `signature`. */
function randomValue(rng: Rng, signature: string): WireValue {
  return valueOf(rng, parseSignature(signature)[0]!);
}

function valueOf(rng: Rng, n: TypeNode): WireValue {
  switch (n.code) {
    case "y": return pick(rng, [0, 255, int(rng, 0, 255)]);
    case "b": return rng() < 0.5;
    case "n": return pick(rng, [-0x8000, 0x7fff, int(rng, -0x8000, 0x7fff)]);
    case "q": return pick(rng, [0, 0xffff, int(rng, 0, 0xffff)]);
    case "i": return pick(rng, [-0x80000000, 0x7fffffff, int(rng, -0x80000000, 0x7fffffff)]);
    case "u": return pick(rng, [0, 0xffffffff, int(rng, 0, 0xffffffff)]);
    case "x": return pick(rng, [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, -1, int(rng, -1e15, 1e15)]);
    case "t": return pick(rng, [0, Number.MAX_SAFE_INTEGER, 2 ** 32, int(rng, 0, 1e15)]);
    case "d": return pick(rng, [0, -1.5, 1e300, Math.PI, (rng() - 0.5) * 1e6]);
    case "s": return randomString(rng);
    case "o": return randomPath(rng);
    case "g": return randomType(rng, 2);
    case "v": {
      const inner = randomType(rng, 2);
      return [inner, randomValue(rng, inner)];
    }
    case "a": {
      const element = n.children[0]!;
      if (element.code === "y" && rng() < 0.5) return Buffer.from(Array.from({ length: int(rng, 0, 40) }, () => int(rng, 0, 255)));
      return Array.from({ length: int(rng, 0, rng() < 0.9 ? 4 : 40) }, () => valueOf(rng, element));
    }
    default:
      return n.children.map((child) => valueOf(rng, child));
  }
}

function randomMessage(rng: Rng, serial: number): WireMessage {
  const types = Array.from({ length: int(rng, 0, 4) }, () => randomType(rng, 3));
  const signature = types.join("");
  const msg: WireMessage = { type: int(rng, 1, 4), serial, flags: int(rng, 0, 3) };
  if (rng() < 0.8) msg.path = randomPath(rng);
  if (rng() < 0.8) msg.interface = pick(rng, ["se.recompile.Mandos.Client", "org.freedesktop.DBus.Properties"]);
  if (rng() < 0.8) msg.member = pick(rng, ["GetManagedObjects", "PropertiesChanged", "Hello"]);
  if (rng() < 0.2) msg.errorName = "org.freedesktop.DBus.Error.Failed";
  if (rng() < 0.5) msg.replySerial = int(rng, 1, 0xffffffff);
  if (rng() < 0.5) msg.destination = `:1.${int(rng, 0, 9999)}`;
  if (signature !== "") {
    msg.signature = signature;
    msg.body = types.map((t) => randomValue(rng, t));
  }
  return msg;
}

test("2,000 random messages, and one of all their values, come out byte for byte as dbus-native writes them", () => {
  const seed = Number(process.env.MANDOS_TS_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const rng = random(seed);
  let previous: { ours: Buffer; theirs: Buffer } | null = null;
  const everything: WireValue[] = [];
  for (let i = 1; i <= 2_000; i++) {
    const msg = randomMessage(rng, i);
    const ours = marshalMessage(msg);
    const theirs = dbusMessage.marshall(msg);
    assert.ok(ours.equals(theirs), `message ${i} (MANDOS_TS_TEST_SEED=${seed} replays it): ${JSON.stringify(msg).slice(0, 300)}`);
    // Each message's bytes are its own: the next one, written in the same scratch buffer, leaves them be.
    assert.ok(previous === null || previous.ours.equals(previous.theirs), `message ${i - 1} changed by message ${i}`);
    previous = { ours, theirs };
    if (msg.signature === undefined) continue; // dbus-native's unmarshall() reads a body only
    const back = dbusMessage.unmarshall(ours);
    assert.equal(back.serial, i);
    assert.equal(back.signature, msg.signature);
    assert.equal(back.path, msg.path);
    assert.equal(back.member, msg.member);
    const types = parseSignature(msg.signature);
    msg.body!.forEach((value, k) => everything.push([types[k]!.signature, value]));
  }
  // All of their values in one message, past the first buffer's 64 KiB: measured, then written into a buffer of its size.
  const big: WireMessage = { type: 2, serial: 1, replySerial: 1, signature: "av", body: [everything] };
  const ours = marshalMessage(big);
  assert.ok(ours.length > 256 * 1024, `${ours.length} bytes`);
  assert.ok(ours.equals(dbusMessage.marshall(big)), `the message of every value (MANDOS_TS_TEST_SEED=${seed} replays it)`);
});

/**
 * `value` of type `n` with some of its arrays of 8-aligned elements (and
 * some inside those) replaced by the same marshalled once; `made` counts them.
 */
function premarshalled(rng: Rng, n: TypeNode, value: WireValue, made: { count: number }): WireValue {
  if (n.code === "v") {
    const [signature, inner] = value as [string, WireValue];
    return [signature, premarshalled(rng, parseSignature(signature)[0]!, inner, made)];
  }
  if (n.code === "a") {
    if (Buffer.isBuffer(value)) return value;
    const element = n.children[0]!;
    const items = (value as WireValue[]).map((item) => premarshalled(rng, element, item, made));
    if (element.alignment !== 8 || rng() < 0.3) return items;
    made.count++;
    return marshalArray(element.signature, items);
  }
  if (n.code === "(" || n.code === "{") return (value as WireValue[]).map((item, i) => premarshalled(rng, n.children[i]!, item, made));
  return value;
}

test("arrays marshalled once give the same bytes as their values, wherever they land in a message", () => {
  const seed = Number(process.env.MANDOS_TS_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const rng = random(seed);
  const made = { count: 0 };
  for (let i = 1; i <= 2_000; i++) {
    const msg = randomMessage(rng, i);
    if (msg.signature === undefined) continue;
    const types = parseSignature(msg.signature);
    const copied: WireMessage = { ...msg, body: msg.body!.map((v, k) => premarshalled(rng, types[k]!, v, made)) };
    assert.ok(marshalMessage(copied).equals(marshalMessage(msg)), `message ${i} (MANDOS_TS_TEST_SEED=${seed} replays it): ${JSON.stringify(msg).slice(0, 300)}`);
  }
  assert.ok(made.count > 500, `only ${made.count} arrays marshalled once`);

  // One client's properties, as the listings keep them, behind headers of every length.
  const props: WireValue[] = [["Name", ["s", "foo"]], ["Enabled", ["b", true]], ["Interval", ["t", 120_000]], ["Host", ["s", "é"]]];
  const kept = marshalArray("{sv}", props);
  for (let pad = 0; pad < 16; pad++) {
    const head = "x".repeat(pad);
    const plain: WireMessage = { type: 2, serial: 1, signature: "sa{oa{sv}}", body: [head, [["/a", props], ["/b", []]]] };
    const copy: WireMessage = { ...plain, body: [head, [["/a", kept], ["/b", []]]] };
    assert.ok(marshalMessage(copy).equals(marshalMessage(plain)), `behind ${pad} characters`);
  }

  // Only 8-aligned elements can be kept; a kept array goes only where its elements' type is asked for.
  assert.throws(() => marshalArray("s", ["x"]), /cannot keep an array of "s" marshalled: its elements are not 8-aligned/);
  assert.throws(() => marshalArray("{sv}", [["x", 1]]), /"v" needs \[signature, value\]/);
  assert.throws(
    () => marshalMessage({ type: 2, serial: 1, signature: "a{ss}", body: [kept] }),
    /"a\{ss\}" needs an array of "\{ss\}", got "\{sv\}"/,
  );
});

test("a value read back is the value written: strings, integers at their limits, bytes, dictionaries", () => {
  const body: WireValue[] = [
    "日本語 😀",
    -0x80000000,
    0xffffffff,
    Number.MAX_SAFE_INTEGER,
    -Number.MAX_SAFE_INTEGER,
    Buffer.from([0, 1, 255]),
    [["Name", ["s", "foo"]], ["Enabled", ["b", true]], ["Interval", ["t", 120_000]]],
  ];
  const msg: WireMessage = { type: 2, serial: 7, replySerial: 3, signature: "siutxaya{sv}", body };
  const back = dbusMessage.unmarshall(marshalMessage(msg)).body as unknown[];
  assert.equal(back[0], "日本語 😀");
  assert.equal(back[1], -0x80000000);
  assert.equal(back[2], 0xffffffff);
  assert.equal(Number(back[3]), Number.MAX_SAFE_INTEGER);
  assert.equal(Number(back[4]), -Number.MAX_SAFE_INTEGER);
  assert.deepEqual([...(back[5] as Buffer)], [0, 1, 255]);
  const dictionary = back[6] as [string, [unknown, unknown[]]][];
  assert.deepEqual(dictionary.map(([k]) => k), ["Name", "Enabled", "Interval"]);
  assert.deepEqual(dictionary[0]![1][1], ["foo"]);
  assert.deepEqual(dictionary[1]![1][1], [true]);
  assert.equal(Number(dictionary[2]![1][1][0]), 120_000);
});

test("what the bus would refuse is refused before it is sent, saying why", () => {
  const send = (signature: string, value: WireValue): void => {
    marshalMessage({ type: 4, serial: 1, path: "/", interface: "a.b", member: "C", signature, body: [value] });
  };
  assert.throws(() => send("s", "a\0b"), /"s" with a NUL character/);
  assert.throws(() => send("o", "/clients/foo-bar"), /"o" needs a valid object path/);
  assert.throws(() => send("o", "/clients/"), /valid object path/);
  assert.throws(() => send("o", "clients"), /valid object path/);
  assert.throws(() => send("u", -1), /"u" out of range/);
  assert.throws(() => send("y", 256), /"y" out of range/);
  assert.throws(() => send("i", 1.5), /"i" needs an integer/);
  assert.throws(() => send("t", 2 ** 53), /"t" out of range/);
  assert.throws(() => send("d", Number.NaN), /"d" needs a finite number/);
  assert.throws(() => send("b", "yes"), /"b" needs a boolean/);
  assert.throws(() => send("s", 5), /"s" needs a string/);
  assert.throws(() => send("v", ["ss", "x"]), /one complete type/);
  assert.throws(() => send("v", "x"), /"v" needs \[signature, value\]/);
  assert.throws(() => send("(si)", ["x"]), /needs an array of 2 values/);
  assert.throws(() => send("as", "x"), /"as" needs an array/);
  assert.throws(() => send("g", "a{vs}"), /dict entry key not of a basic type/);
  assert.throws(() => send("h", 0), /cannot write type "h"/);
  for (const bad of ["a", "(", "()", "{ss}", "a{s}", "a{sss}", "z", "(s", "a".repeat(40) + "s".repeat(220)]) {
    assert.throws(() => parseSignature(bad), Error, bad);
  }
  assert.throws(
    () => marshalMessage({ type: 2, serial: 1, signature: "ss", body: ["x"] }),
    /a body of 1 values for the signature "ss"/,
  );
  assert.throws(() => marshalMessage({ type: 4, serial: 0 }), /needs a serial/);
  assert.throws(() => send("ay", Buffer.alloc(MAX_ARRAY_BYTES + 1)), /beyond D-Bus's 67108864/);
  send("ay", Buffer.alloc(1024)); // and a sane one goes
  // A limit of its own: stopped as the message grows past it.
  const long: WireMessage = { type: 4, serial: 1, path: "/", interface: "a.b", member: "C", signature: "as", body: [Array.from({ length: 100 }, () => "x".repeat(100))] };
  assert.throws(() => marshalMessage(long, 5_000), (e: unknown) => e instanceof MessageTooLarge && e.limit === 5_000);
  assert.ok(marshalMessage(long, 20_000).length > 10_000);
  // The limit is on the bytes, to the byte, also past the first buffer's 64 KiB.
  const wide: WireMessage = { ...long, body: [Array.from({ length: 3_000 }, (_, i) => `é${i}`.repeat(20))] };
  const exact = marshalMessage(wide).length;
  assert.ok(exact > 128 * 1024);
  assert.equal(marshalMessage(wide, exact).length, exact);
  assert.throws(() => marshalMessage(wide, exact - 1), MessageTooLarge);
});

test("through a real dbus-daemon: a 10 MB reply arrives whole, and a refused message leaves the connection up", { skip: missing(DBUS_DAEMON, DBUS_SEND), timeout: 60_000 }, async () => {
  const bus = await startPrivateBus();
  const server = await BusConnection.connect(bus.address);
  const caller = await BusConnection.connect(bus.address);
  try {
    // 10,000 entries shaped as GetManagedObjects' are, about 10 MB.
    const big: WireValue = Array.from({ length: 10_000 }, (_, i) => [
      `/clients/c${i}`,
      [["se.recompile.Mandos.Client", [["Name", ["s", `c${i} é`]], ["Interval", ["t", 120_000 + i]], ["Enabled", ["b", i % 2 === 0]], ["Secret", ["ay", Buffer.alloc(900, i % 256)]]]]],
    ]);
    server.onMethodCall((call) => server.reply(call, "a{oa{sa{sv}}}", [big]));
    const [reply] = (await caller.call({ destination: server.uniqueName, path: "/", interface: "org.freedesktop.DBus.ObjectManager", member: "GetManagedObjects" }, 30_000)) as [unknown[][]];
    assert.equal(reply.length, 10_000);
    const last = reply[9_999] as [string, [string, [string, [unknown, unknown[]]][]][]];
    assert.equal(last[0], "/clients/c9999");
    const props = last[1][0]![1];
    assert.deepEqual(props[0]![1][1], ["c9999 é"]);
    assert.equal(Number(props[1]![1][1][0]), 129_999);
    assert.deepEqual(props[2]![1][1], [false]);
    assert.equal((props[3]![1][1][0] as Buffer).length, 900);

    // What the bus would refuse is not sent; the caller is told, and both connections stay.
    assert.throws(() => server.signal("/", "a.b", "C", "s", ["a\0b"]), (e: Error & { code?: string }) => e.code === DBUS_ERROR.marshal);
    assert.throws(() => server.signal("/no-dash", "a.b", "C", "", []), /valid object path/);
    // Longer than the system bus takes (it would drop us): not sent either.
    assert.throws(
      () => server.signal("/", "a.b", "C", "ay", [Buffer.alloc(BUS_MAX_MESSAGE_BYTES)]),
      (e: Error & { code?: string }) => e.code === DBUS_ERROR.tooLarge && /more than the bus's 33554432 bytes/.test(e.message),
    );
    const [id] = await server.callBus("GetId", "", [], 5_000);
    assert.match(String(id), /^[0-9a-f]{32}$/);
    assert.equal(server.closed, false);
  } finally {
    server.close();
    caller.close();
    await bus.stop();
  }
});

// Found by session 56's scale audit: a caller that polled for our name and
// called at once (busctl, a script right after a start) was never answered:
// its call came before the service had set its handler, and was dropped.
test("through a real dbus-daemon: a call that comes before the handler is set is answered once it is", { skip: missing(DBUS_DAEMON, DBUS_SEND), timeout: 60_000 }, async () => {
  const bus = await startPrivateBus();
  const server = await BusConnection.connect(bus.address);
  const caller = await BusConnection.connect(bus.address);
  try {
    const early = caller.call({ destination: server.uniqueName, path: "/", interface: "org.freedesktop.DBus.Peer", member: "Ping" }, 10_000);
    // Its turn through the bus: a round trip of the server's own later.
    await server.callBus("GetId", "", [], 5_000);
    server.onMethodCall((call) => server.reply(call, "s", [`answered ${call.member ?? ""}`]));
    assert.deepEqual(await early, ["answered Ping"]);
  } finally {
    server.close();
    caller.close();
    await bus.stop();
  }
});
