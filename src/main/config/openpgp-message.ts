// Whether a client's secret is what mandos-client can decrypt: an OpenPGP
// message encrypted to a key (RFC 9580 §10.3 "Encrypted Message": an ESK
// sequence, then the encrypted data), binary or ASCII-armored. Read from
// the packet headers alone (§4.2), never decrypted and never parsed
// further: a few dozen bytes of each secret, ~2 µs a client beside the
// seconds a fleet's clients.conf takes to parse (docs/CONFIGURATION.md
// "Secrets"). The server serves every secret as it is, as the reference
// does; this only tells the admin of one that cannot work.
//
// What Debian's mandos-client 1.8.16 (GPGME 1.18, gpg 2.2.40) was seen to
// do with each form, served by bin/mandos (docs/CONFIGURATION.md):
//  - decrypts: gpg --encrypt's binary output; the same after a marker
//    packet; gpg --armor's, with or without its CRC line, with text before
//    the BEGIN line;
//  - "No data", then asks again every 10 s for ever: plain text, base64 of
//    a message without the armour lines, gpg --store, --sign, --clearsign,
//    a binary message cut short;
//  - "Decryption failed", and the same: a binary message with 2 bytes
//    appended;
//  - "Operation cancelled", and the same: gpg --symmetric (a passphrase it
//    has no way to ask for).

/** What a secret is, as far as its headers tell. */
export type SecretForm =
  /** An ESK sequence holding a key's (PKESK), then encrypted data: what mandos-client decrypts (if the key is its own). */
  | "encrypted"
  | "empty"
  /** Not OpenPGP at all: text (a passphrase as it is), or other bytes. */
  | "not-openpgp"
  /** Base64 text of what would be an encrypted message, without the armour lines. */
  | "bare-base64"
  /** OpenPGP, but not encrypted: signed, compressed or literal data (gpg --sign, --store, --clearsign). */
  | "not-encrypted"
  /** Encrypted to a passphrase only (gpg --symmetric): mandos-client has none to give. */
  | "passphrase-only"
  /** Starts as an encrypted message and stops short of its end (a copy cut short), or does not frame as one. */
  | "cut-short"
  /** An encrypted message with bytes after its end, which gpg takes for a packet, and fails on. */
  | "trailing-bytes";

// RFC 9580 §5: the packet types an encrypted message is made of.
const TAG = {
  pkesk: 1,
  skesk: 3,
  marker: 10,
  /** Symmetrically Encrypted Data (no integrity protection; gpg 2.2 still reads it). */
  sed: 9,
  seipd: 18,
  /** LibrePGP's OCB Encrypted Data (GnuPG 2.3 and later). */
  ocb: 20,
  padding: 21,
} as const;
const ENCRYPTED_DATA: ReadonlySet<number> = new Set([TAG.sed, TAG.seipd, TAG.ocb]);
/** Packets §4.3 lets a reader skip wherever they are. */
const IGNORED: ReadonlySet<number> = new Set([TAG.marker, TAG.padding]);
/** The other packets a message may start with (§10.3): a signed, compressed or literal message. */
const UNENCRYPTED_START: ReadonlySet<number> = new Set([2, 4, 8, 11]);

const ARMOR_BEGIN = "-----BEGIN PGP ";
/** gpg's clear-signed text: an armour, but never encrypted. */
const CLEARSIGNED = "-----BEGIN PGP SIGNED MESSAGE-----";

/** What `secret` is: see SecretForm. Reads no more than its packet headers (and its armour, if any). */
export function secretForm(secret: Buffer): SecretForm {
  if (secret.length === 0) return "empty";
  // gpg takes input whose first octet is not a packet header's as armour (bit 7, §4.2).
  if ((secret[0]! & 0x80) !== 0) return binaryForm(secret);
  const dearmored = dearmor(secret);
  if (dearmored === "clearsigned") return "not-encrypted";
  if (dearmored !== undefined) return dearmored.length === 0 ? "not-openpgp" : binaryForm(dearmored);
  return isBareBase64(secret) ? "bare-base64" : "not-openpgp";
}

export interface PacketHeader {
  readonly tag: number;
  /** Where the packet's body (its first chunk, if partial) starts. */
  readonly bodyStart: number;
  /** The body's length, or its first chunk's if partial; undefined: to the end of the data (legacy indeterminate). */
  readonly bodyLength: number | undefined;
  /** Partial body lengths (§4.2.1.4): chunks, the last of a definite length. */
  readonly partial: boolean;
}

/**
 * The packet header at `at` (RFC 9580 §4.2), or undefined if it is none or
 * does not fit in `bytes` (also how state/symmetric-key.ts reads a sealed
 * secret's first packet).
 */
export function packetHeader(bytes: Buffer, at: number): PacketHeader | undefined {
  const first = bytes[at];
  if (first === undefined || (first & 0x80) === 0) return undefined;
  if ((first & 0x40) === 0) {
    // Legacy format (§4.2.2): tag in bits 5-2, length type in bits 1-0.
    const tag = (first >> 2) & 0x0f;
    const type = first & 0x03;
    if (type === 3) return { tag, bodyStart: at + 1, bodyLength: undefined, partial: false };
    const octets = 1 << type;
    if (at + 1 + octets > bytes.length) return undefined;
    let length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + bytes[at + 1 + i]!;
    return { tag, bodyStart: at + 1 + octets, bodyLength: length, partial: false };
  }
  // OpenPGP format (§4.2.1).
  const length = bodyLength(bytes, at + 1);
  if (length === undefined) return undefined;
  return { tag: first & 0x3f, bodyStart: length.next, bodyLength: length.length, partial: length.partial };
}

/** An OpenPGP-format body length at `at` (§4.2.1.1-4): its value, whether partial, and where it ends. */
function bodyLength(bytes: Buffer, at: number): { length: number; partial: boolean; next: number } | undefined {
  const o1 = bytes[at];
  if (o1 === undefined) return undefined;
  if (o1 < 192) return { length: o1, partial: false, next: at + 1 };
  if (o1 < 224) {
    const o2 = bytes[at + 1];
    return o2 === undefined ? undefined : { length: ((o1 - 192) << 8) + o2 + 192, partial: false, next: at + 2 };
  }
  if (o1 < 255) return { length: 2 ** (o1 & 0x1f), partial: true, next: at + 1 };
  if (at + 5 > bytes.length) return undefined;
  return { length: bytes.readUInt32BE(at + 1), partial: false, next: at + 5 };
}

/** Where the packet `h` ends, or undefined if `bytes` stops before it does. */
function packetEnd(bytes: Buffer, h: PacketHeader): number | undefined {
  if (h.bodyLength === undefined) return bytes.length;
  let end = h.bodyStart + h.bodyLength;
  let partial = h.partial;
  while (end <= bytes.length && partial) {
    const chunk = bodyLength(bytes, end);
    if (chunk === undefined) return undefined;
    end = chunk.next + chunk.length;
    partial = chunk.partial;
  }
  return end <= bytes.length ? end : undefined;
}

/** The form of a binary message: ESK packets (markers and padding skipped), then encrypted data. */
function binaryForm(bytes: Buffer): SecretForm {
  let at = 0;
  let keys = 0;
  let passphrases = 0;
  for (;;) {
    const h = packetHeader(bytes, at);
    const esk = h !== undefined && (h.tag === TAG.pkesk || h.tag === TAG.skesk || IGNORED.has(h.tag));
    // Only data packets come in partial lengths (§4.2.1.4), and an ESK
    // packet's length is always given.
    if (h === undefined || (esk && (h.partial || h.bodyLength === undefined))) return at === 0 ? "not-openpgp" : "cut-short";
    if (ENCRYPTED_DATA.has(h.tag)) {
      const end = packetEnd(bytes, h);
      if (end === undefined) return "cut-short";
      if (keys === 0) return "passphrase-only";
      return end === bytes.length ? "encrypted" : "trailing-bytes";
    }
    if (!esk) {
      if (keys + passphrases > 0) return "cut-short";
      return UNENCRYPTED_START.has(h.tag) ? "not-encrypted" : "not-openpgp";
    }
    const end = packetEnd(bytes, h);
    if (end === undefined) return at === 0 ? "not-openpgp" : "cut-short";
    if (h.tag === TAG.pkesk) keys++;
    if (h.tag === TAG.skesk) passphrases++;
    at = end;
  }
}

/**
 * The bytes of the first ASCII armour in `text` (RFC 9580 §6.2), as gpg
 * reads it: the text before the BEGIN line is skipped, then the armour
 * headers ("Comment: ..."), then base64 up to the CRC ("=...") or the END
 * line. Undefined: no armour.
 */
function dearmor(text: Buffer): Buffer | "clearsigned" | undefined {
  const lines = text.toString("latin1").split(/\r?\n/);
  const begin = lines.findIndex((l) => l.startsWith(ARMOR_BEGIN));
  if (begin < 0) return undefined;
  if (lines[begin]!.trimEnd() === CLEARSIGNED) return "clearsigned";
  let i = begin + 1;
  while (i < lines.length && /^[^\s:]+: /.test(lines[i]!)) i++;
  const body: string[] = [];
  for (; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line.startsWith("=") || line.startsWith("-----")) break;
    body.push(line);
  }
  return Buffer.from(body.join(""), "base64");
}

/**
 * Whether `text` is base64 of an encrypted message (`secret =`'s lines put
 * in a secfile). Decoded whole: only a secret already found wrong gets here.
 */
function isBareBase64(text: Buffer): boolean {
  const letters = text.toString("latin1").replace(/\s+/g, "");
  return /^[A-Za-z0-9+/]+={0,2}$/.test(letters) && binaryForm(Buffer.from(letters, "base64")) === "encrypted";
}

/** Why mandos-client cannot use a secret of each form but "encrypted", in an admin's words (never a byte of the secret). */
const WHY_NOT: Record<Exclude<SecretForm, "encrypted" | "empty">, string> = {
  "not-openpgp": "is not an OpenPGP message (a passphrase as it is? mandos-keygen --password encrypts one)",
  "bare-base64": "is base64 text, not the OpenPGP message it encodes (`secret =` lines copied into a secfile? A secfile holds the message itself)",
  "not-encrypted": "is an OpenPGP message that is not encrypted (signed or stored only)",
  "passphrase-only": "is an OpenPGP message encrypted to a passphrase only (gpg --symmetric), not to the client's key",
  "cut-short": "is not a whole OpenPGP message (cut short, or not OpenPGP at all)",
  "trailing-bytes": "has bytes after the end of its OpenPGP message, on which gpg fails (something appended to a secfile?)",
};

/**
 * What to say of a secret of `form`, after "Client NAME's secret (where)",
 * or null for "encrypted". Names no byte of it.
 */
export function secretWarning(form: SecretForm): string | null {
  if (form === "encrypted") return null;
  if (form === "empty") return "is empty: mandos-client takes an empty secret as a failure and asks again, for ever";
  return `${WHY_NOT[form]}: mandos-client cannot decrypt it and asks again, for ever`;
}
