// A process that announces one Mandos service, for the Zeroconf tests to run
// inside a network namespace (`ip netns exec NS node this.js JSON`). It logs
// `LEVEL: message` lines and `ESTABLISHED name` / `FAILED` on stdout, and
// withdraws the service on SIGTERM. It refuses to run in the test runner's
// network namespace (announcerEnv() tells it which that is), so that no test multicasts on the real interfaces; and
// it does nothing when loaded by the test runner (it lives under test/).

import { startAnnouncement } from "../../src/main/zeroconf/announce.js";
import type { Logger } from "../../src/main/daemon/log.js";
import { inParentNetns } from "./netns.js";

interface AnnouncerArgs {
  name: string;
  port: number;
  interface?: string;
  ipv6: boolean;
  /** How often it and ciao look at the interfaces (ms); absent: every 15 s. */
  interfacePollMs?: number;
}

async function announce(args: AnnouncerArgs): Promise<void> {
  const line = (level: string) => (message: string): void => { process.stdout.write(`${level}: ${message}\n`); };
  const logger: Logger = {
    debug: line("DEBUG"), info: line("INFO"), warning: line("WARNING"), error: line("ERROR"), critical: line("CRITICAL"),
  };
  // Our own responder (ciao) always: a system bus reachable from here (the
  // machine's own, by its socket path) would have its avahi-daemon announce
  // on the machine's real interfaces.
  const announcement = await startAnnouncement({ ...args, logger, systemBus: null });
  process.once("SIGTERM", () => {
    void announcement.stop().then(() => {
      process.stdout.write("STOPPED\n");
      process.exit(0);
    });
  });
  const ok = await announcement.established;
  process.stdout.write(ok ? `ESTABLISHED ${announcement.name}\n` : "FAILED\n");
}

if (process.env.MANDOS_TS_ANNOUNCER === "1") {
  if (inParentNetns()) {
    process.stderr.write("zeroconf-announcer: refusing to multicast in the test runner's network namespace\n");
    process.exit(2);
  }
  await announce(JSON.parse(process.argv[2] ?? "{}") as AnnouncerArgs);
}
