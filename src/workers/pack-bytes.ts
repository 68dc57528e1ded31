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
  let total = 0;
  let views = 0;
  const measure = (v: unknown): void => {
    if (v instanceof Uint8Array) {
      total += v.byteLength;
      views++;
    } else if (Array.isArray(v)) {
      for (const item of v) measure(item);
    } else if (isPlainObject(v)) {
      for (const key in v) measure(v[key]);
    }
  };
  measure(value);
  if (views === 0) return value;
  const packed = Buffer.allocUnsafeSlow(total);
  let at = 0;
  const rebuild = (v: unknown): unknown => {
    if (v instanceof Uint8Array) {
      const view = packed.subarray(at, at + v.byteLength);
      view.set(v);
      at += v.byteLength;
      return view;
    }
    if (Array.isArray(v)) return v.map(rebuild);
    if (isPlainObject(v)) {
      const out: Record<string, unknown> = {};
      for (const key in v) out[key] = rebuild(v[key]);
      return out;
    }
    return v;
  };
  return rebuild(value) as T;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
