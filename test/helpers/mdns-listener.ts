// A process that listens for mDNS over IPv6 on the links it is given, for
// the Zeroconf tests to run inside a network namespace (`ip netns exec NS
// node this.js JSON`): it collects announcements of `_mandos._tcp`, waits
// `seconds`, then sends one query for it on each link in turn, collecting
// the answers for `seconds` after each, and prints one JSON line (Heard).
// Like zeroconf-announcer.ts it refuses to run in the test runner's network
// namespace, and does nothing when loaded by the test runner.

import { createSocket, type RemoteInfo } from "node:dgram";
import { DNSPacket } from "@homebridge/ciao/lib/coder/DNSPacket.js";
import { inParentNetns } from "./netns.js";

interface ListenerArgs {
  links: string[];
  seconds: number;
}

/** What the links heard: announcements (before any query) and answers to each link's query. */
export interface Heard {
  /** The links an announcement came on (any time), and whether it carried an AAAA record. */
  announced: Record<string, { aaaa: boolean }>;
  /** For each link queried, the links an answer came on, and whether it carried an AAAA record. */
  answered: Record<string, Record<string, { aaaa: boolean }>>;
}

const AAAA = 28;
const SRV = 33;

/** A PTR query for _mandos._tcp.local (RFC 6762 §5), as mandos-client's Avahi would send it. */
function mandosQuery(): Buffer {
  const name = Buffer.concat([
    ...["_mandos", "_tcp", "local"].map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)])),
    Buffer.from([0]),
  ]);
  return Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), name, Buffer.from([0, 12, 0, 1])]);
}

async function listen(args: ListenerArgs): Promise<void> {
  const heard: Heard = { announced: {}, answered: {} };
  let answering: Record<string, { aaaa: boolean }> | undefined;
  const socket = createSocket({ type: "udp6", reuseAddr: true, ipv6Only: true });
  socket.on("message", (data: Buffer, rinfo: RemoteInfo) => {
    const link = rinfo.address.split("%")[1] ?? "";
    if (!args.links.includes(link)) return;
    let packet: DNSPacket;
    try {
      packet = DNSPacket.decode(rinfo, data);
    } catch {
      return;
    }
    const answers = [...packet.answers.values()];
    if (packet.type !== 1 || !answers.some((r) => r.name.toLowerCase().includes("_mandos._tcp.local"))) return; // responses about us only
    // An answer to a PTR query carries the addresses as additional records (RFC 6763 §12.1).
    const aaaa = [...answers, ...packet.additionals.values()].some((r) => r.type === AAAA);
    // An announcement carries the SRV record among its answers (RFC 6762 §8.3);
    // an answer to our PTR query, among its additional records.
    const into = answers.some((r) => r.type === SRV) ? heard.announced : answering;
    if (into) into[link] = { aaaa: aaaa || (into[link]?.aaaa ?? false) };
  });
  await new Promise<void>((resolve) => socket.bind(5353, "::", resolve));
  for (const link of args.links) socket.addMembership("ff02::fb", `::%${link}`);
  process.stdout.write("LISTENING\n");
  const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, args.seconds * 1000));
  await pause();
  for (const link of args.links) {
    answering = heard.answered[link] = {};
    socket.setMulticastInterface(`::%${link}`);
    await new Promise<void>((resolve, reject) => socket.send(mandosQuery(), 5353, `ff02::fb%${link}`, (error) => error ? reject(error) : resolve()));
    await pause();
  }
  process.stdout.write(`${JSON.stringify(heard)}\n`);
  socket.close();
}

if (process.env.MANDOS_TS_ANNOUNCER === "1" && process.argv[1]?.endsWith("mdns-listener.js")) {
  if (inParentNetns()) {
    process.stderr.write("mdns-listener: refusing to multicast in the test runner's network namespace\n");
    process.exit(2);
  }
  await listen(JSON.parse(process.argv[2] ?? "{}") as ListenerArgs);
}
