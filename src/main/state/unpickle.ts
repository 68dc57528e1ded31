// A reader for the Python pickles the reference server writes
// (clients.pickle: `pickle.dump(..., protocol=2)`, from Python 2 or 3), that
// runs no code: it knows the opcodes of protocols 0-3 that plain data uses
// (Python's Lib/pickletools.py documents each), and only the three globals
// the reference's state holds, each turned into a plain value:
//   _codecs.encode(str, "latin1")   bytes, as Python 3 pickles them in protocol 2
//   datetime.datetime(state[, tz])  a time (the reference stores naive UTC)
//   datetime.timedelta(d, s, us)    a duration
// Any other global, or an opcode that builds objects (BUILD, INST, OBJ,
// NEWOBJ, persistent IDs, extensions), is refused with PickleError.

import { CodedError } from "../../errors.js";

export class PickleError extends CodedError<"PICKLE_UNSUPPORTED"> {
  constructor(message: string) {
    super("PICKLE_UNSUPPORTED", message);
  }
}

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

export class PyDatetime {
  /** Milliseconds since the epoch, reading the naive value as UTC. */
  constructor(readonly ms: number) {}
}

export class PyTimedelta {
  constructor(readonly ms: number) {}
}

/** A dict; bytes keys (Python 2's str) are read as UTF-8, as the reference's restore does. */
export type PyDict = Map<string, PyValue>;

export type PyValue = null | boolean | number | bigint | string | Buffer | PyValue[] | PyTuple | PyDict | PyDatetime | PyTimedelta | PyGlobal;

class PyGlobal {
  constructor(readonly name: string) {}
}

const ALLOWED_GLOBALS = new Set(["_codecs encode", "datetime datetime", "datetime timedelta", "__builtin__ bytearray", "builtins bytearray"]);

const MARK = Symbol("mark");
type StackItem = PyValue | typeof MARK;

/** Parses one pickle; throws PickleError on anything it does not accept. */
export function unpickle(data: Buffer): PyValue {
  let pos = 0;
  const stack: StackItem[] = [];
  const memo = new Map<number, PyValue>();
  const need = (n: number): void => {
    if (pos + n > data.length) throw new PickleError("truncated pickle");
  };
  const u8 = (): number => (need(1), data[pos++]!);
  const u16 = (): number => (need(2), (pos += 2), data.readUInt16LE(pos - 2));
  const i32 = (): number => (need(4), (pos += 4), data.readInt32LE(pos - 4));
  const u32 = (): number => (need(4), (pos += 4), data.readUInt32LE(pos - 4));
  const bytes = (n: number): Buffer => (need(n), (pos += n), data.subarray(pos - n, pos));
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) throw new PickleError("truncated pickle");
    const text = data.toString("latin1", pos, end);
    pos = end + 1;
    return text;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) throw new PickleError("stack underflow");
    return v;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw new PickleError("stack underflow");
    return v;
  };
  const popMark = (): PyValue[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) throw new PickleError("no mark");
    const items = stack.splice(i) as PyValue[];
    items.shift();
    return items;
  };
  const setItems = (dict: PyValue, items: PyValue[]): void => {
    if (!(dict instanceof Map)) throw new PickleError("SETITEM on a non-dict");
    for (let i = 0; i + 1 < items.length; i += 2) dict.set(dictKey(items[i]!), items[i + 1]!);
  };
  const append = (list: PyValue, items: PyValue[]): void => {
    if (!Array.isArray(list)) throw new PickleError("APPEND on a non-list");
    list.push(...items);
  };

  for (;;) {
    const op = String.fromCharCode(u8());
    switch (op) {
      case "\x80": // PROTO
        if (u8() > 3) throw new PickleError("pickle protocol above 3");
        break;
      case ".": // STOP
        return pop();
      case "(": stack.push(MARK); break;
      case "}": stack.push(new Map()); break;
      case "]": stack.push([]); break;
      case ")": stack.push(new PyTuple([])); break;
      case "d": stack.push(dictOf(popMark())); break;
      case "l": stack.push(popMark()); break;
      case "t": stack.push(new PyTuple(popMark())); break;
      case "\x85": stack.push(new PyTuple([pop()])); break;
      case "\x86": { const b = pop(); stack.push(new PyTuple([pop(), b])); break; }
      case "\x87": { const c = pop(); const b = pop(); stack.push(new PyTuple([pop(), b, c])); break; }
      case "s": { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; }
      case "u": { const items = popMark(); setItems(top(), items); break; }
      case "a": { const v = pop(); append(top(), [v]); break; }
      case "e": { const items = popMark(); append(top(), items); break; }
      case "q": memo.set(u8(), top()); break; // BINPUT
      case "r": memo.set(u32(), top()); break; // LONG_BINPUT
      case "p": memo.set(Number(line()), top()); break; // PUT
      case "h": stack.push(memoGet(memo, u8())); break; // BINGET
      case "j": stack.push(memoGet(memo, u32())); break; // LONG_BINGET
      case "g": stack.push(memoGet(memo, Number(line()))); break; // GET
      case "K": stack.push(u8()); break; // BININT1
      case "M": stack.push(u16()); break; // BININT2
      case "J": stack.push(i32()); break; // BININT
      case "I": { // INT (protocol 0; also True/False as 01/00)
        const t = line();
        stack.push(t === "01" ? true : t === "00" ? false : intOf(t));
        break;
      }
      case "L": stack.push(intOf(line().replace(/L$/, ""))); break; // LONG
      case "\x8a": stack.push(longOf(bytes(u8()))); break; // LONG1
      case "G": need(8); stack.push(data.readDoubleBE(pos)); pos += 8; break; // BINFLOAT
      case "N": stack.push(null); break;
      case "\x88": stack.push(true); break;
      case "\x89": stack.push(false); break;
      case "X": stack.push(bytes(u32()).toString("utf8")); break; // BINUNICODE
      case "T": stack.push(Buffer.from(bytes(i32()))); break; // BINSTRING (Python 2 str)
      case "U": stack.push(Buffer.from(bytes(u8()))); break; // SHORT_BINSTRING
      case "B": stack.push(Buffer.from(bytes(u32()))); break; // BINBYTES
      case "C": stack.push(Buffer.from(bytes(u8()))); break; // SHORT_BINBYTES
      case "c": { // GLOBAL
        const name = `${line()} ${line()}`;
        if (!ALLOWED_GLOBALS.has(name)) throw new PickleError(`refusing global ${globalName(name)}`);
        stack.push(new PyGlobal(name));
        break;
      }
      case "R": { // REDUCE
        const args = pop();
        const f = pop();
        if (!(f instanceof PyGlobal) || !(args instanceof PyTuple)) throw new PickleError("REDUCE of something other than an allowed global");
        stack.push(call(f.name, args.items));
        break;
      }
      default:
        throw new PickleError(`refusing pickle opcode 0x${op.charCodeAt(0).toString(16)} at byte ${pos - 1}`);
    }
  }
}

function memoGet(memo: Map<number, PyValue>, i: number): PyValue {
  const v = memo.get(i);
  if (v === undefined) throw new PickleError(`memo ${i} not set`);
  return v;
}

function dictKey(k: PyValue): string {
  if (typeof k === "string") return k;
  if (Buffer.isBuffer(k)) return k.toString("utf8");
  if (typeof k === "number" || typeof k === "boolean") return String(k);
  throw new PickleError("dict key of an unsupported type");
}

function dictOf(items: PyValue[]): PyDict {
  const d: PyDict = new Map();
  for (let i = 0; i + 1 < items.length; i += 2) d.set(dictKey(items[i]!), items[i + 1]!);
  return d;
}

/**
 * A refused global as an error may name it: "module name" when both are
 * Python identifiers (what a pickle's GLOBAL holds), else nothing of the
 * bytes read, which could be any file's.
 */
function globalName(name: string): string {
  return /^[A-Za-z_][\w.]{0,63} [A-Za-z_]\w{0,63}$/.test(name) ? name : "(not a Python name)";
}

function intOf(text: string): number | bigint {
  // Never the text itself: an error names no byte of the file it read.
  if (!/^-?\d+$/.test(text)) throw new PickleError("bad integer");
  const n = BigInt(text);
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

/** LONG1: little-endian two's complement. */
function longOf(b: Buffer): number | bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  if (b.length > 0 && b[b.length - 1]! & 0x80) n -= 1n << BigInt(8 * b.length);
  return intOf(n.toString());
}

function num(v: PyValue | undefined): number {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (v === undefined) return 0;
  throw new PickleError("expected a number");
}

function call(name: string, args: readonly PyValue[]): PyValue {
  switch (name) {
    case "_codecs encode": {
      // Python 3 writes bytes in protocol 2 as _codecs.encode(text, "latin1").
      const [text, encoding] = args;
      if (typeof text !== "string" || (encoding !== "latin1" && encoding !== "latin-1")) throw new PickleError("unsupported _codecs.encode call");
      return Buffer.from(text, "latin1");
    }
    case "__builtin__ bytearray":
    case "builtins bytearray": {
      const [text, encoding] = args;
      if (typeof text === "string" && (encoding === "latin1" || encoding === "latin-1")) return Buffer.from(text, "latin1");
      if (Buffer.isBuffer(text)) return text;
      throw new PickleError("unsupported bytearray call");
    }
    case "datetime datetime": {
      // The pickled state: 10 bytes, year (2, big-endian), month, day, hour,
      // minute, second, microsecond (3, big-endian); CPython Modules/_datetimemodule.c.
      const [state] = args;
      const b = Buffer.isBuffer(state) ? state : typeof state === "string" ? Buffer.from(state, "latin1") : null;
      if (!b || b.length !== 10) throw new PickleError("unsupported datetime state");
      const us = (b[7]! << 16) | (b[8]! << 8) | b[9]!;
      return new PyDatetime(Date.UTC(b.readUInt16BE(0), b[2]! - 1, b[3]!, b[4]!, b[5]!, b[6]!) + Math.floor(us / 1000));
    }
    case "datetime timedelta": {
      const [days, seconds, us] = args;
      return new PyTimedelta(num(days) * 86_400_000 + num(seconds) * 1000 + Math.floor(num(us) / 1000));
    }
    default:
      throw new PickleError(`refusing global ${globalName(name)}`);
  }
}
