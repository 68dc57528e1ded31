// A private D-Bus "system" bus in a temporary directory, for running the
// Python reference server (which connects to the system bus even with
// --no-dbus) without touching this machine's own bus.

import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface PrivateBus {
  /** For DBUS_SYSTEM_BUS_ADDRESS. */
  readonly address: string;
  /** Stops the bus daemon and starts another on the same socket, as `systemctl restart dbus` would. */
  restart(): Promise<void>;
  /** Freezes the bus daemon (SIGSTOP): connections are accepted by the kernel and never answered. */
  pause(): void;
  /** Lets a paused bus daemon run again (SIGCONT). */
  resume(): void;
  stop(): Promise<void>;
}

/** A default-context <policy> element of `rules` ("allow own=*" is <allow own="*"/>). */
function defaultPolicy(rules: readonly string[]): string {
  const element = (rule: string): string => {
    const [verb, ...attributes] = rule.split(" ");
    return `    <${verb} ${attributes.map((a) => a.replace(/=(.*)$/, '="$1"')).join(" ")}/>`;
  };
  return `  <policy context="default">\n${rules.map(element).join("\n")}\n  </policy>`;
}

/** Allows everything: for tests of behaviour, not of access control. */
const OPEN_POLICY = defaultPolicy(["allow user=*", "allow own=*", "allow send_destination=*", "allow receive_sender=*"]);

/**
 * The default policy of Debian's system bus (/usr/share/dbus-1/system.conf):
 * nobody owns names or calls methods unless a policy file allows it.
 */
export const SYSTEM_DEFAULT_POLICY = defaultPolicy([
  "allow user=*",
  "deny own=*",
  "deny send_type=method_call",
  "allow send_type=signal",
  "allow send_requested_reply=true send_type=method_return",
  "allow send_requested_reply=true send_type=error",
  "allow receive_type=method_call",
  "allow receive_type=method_return",
  "allow receive_type=error",
  "allow receive_type=signal",
  "allow send_destination=org.freedesktop.DBus send_interface=org.freedesktop.DBus",
  "allow send_destination=org.freedesktop.DBus send_interface=org.freedesktop.DBus.Introspectable",
]);

export interface PrivateBusOptions {
  /** The <policy> elements; everything allowed by default. */
  readonly policy?: string;
  /** Policy files to <include>, as /etc/dbus-1/system.d/ does. */
  readonly include?: readonly string[];
}

export async function startPrivateBus(options: PrivateBusOptions = {}): Promise<PrivateBus> {
  const dir = mkdtempSync(join(tmpdir(), "mandos-ts-bus-"));
  // The reference server drops to _mandos before it connects to the bus.
  chmodSync(dir, 0o755);
  const socket = join(dir, "system_bus_socket");
  writeFileSync(
    join(dir, "bus.conf"),
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
${options.policy ?? OPEN_POLICY}
${(options.include ?? []).map((f) => `  <include>${f}</include>`).join("\n")}
</busconfig>
`,
  );
  const start = async (): Promise<{ child: ChildProcess; address: string }> => {
    const child: ChildProcess = spawn("dbus-daemon", [`--config-file=${join(dir, "bus.conf")}`, "--nofork", "--print-address"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    const address = await new Promise<string>((resolve, reject) => {
      let out = "";
      child.stdout?.on("data", (d: Buffer) => {
        out += d.toString();
        const line = out.split("\n")[0];
        // Without its guid, as the system bus's well-known address: libdbus
        // refuses a server whose guid is not the one asked for, and a
        // restarted daemon has another.
        if (out.includes("\n") && line) resolve(line.trim().replace(/,guid=[0-9a-f]+$/, ""));
      });
      child.on("error", reject);
      child.on("exit", (code) => reject(new Error(`dbus-daemon exited with ${code}`)));
    });
    return { child, address };
  };
  const end = async (child: ChildProcess): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGCONT");
      child.kill("SIGTERM");
      await exited;
    }
  };
  let running = await start();
  return {
    address: running.address,
    async restart() {
      await end(running.child);
      running = await start();
    },
    pause() {
      running.child.kill("SIGSTOP");
    },
    resume() {
      running.child.kill("SIGCONT");
    },
    async stop() {
      await end(running.child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
