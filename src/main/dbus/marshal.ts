// Writes the D-Bus messages we send, little-endian, into one buffer
// (docs/DBUS.md, "Marshalling"): @homebridge/dbus-native's marshaller
// makes a Buffer for every value and copies each array again into its
// parent, and answering mandos-ctl's GetManagedObjects for 10,000 clients
// with it held the main thread for seconds. The bytes are the same as
// dbus-native's (a test compares them); what the bus would refuse (and
// disconnect us for) is refused here instead, with the reason.

import type { WireMessage } from "./connection.js";
import { MarshalledArray, type WireValue } from "./values.js";

/** The D-Bus specification's limits ("Valid Signatures", "Message Format"). */
export const MAX_ARRAY_BYTES = 64 * 1024 * 1024;
export const MAX_MESSAGE_BYTES = 128 * 1024 * 1024;

const MAX_SIGNATURE_LENGTH = 255;
const MAX_NESTING = 32;

/** A message that would pass the limit it was written for; `bytes` is how far it got. */
export class MessageTooLarge extends Error {
  constructor(readonly limit: number, readonly bytes: number) {
    super(`a message of more than ${limit} bytes`);
    this.name = "MessageTooLarge";
  }
}

/** One complete type of a signature. */
export interface TypeNode {
  readonly code: string;
  /** The type's own signature ("a{sv}"). */
  readonly signature: string;
  readonly children: readonly TypeNode[];
  readonly alignment: number;
}

const ALIGNMENT: Readonly<Record<string, number>> = {
  y: 1, g: 1, v: 1, n: 2, q: 2, b: 4, i: 4, u: 4, s: 4, o: 4, a: 4, h: 4, x: 8, t: 8, d: 8, "(": 8, "{": 8,
};
const BASIC = "ybnqiuxtdsogh";

const parsed = new Map<string, readonly TypeNode[]>();

/** The complete types of `signature`; throws when it is not a valid one. */
export function parseSignature(signature: string): readonly TypeNode[] {
  const known = parsed.get(signature);
  if (known) return known;
  if (signature.length > MAX_SIGNATURE_LENGTH) throw new Error(`signature longer than ${MAX_SIGNATURE_LENGTH}: "${signature}"`);
  let at = 0;
  const one = (depth: number): TypeNode => {
    if (depth > MAX_NESTING * 2) throw new Error(`signature nested too deep: "${signature}"`);
    const start = at;
    const code = signature[at++];
    if (code === undefined) throw new Error(`signature ends inside a type: "${signature}"`);
    const node = (children: TypeNode[], alignment: number): TypeNode => ({ code, signature: signature.slice(start, at), children, alignment });
    if (code === "a") return node([one(depth + 1)], 4);
    if (code === "(") {
      const children: TypeNode[] = [];
      while (signature[at] !== ")") {
        if (at >= signature.length) throw new Error(`unclosed struct in signature "${signature}"`);
        children.push(one(depth + 1));
      }
      at++;
      if (children.length === 0) throw new Error(`empty struct in signature "${signature}"`);
      return node(children, 8);
    }
    if (code === "{") {
      // Only as an array's element: checked by the caller below.
      const key = one(depth + 1);
      if (!BASIC.includes(key.code)) throw new Error(`dict entry key not of a basic type in "${signature}"`);
      const value = one(depth + 1);
      if (signature[at++] !== "}") throw new Error(`dict entry of other than two types in "${signature}"`);
      return node([key, value], 8);
    }
    if (code === "v" || BASIC.includes(code)) return node([], ALIGNMENT[code]!);
    throw new Error(`unknown type "${code}" in signature "${signature}"`);
  };
  const types: TypeNode[] = [];
  while (at < signature.length) types.push(one(0));
  const check = (node: TypeNode, inArray: boolean): void => {
    if (node.code === "{" && !inArray) throw new Error(`dict entry outside an array in "${signature}"`);
    for (const child of node.children) check(child, node.code === "a");
  };
  for (const t of types) check(t, false);
  if (parsed.size < 1_000) parsed.set(signature, types);
  return types;
}

const OBJECT_PATH = /^\/$|^(\/[A-Za-z0-9_]+)+$/;

/**
 * Where every message is written first: one buffer for all, as marshalling
 * is synchronous. One that outgrows it is measured, then written again
 * into a buffer of its exact size (`marshalInto`).
 */
const scratch = Buffer.allocUnsafe(64 * 1024);

/** Thrown, not an error, when a message outgrows the scratch buffer. */
const OUTGROWN = Symbol("outgrown");

/** Writes into `buf`; offsets are the message's, so alignment is the message's. */
class Writer {
  at = 0;

  constructor(
    readonly limit: number,
    readonly buf: Buffer,
  ) {}

  /** Makes sure `n` more bytes fit. */
  protected room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    // Stopped when it grows past the limit, not after all of it is written.
    if (this.at > this.limit) throw new MessageTooLarge(this.limit, this.at);
    throw OUTGROWN;
  }

  align(n: number): void {
    const pad = (n - (this.at % n)) % n;
    if (pad === 0) return;
    this.room(pad);
    for (let i = 0; i < pad; i++) this.buf[this.at++] = 0;
  }

  byte(v: number): void {
    this.room(1);
    this.buf[this.at++] = v;
  }

  uint32(v: number): void {
    this.align(4);
    this.room(4);
    this.putUint32(v, this.at);
    this.at += 4;
  }

  /** Little-endian at `at`, which is already written (a length filled in afterwards). */
  putUint32(v: number, at: number): void {
    const b = this.buf;
    b[at] = v & 0xff;
    b[at + 1] = (v >>> 8) & 0xff;
    b[at + 2] = (v >>> 16) & 0xff;
    b[at + 3] = v >>> 24;
  }

  double(v: number): void {
    this.align(8);
    this.room(8);
    this.buf.writeDoubleLE(v, this.at);
    this.at += 8;
  }

  /**
   * A string ("s", "o"): its byte length, UTF-8, NUL. Most of ours are
   * short and ASCII, which a loop writes faster than Buffer.write's call.
   */
  string(v: string): void {
    this.align(4);
    // Its worst case fits, or its exact length must (a buffer of the message's size).
    if (this.at + 4 + v.length * 3 + 1 > this.buf.length) this.room(4 + Buffer.byteLength(v, "utf8") + 1);
    const b = this.buf;
    const start = this.at + 4;
    let at = start;
    let i = 0;
    for (; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (c >= 0x80) break;
      b[at++] = c;
    }
    if (i < v.length) at += b.write(v.slice(i), at, "utf8");
    this.putUint32(at - start, this.at);
    b[at] = 0;
    this.at = at + 1;
  }

  /** A signature ("g"), already checked to be ASCII: its length in one byte, the text, NUL. */
  signature(v: string): void {
    this.room(v.length + 2);
    const b = this.buf;
    b[this.at++] = v.length;
    for (let i = 0; i < v.length; i++) b[this.at++] = v.charCodeAt(i);
    b[this.at++] = 0;
  }

  bytes(v: Buffer): void {
    this.room(v.length);
    this.buf.set(v, this.at);
    this.at += v.length;
  }
}

/** Counts what a Writer would write, checking the same values, writing nothing. */
class Sizer extends Writer {
  constructor(limit: number) {
    super(limit, scratch);
  }

  #advance(n: number): void {
    this.at += n;
    if (this.at > this.limit) throw new MessageTooLarge(this.limit, this.at);
  }

  protected override room(): void {}

  override align(n: number): void {
    this.at += (n - (this.at % n)) % n;
  }

  override byte(): void {
    this.#advance(1);
  }

  override uint32(): void {
    this.align(4);
    this.#advance(4);
  }

  override putUint32(): void {}

  override double(): void {
    this.align(8);
    this.#advance(8);
  }

  override string(v: string): void {
    this.align(4);
    this.#advance(4 + Buffer.byteLength(v, "utf8") + 1);
  }

  override signature(v: string): void {
    this.#advance(v.length + 2);
  }

  override bytes(v: Buffer): void {
    this.#advance(v.length);
  }
}

/**
 * What `fill` writes, in a buffer of its own. Written first into the
 * scratch buffer and copied out (from Node's pool when small: the socket
 * may keep the bytes until they are sent); what outgrows it is measured
 * and written again into a buffer of its size, allocated once (doubled
 * as it grew, a 17 MB listing of 10,000 clients allocated ~64 MB at each
 * call, left to the collector).
 */
function marshalInto(limit: number, fill: (w: Writer) => void): Buffer {
  const first = new Writer(limit, scratch);
  try {
    fill(first);
    return Buffer.from(scratch.subarray(0, first.at));
  } catch (e) {
    if (e !== OUTGROWN) throw e;
  }
  const sizer = new Sizer(limit);
  fill(sizer);
  const w = new Writer(limit, Buffer.allocUnsafe(sizer.at));
  try {
    fill(w);
  } catch (e) {
    if (e !== OUTGROWN) throw e;
  }
  if (w.at !== w.buf.length) throw new Error(`marshalled ${w.at} bytes where ${w.buf.length} were measured`);
  return w.buf;
}

function fail(what: string, value: unknown): never {
  let shown: string;
  try {
    shown = Buffer.isBuffer(value) ? `a ${value.length}-byte buffer` : JSON.stringify(value) ?? String(value);
  } catch {
    shown = String(value);
  }
  throw new Error(`${what}, got ${shown.length > 80 ? shown.slice(0, 77) + "..." : shown}`);
}

function integer(value: WireValue, code: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value)) fail(`"${code}" needs an integer`, value);
  if (value < min || value > max) fail(`"${code}" out of range`, value);
  return value;
}

function text(value: WireValue, code: string): string {
  if (typeof value !== "string") fail(`"${code}" needs a string`, value);
  if (value.includes("\0")) fail(`"${code}" with a NUL character`, value);
  return value;
}

function write(w: Writer, node: TypeNode, value: WireValue): void {
  switch (node.code) {
    case "y":
      w.byte(integer(value, "y", 0, 0xff));
      return;
    case "b":
      if (value !== true && value !== false && value !== 0 && value !== 1) fail(`"b" needs a boolean`, value);
      w.uint32(value ? 1 : 0);
      return;
    case "n":
    case "q": {
      const v = node.code === "n" ? integer(value, "n", -0x8000, 0x7fff) : integer(value, "q", 0, 0xffff);
      w.align(2);
      w.byte(v & 0xff);
      w.byte((v >> 8) & 0xff);
      return;
    }
    case "i":
      w.uint32(integer(value, "i", -0x80000000, 0x7fffffff) >>> 0);
      return;
    case "u":
      w.uint32(integer(value, "u", 0, 0xffffffff));
      return;
    case "x":
    case "t": {
      const v = node.code === "x"
        ? integer(value, "x", -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)
        : integer(value, "t", 0, Number.MAX_SAFE_INTEGER);
      // Two's complement in two halves; exact, as |v| < 2^53.
      const high = Math.floor(v / 0x1_0000_0000);
      w.align(8);
      w.uint32(v - high * 0x1_0000_0000);
      w.uint32(high >>> 0);
      return;
    }
    case "d": {
      if (typeof value !== "number" || !Number.isFinite(value)) fail(`"d" needs a finite number`, value);
      w.double(value);
      return;
    }
    case "s":
      w.string(text(value, "s"));
      return;
    case "o": {
      const path = text(value, "o");
      if (!OBJECT_PATH.test(path)) fail(`"o" needs a valid object path`, value);
      w.string(path);
      return;
    }
    case "g": {
      const signature = text(value, "g");
      parseSignature(signature);
      w.signature(signature);
      return;
    }
    case "v": {
      if (!Array.isArray(value) || value.length !== 2) fail(`"v" needs [signature, value]`, value);
      const [signature, inner] = value as [WireValue, WireValue];
      if (typeof signature !== "string") fail(`"v" needs a signature string first`, signature);
      writeVariant(w, signature, inner);
      return;
    }
    case "a": {
      const element = node.children[0]!;
      if (value instanceof MarshalledArray) {
        if (value.element !== element.signature) fail(`"${node.signature}" needs an array of "${element.signature}"`, value.element);
        // Its elements are 8-aligned (marshalArray): their bytes do not depend on where they start.
        w.uint32(value.contents.length);
        w.align(8);
        w.bytes(value.contents);
        return;
      }
      if (!Array.isArray(value) && !Buffer.isBuffer(value)) fail(`"${node.signature}" needs an array`, value);
      w.uint32(0);
      const lengthAt = w.at - 4;
      w.align(element.alignment);
      const start = w.at;
      if (Buffer.isBuffer(value) && element.code === "y") w.bytes(value);
      else for (const item of value as ArrayLike<WireValue> & Iterable<WireValue>) write(w, element, item);
      const length = w.at - start;
      if (length > MAX_ARRAY_BYTES) throw new Error(`an array of ${length} bytes, beyond D-Bus's ${MAX_ARRAY_BYTES}`);
      w.putUint32(length, lengthAt);
      return;
    }
    case "(":
    case "{": {
      if (!Array.isArray(value) || value.length !== node.children.length) {
        fail(`"${node.code}" needs an array of ${node.children.length} values`, value);
      }
      w.align(8);
      for (let i = 0; i < node.children.length; i++) write(w, node.children[i]!, value[i]!);
      return;
    }
    default:
      // "h": a file descriptor, which we never send.
      throw new Error(`cannot write type "${node.code}"`);
  }
}

/** A variant's signature (one complete type) and its value. */
function writeVariant(w: Writer, signature: string, value: WireValue): void {
  const types = parseSignature(signature);
  if (types.length !== 1) fail(`"v" needs the signature of one complete type`, signature);
  w.signature(signature);
  write(w, types[0]!, value);
}

/** The header fields in dbus-native's order, with their codes and types. */
const HEADER_FIELDS = [
  ["path", 1, "o"],
  ["interface", 2, "s"],
  ["member", 3, "s"],
  ["errorName", 4, "s"],
  ["replySerial", 5, "u"],
  ["destination", 6, "s"],
  ["sender", 7, "s"],
  ["signature", 8, "g"],
] as const;

const PROTOCOL_VERSION = 1;
const METHOD_CALL = 1;

/**
 * `msg` as bytes on the wire; throws, saying why, for what the bus would
 * refuse, and MessageTooLarge for a message longer than `limit`.
 */
export function marshalMessage(msg: WireMessage, limit = MAX_MESSAGE_BYTES): Buffer {
  const serial = msg.serial;
  if (!serial) throw new Error("a message needs a serial");
  return marshalInto(Math.min(limit, MAX_MESSAGE_BYTES), (w) => writeMessage(w, msg, serial));
}

function writeMessage(w: Writer, msg: WireMessage, serial: number): void {
  w.byte("l".charCodeAt(0));
  w.byte(msg.type || METHOD_CALL);
  w.byte(msg.flags ?? 0);
  w.byte(PROTOCOL_VERSION);
  w.uint32(0); // the body's length, below
  w.uint32(serial);
  w.uint32(0); // the header fields' length, below
  w.align(8);
  const fieldsStart = w.at;
  for (const [name, code, signature] of HEADER_FIELDS) {
    const value = msg[name];
    if (!value) continue;
    w.align(8);
    w.byte(code);
    w.signature(signature);
    write(w, parseSignature(signature)[0]!, value);
  }
  w.putUint32(w.at - fieldsStart, 12);
  w.align(8);
  if (msg.signature && msg.body) {
    const types = parseSignature(msg.signature);
    if (types.length !== msg.body.length) {
      throw new Error(`a body of ${msg.body.length} values for the signature "${msg.signature}"`);
    }
    const bodyStart = w.at;
    for (let i = 0; i < types.length; i++) write(w, types[i]!, msg.body[i]!);
    w.putUint32(w.at - bodyStart, 4);
  }
  if (w.at > w.limit) throw new MessageTooLarge(w.limit, w.at);
}

/**
 * An array's elements of type `element` marshalled once, to be sent in
 * messages as often as wanted by copying (MarshalledArray). The elements
 * must be 8-aligned (dict entries, structs), so that their bytes are the
 * same wherever the array begins; throws as marshalMessage does.
 */
export function marshalArray(element: string, items: readonly WireValue[]): MarshalledArray {
  const [array, ...more] = parseSignature(`a${element}`);
  const type = array!.children[0]!;
  if (more.length > 0 || type.alignment !== 8) throw new Error(`cannot keep an array of "${element}" marshalled: its elements are not 8-aligned`);
  return keptArray(element, (w) => {
    for (const item of items) write(w, type, item);
  });
}

/** An array's elements as `fill` writes them, kept (MarshalledArray); within D-Bus's limit for an array. */
function keptArray(element: string, fill: (w: Writer) => void): MarshalledArray {
  const contents = marshalInto(Infinity, (w) => {
    fill(w);
    if (w.at > MAX_ARRAY_BYTES) throw new Error(`an array of ${w.at} bytes, beyond D-Bus's ${MAX_ARRAY_BYTES}`);
  });
  return new MarshalledArray(element, contents);
}

/** Writes one "{sv}" entry: a property's name, its value's signature (one complete type), the value. */
export type PropertyWriter = (name: string, signature: string, value: WireValue) => void;

/**
 * An "a{sv}" marshalled once (MarshalledArray), its entries written
 * straight from what `fill` hands the writer: the same bytes as
 * marshalArray("{sv}", entries), without the entries' arrays, so a listing
 * of 10,000 clients makes no value tree for the collector to walk.
 */
export function marshalProperties(fill: (property: PropertyWriter) => void): MarshalledArray {
  return keptArray("{sv}", (w) => {
    fill((name, signature, value) => {
      w.align(8);
      w.string(text(name, "s"));
      writeVariant(w, signature, value);
    });
  });
}
