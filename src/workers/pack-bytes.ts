// The handshake workers' messages with their bytes in one ArrayBuffer.
// postMessage's structured clone copies the whole ArrayBuffer under each
// view it meets, and the receiver makes one ArrayBuffer for each it copies
// (~4 µs apiece here, as costly as an X25519 agreement's tenth). A
// handshake's result held six: four HMAC digests of their own, and two
// slices of Node's shared 8 KiB Buffer pool, each copied whole; a task
// three to five. Packed, a message costs one ArrayBuffer each way, the
// size of its bytes. Only plain data is rebuilt (objects, arrays, byte
// views); anything else (a KeyObject, the known-key SharedArrayBuffer)
// passes as it is.

/** `value` with every Uint8Array in its plain objects and arrays copied into one new ArrayBuffer. */
export function packBytes<T>(value: T): T {
  const tally: Tally = { total: 0, views: 0 };
  measure(value, tally);
  if (tally.views === 0) return value;
  return rebuild(value, { packed: Buffer.allocUnsafeSlow(tally.total), at: 0 }) as T;
}

// The walks are module functions, not closures made by each call: V8
// holds a function's optimised code weakly, so a closure that dies after
// its call leaves its code to the next full collection, and the next
// call's closures were compiled again (eight times each in one 8 s window
// of a wave, 10-17 ms a compile on a helper thread; docs/BENCHMARK.md,
// "Closures compiled again").

interface Tally {
  total: number;
  views: number;
}

function measure(v: unknown, tally: Tally): void {
  if (v instanceof Uint8Array) {
    tally.total += v.byteLength;
    tally.views++;
  } else if (Array.isArray(v)) {
    for (const item of v) measure(item, tally);
  } else if (isPlainObject(v)) {
    for (const key in v) measure(v[key], tally);
  }
}

interface Cursor {
  readonly packed: Buffer;
  at: number;
}

function rebuild(v: unknown, cursor: Cursor): unknown {
  if (v instanceof Uint8Array) {
    const view = cursor.packed.subarray(cursor.at, cursor.at + v.byteLength);
    view.set(v);
    cursor.at += v.byteLength;
    return view;
  }
  if (Array.isArray(v)) {
    const out: unknown[] = [];
    for (const item of v) out.push(rebuild(item, cursor));
    return out;
  }
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const key in v) out[key] = rebuild(v[key], cursor);
    return out;
  }
  return v;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
