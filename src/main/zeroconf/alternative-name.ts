// The next Zeroconf service name after a collision, as Avahi picks it
// (avahi-common/alternative.c, avahi_alternative_service_name, which the
// reference server gets through GetAlternativeServiceName): "Mandos" becomes
// "Mandos #2", "Mandos #2" becomes "Mandos #3". mandos(8) and operators'
// scripts know the server by these names, so we keep Avahi's form rather than
// ciao's "Mandos (2)".

/** DNS label limit in bytes, counting Avahi's terminating NUL (AVAHI_LABEL_MAX). */
const LABEL_MAX = 64;

/** The first `maxBytes` bytes of `text` in UTF-8, without a cut character at the end. */
function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes;
  // Step back over continuation bytes (10xxxxxx) to the start of the cut character.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}

/** The number after the last " #" if all that follows it is a number not starting with 0. */
function trailingNumber(name: string): { base: string; number: number } | undefined {
  const at = name.lastIndexOf(" #");
  if (at < 0) return undefined;
  const digits = name.slice(at + 2);
  if (!/^[1-9][0-9]*$/.test(digits)) return undefined;
  return { base: name.slice(0, at), number: Number.parseInt(digits, 10) };
}

export function alternativeServiceName(name: string): string {
  const numbered = trailingNumber(name);
  if (numbered) {
    const suffix = ` #${numbered.number + 1}`;
    return truncateUtf8(numbered.base, LABEL_MAX - 1 - Buffer.byteLength(suffix)) + suffix;
  }
  return truncateUtf8(name, LABEL_MAX - 1 - 3) + " #2";
}
