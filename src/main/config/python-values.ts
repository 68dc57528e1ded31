// Python's own readings of configuration strings, which the reference
// server relies on: int(), str.split(), ConfigParser.getboolean(),
// base64 decoding (binascii.a2b_base64, non-strict) and
// os.path.expanduser(os.path.expandvars(...)).

import { readFileSync } from "node:fs";

const PY_WS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const SPLIT_RE = new RegExp(`[${PY_WS}]+`);
const INT_RE = new RegExp(`^[${PY_WS}]*([+-]?[0-9]+(?:_[0-9]+)*)[${PY_WS}]*$`);

/** str.split() with no separator: runs of white space separate, none at the ends. */
export function pySplit(text: string): string[] {
  return text.split(SPLIT_RE).filter((s) => s !== "");
}

/** int(text) for ASCII digits (sign, surrounding white space, single underscores between digits); undefined if Python raises. */
export function pyInt(text: string): bigint | undefined {
  const m = INT_RE.exec(text);
  return m === null ? undefined : BigInt((m[1] as string).replaceAll("_", ""));
}

/** ConfigParser.BOOLEAN_STATES. */
const BOOLEAN_STATES: Readonly<Record<string, boolean>> = {
  "1": true, yes: true, true: true, on: true,
  "0": false, no: false, false: false, off: false,
};

/** ConfigParser.getboolean's reading of a value; undefined for "Not a boolean". */
export function pyBoolean(text: string): boolean | undefined {
  return BOOLEAN_STATES[text.toLowerCase()];
}

/** binascii's a2b_base64 table: the value of each base64 alphabet byte, -1 for others. */
const BASE64_VALUE = new Int8Array(256).fill(-1);
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".split("").forEach((c, i) => {
  BASE64_VALUE[c.charCodeAt(0)] = i;
});

/**
 * codecs.decode(text.encode("utf-8"), "base64"), i.e. binascii.a2b_base64
 * in non-strict mode: bytes outside the alphabet are skipped, a complete
 * padding ends the input, an incomplete last group is an error. Returns
 * undefined on error (never echo the input: it is a secret).
 */
export function pyBase64Decode(text: string): Buffer | undefined {
  const plain = plainBase64Decode(text);
  if (plain !== undefined) return plain;
  const input = Buffer.from(text, "utf8");
  const out = Buffer.alloc(Math.floor((input.length * 3) / 4) + 3);
  let length = 0;
  let quadPos = 0;
  let leftChar = 0;
  let pads = 0;
  for (const byte of input) {
    if (byte === 0x3d) { // "="
      if (quadPos >= 2 && quadPos + ++pads >= 4) return out.subarray(0, length);
      continue;
    }
    const v = BASE64_VALUE[byte] as number;
    if (v < 0) continue;
    pads = 0;
    switch (quadPos) {
      case 0: quadPos = 1; leftChar = v; break;
      case 1: quadPos = 2; out[length++] = ((leftChar << 2) | (v >> 4)) & 0xff; leftChar = v & 0x0f; break;
      case 2: quadPos = 3; out[length++] = ((leftChar << 4) | (v >> 2)) & 0xff; leftChar = v & 0x03; break;
      default: quadPos = 0; out[length++] = ((leftChar << 6) | v) & 0xff; leftChar = 0; break;
    }
  }
  return quadPos === 0 ? out.subarray(0, length) : undefined;
}

/** The base64 alphabet and line ends, then at most two "=": a clients.conf secret as mandos-keygen writes it. */
const PLAIN_BASE64_RE = /^[A-Za-z0-9+/\n]*={0,2}$/;

/**
 * pyBase64Decode of plain base64 (PLAIN_BASE64_RE) whose padding
 * completes its last group, or none needs it: Node's own decoder skips the
 * line ends and reads the rest as binascii does (a test holds them to the
 * same bytes). Undefined for any other text, which the loop above reads:
 * its errors and odd paddings are binascii's. For a fleet's clients.conf
 * (20,000 secrets of 1.6 kB) this decoding took 0.3 s of a start's 2 s
 * parse, byte by byte.
 */
function plainBase64Decode(text: string): Buffer | undefined {
  if (!PLAIN_BASE64_RE.test(text)) return undefined;
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 0x3d) end--;
  let letters = end;
  for (let at = text.indexOf("\n"); at >= 0 && at < end; at = text.indexOf("\n", at + 1)) letters--;
  const pads = text.length - end;
  const last = letters % 4;
  if (!((pads === 0 && last === 0) || (pads === 1 && last === 3) || (pads === 2 && last === 2))) return undefined;
  return Buffer.from(text, "base64");
}

/** Where a user's home directory is (getpwnam's pw_dir), or undefined for an unknown user. */
export type HomeDirectoryLookup = (user: string) => string | undefined;

/** Reads /etc/passwd for a user's home; NSS sources beyond the file are not consulted. */
export function passwdHomeDirectory(user: string): string | undefined {
  let passwd: string;
  try {
    passwd = readFileSync("/etc/passwd", "utf8");
  } catch {
    return undefined;
  }
  for (const line of passwd.split("\n")) {
    const fields = line.split(":");
    if (fields[0] === user && fields.length >= 7) return fields[5];
  }
  return undefined;
}

/** posixpath.expandvars: `$name` and `${name}` (name of [A-Za-z0-9_]) from `env`; unknown ones stay. */
export function pyExpandVars(path: string, env: Readonly<Record<string, string | undefined>>): string {
  if (!path.includes("$")) return path;
  return path.replace(/\$([A-Za-z0-9_]+|\{[^}]*\})/g, (whole, name: string) => {
    const key = name.startsWith("{") ? name.slice(1, -1) : name;
    const value = Object.prototype.hasOwnProperty.call(env, key) ? env[key] : undefined;
    return value ?? whole;
  });
}

/** posixpath.expanduser: `~` is $HOME (else the current user's home), `~user` that user's home; unknown users stay. */
export function pyExpandUser(
  path: string,
  env: Readonly<Record<string, string | undefined>>,
  homeOf: HomeDirectoryLookup,
  currentUser: () => string,
): string {
  if (!path.startsWith("~")) return path;
  let i = path.indexOf("/", 1);
  if (i < 0) i = path.length;
  const home = i === 1 ? (env["HOME"] ?? homeOf(currentUser())) : homeOf(path.slice(1, i));
  if (home === undefined) return path;
  return home.replace(/\/+$/, "") + path.slice(i) || "/";
}
