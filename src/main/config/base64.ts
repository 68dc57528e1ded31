// base64 decoding as Python's binascii.a2b_base64 does it in its default,
// non-strict mode (what the reference's codecs.decode(..., "base64") uses):
// characters outside the alphabet are skipped, decoding stops at complete
// padding, and a leftover partial group is an error.

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const TABLE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) TABLE[ALPHABET.charCodeAt(i)] = i;
const PAD = 0x3d;

export class Base64Error extends Error {
  readonly code = "MANDOS_BAD_BASE64";
}

// The common case, a clean base64 block spread over indented lines, takes
// Node's native decoder; anything else the exact, slower path below.
const CLEAN = /^[A-Za-z0-9+/]*={0,2}$/;

/** Decodes `text` (its UTF-8 bytes) exactly as binascii.a2b_base64(strict_mode=False). */
export function decodeBase64Python(text: string): Buffer {
  const compact = text.replace(/[ \t\n\r]+/g, "");
  if (compact.length % 4 === 0 && CLEAN.test(compact)) return Buffer.from(compact, "base64");
  return decodeSlow(text);
}

function decodeSlow(text: string): Buffer {
  const input = Buffer.from(text, "utf8");
  const out = Buffer.allocUnsafe(Math.ceil((input.length * 3) / 4) + 3);
  let o = 0;
  let quad = 0;
  let left = 0;
  let pads = 0;
  let dataChars = 0;
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c === PAD) {
      if (quad >= 2 && quad + ++pads >= 4) return Buffer.from(out.subarray(0, o));
      continue;
    }
    const v = c < 128 ? TABLE[c]! : -1;
    if (v < 0) continue;
    pads = 0;
    dataChars++;
    switch (quad) {
      case 0:
        left = v;
        quad = 1;
        break;
      case 1:
        out[o++] = (left << 2) | (v >> 4);
        left = v & 0x0f;
        quad = 2;
        break;
      case 2:
        out[o++] = (left << 4) | (v >> 2);
        left = v & 0x03;
        quad = 3;
        break;
      default:
        out[o++] = (left << 6) | v;
        quad = 0;
    }
  }
  if (quad === 1) {
    throw new Base64Error(`Invalid base64-encoded string: number of data characters (${dataChars}) cannot be 1 more than a multiple of 4`);
  }
  if (quad !== 0) throw new Base64Error("Incorrect padding");
  return Buffer.from(out.subarray(0, o));
}
