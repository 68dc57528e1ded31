// D-Bus values as marshal.ts writes them (and @homebridge/dbus-native
// reads them), and the few conversions the Mandos API needs: variants,
// dictionaries, the reference's timestamps and durations.

import { pyIsoformat } from "../clients/python-format.js";

/**
 * A value on the wire: numbers for integer types (uint64 durations in
 * milliseconds fit in 53 bits), booleans, strings (also object paths),
 * Buffers for "ay", arrays for arrays and structs and dict entries, and a
 * two-element [signature, value] array for an outgoing variant; for an
 * outgoing array, also its elements already marshalled (MarshalledArray).
 */
export type WireValue = string | number | boolean | Buffer | MarshalledArray | WireValue[];

/**
 * An outgoing array whose elements marshal.ts has already written
 * (`marshalArray`), sent again by copying them. Only for elements aligned
 * to 8 bytes (dict entries, structs), whose bytes are the same wherever the
 * array starts.
 */
export class MarshalledArray {
  constructor(
    /** The signature of one element, "{sv}" for an "a{sv}". */
    readonly element: string,
    /** The elements as on the wire, from the first one's first byte. */
    readonly contents: Buffer,
  ) {}
}

/** An outgoing variant. */
export function variant(signature: string, value: WireValue): WireValue {
  return [signature, value];
}

/** An outgoing dictionary: an array of [key, value] dict entries. */
export function dict(entries: Iterable<readonly [string, WireValue]>): WireValue {
  return [...entries].map(([k, v]) => [k, v]);
}

/** A parsed signature tree, as dbus-native's unmarshaller hands variants over. */
interface SignatureNode {
  type: string;
  child: SignatureNode[];
}

/** An incoming variant, its signature spelled out again. */
export interface IncomingVariant {
  readonly signature: string;
  readonly value: unknown;
}

function signatureOf(node: SignatureNode): string {
  switch (node.type) {
    case "a":
      return "a" + node.child.map(signatureOf).join("");
    case "(":
      return "(" + node.child.map(signatureOf).join("") + ")";
    case "{":
      return "{" + node.child.map(signatureOf).join("") + "}";
    default:
      return node.type;
  }
}

/** Reads an incoming "v" argument ([signatureTree, [value]]); null if it is not one. */
export function readVariant(raw: unknown): IncomingVariant | null {
  if (!Array.isArray(raw) || raw.length !== 2) return null;
  const [tree, values] = raw as [unknown, unknown];
  if (!Array.isArray(tree) || tree.length !== 1 || !Array.isArray(values) || values.length !== 1) return null;
  return { signature: signatureOf(tree[0] as SignatureNode), value: values[0] };
}

/**
 * The reference's datetime_to_dbus: Python isoformat() of the naive UTC
 * time; "" when unset. Always with its fraction: isoformat() leaves it out
 * when the microseconds are 0, which the reference's times (microseconds)
 * almost never are and ours (milliseconds) are once in a thousand, and
 * mandos-monitor reads Expires with strptime("%Y-%m-%dT%H:%M:%S.%f"): a
 * time without one stopped it with a ValueError.
 */
export function timestampToDbus(date: Date | null): string {
  if (date === null) return "";
  const text = pyIsoformat(date);
  return date.getUTCMilliseconds() === 0 ? `${text}.000000` : text;
}

const INTEGER_SIGNATURES = new Set(["y", "n", "q", "i", "u", "x", "t"]);

/** Whether `v` is of a D-Bus integer type, whatever its value. */
export function isIntegerType(v: IncomingVariant): boolean {
  return INTEGER_SIGNATURES.has(v.signature);
}

/** Whether `v` carries an integer of any D-Bus integer type (dbus-python sends Python ints as "i"); null also beyond 2^53 - 1. */
export function integerOf(v: IncomingVariant): number | null {
  if (!isIntegerType(v) || typeof v.value !== "number" || !Number.isSafeInteger(v.value)) return null;
  return v.value;
}
