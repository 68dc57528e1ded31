// The recorded real legacy session (project test data, test/data/legacy/):
// a GnuTLS 3.5 mandos-client (TLS server) and the Python reference in its
// OpenPGP mode (TLS client), every byte record by record, with the NSS key
// log's master secret. docs/PROTOCOL.md, "Legacy clients", describes it.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const LEGACY_DATA = fileURLToPath(new URL("../../../test/data/legacy/", import.meta.url));

export interface RecordedRecord {
  /** "server" = the Mandos server (TLS client) sent it; "client" = the Mandos client (TLS server). */
  readonly from: "server" | "client";
  readonly type: number;
  readonly header: Buffer;
  readonly body: Buffer;
}

export interface LegacySession {
  readonly protocolLine: Buffer;
  readonly records: RecordedRecord[];
  readonly masterSecret: Buffer;
  readonly clientRandom: Buffer;
  /** Every byte the Mandos server (TLS client) sent, and the Mandos client after its protocol line. */
  readonly serverStream: Buffer;
  readonly clientStream: Buffer;
}

export function loadLegacySession(): LegacySession {
  const text = readFileSync(`${LEGACY_DATA}legacy-session.hex.txt`, "latin1");
  // Segments in time order; a "# X->Y offset" line starts one.
  const segments: Array<{ from: "server" | "client"; bytes: Buffer }> = [];
  let current: { from: "server" | "client"; hex: string[] } | null = null;
  const flush = () => {
    if (current) segments.push({ from: current.from, bytes: Buffer.from(current.hex.join(""), "hex") });
    current = null;
  };
  for (const line of text.split("\n")) {
    const head = /^# (C->S|S->C)\s+offset/.exec(line);
    if (head) {
      flush();
      current = { from: head[1] === "C->S" ? "client" : "server", hex: [] };
      continue;
    }
    const data = /^(C->S|S->C) ([0-9a-f]+)$/.exec(line.trim());
    if (data && current) current.hex.push(data[2]!);
  }
  flush();
  const clientAll = Buffer.concat(segments.filter((s) => s.from === "client").map((s) => s.bytes));
  const protocolLine = clientAll.subarray(0, 3);
  const records: RecordedRecord[] = [];
  const pending = { client: Buffer.alloc(0), server: Buffer.alloc(0) };
  let skipLine = 3;
  for (const seg of segments) {
    let bytes = seg.bytes;
    if (seg.from === "client" && skipLine > 0) {
      const cut = Math.min(skipLine, bytes.length);
      bytes = bytes.subarray(cut);
      skipLine -= cut;
    }
    let buf = Buffer.concat([pending[seg.from], bytes]);
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
      const end = 5 + buf.readUInt16BE(3);
      records.push({ from: seg.from, type: buf[0]!, header: buf.subarray(0, 5), body: buf.subarray(5, end) });
      buf = buf.subarray(end);
    }
    pending[seg.from] = buf;
  }
  const [, random, master] = readFileSync(`${LEGACY_DATA}legacy-session.keylog`, "latin1").trim().split(/\s+/);
  return {
    protocolLine,
    records,
    masterSecret: Buffer.from(master!, "hex"),
    clientRandom: Buffer.from(random!, "hex"),
    serverStream: Buffer.concat(segments.filter((s) => s.from === "server").map((s) => s.bytes)),
    clientStream: clientAll.subarray(3),
  };
}

/** The handshake messages inside plaintext handshake records, in order, with who sent them. */
export function plainHandshakeMessages(records: readonly RecordedRecord[]): Array<{ from: "server" | "client"; type: number; raw: Buffer }> {
  const out: Array<{ from: "server" | "client"; type: number; raw: Buffer }> = [];
  for (const rec of records) {
    if (rec.type === 20) break; // the first change_cipher_spec: what follows is protected
    if (rec.type !== 22) continue;
    for (let at = 0; at < rec.body.length; ) {
      const len = rec.body.readUIntBE(at + 1, 3);
      out.push({ from: rec.from, type: rec.body[at]!, raw: rec.body.subarray(at, at + 4 + len) });
      at += 4 + len;
    }
  }
  return out;
}
