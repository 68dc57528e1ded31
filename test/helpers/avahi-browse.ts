// Reading `avahi-browse -p` output: one `;`-separated line per event, with
// names escaped as `\DDD` (decimal byte values).

export interface BrowsedService {
  /** "+" new, "-" removed, "=" resolved. */
  readonly event: string;
  readonly interface: string;
  readonly protocol: string;
  readonly name: string;
  readonly type: string;
  readonly host?: string;
  readonly address?: string;
  readonly port?: number;
}

export function unescapeAvahi(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const m = /^\\(\d{3})/.exec(text.slice(i));
    if (m) {
      bytes.push(Number(m[1]));
      i += 3;
    } else {
      bytes.push(...Buffer.from(text[i]!, "utf8"));
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

export function parseBrowseLine(line: string): BrowsedService | undefined {
  const f = line.split(";");
  if (f.length < 6 || !["+", "-", "="].includes(f[0]!)) return undefined;
  return {
    event: f[0]!,
    interface: f[1]!,
    protocol: f[2]!,
    name: unescapeAvahi(f[3]!),
    type: f[4]!,
    ...(f[0] === "=" ? { host: unescapeAvahi(f[6] ?? ""), address: f[7], port: Number(f[8]) } : {}),
  };
}
