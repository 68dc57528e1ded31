// sd_notify(3) without libsystemd: readiness, stopping and watchdog pings as
// datagrams to $NOTIFY_SOCKET, when systemd started us with Type=notify
// (and WatchdogSec=, which sets $WATCHDOG_USEC). Node has no unix datagram
// sockets; our addon (daemon/unix-datagram.ts), as for syslog, sends them.

import { datagramSocketOrSay } from "../daemon/unix-datagram.js";

export interface SystemdNotifier {
  notify(state: string): void;
  /**
   * Pings WATCHDOG=1 every half watchdog period (sd_watchdog_enabled(3)'s
   * advice) while `alive()` holds; a server that stops accepting stops
   * pinging, and systemd restarts it.
   */
  startWatchdog(alive: () => boolean): void;
  close(): void;
}

/**
 * A notifier for the environment systemd gave us, or null when not run
 * under Type=notify. Unsets the variables, as sd_notify(3)'s
 * unset_environment does, so that checkers do not inherit them.
 */
export function systemdNotifier(env: NodeJS.ProcessEnv = process.env, pid = process.pid): SystemdNotifier | null {
  const raw = env.NOTIFY_SOCKET;
  if (raw === undefined || raw === "") return null;
  // "@name" is an abstract socket: a leading NUL in sun_path.
  const path = raw.startsWith("@") ? `\0${raw.slice(1)}` : raw;
  const watchdogUsec = Number(env.WATCHDOG_USEC ?? "");
  const watchdogPid = env.WATCHDOG_PID;
  const watchdogMs = Number.isFinite(watchdogUsec) && watchdogUsec > 0 && (watchdogPid === undefined || Number(watchdogPid) === pid)
    ? watchdogUsec / 1000 : 0;
  delete env.NOTIFY_SOCKET;
  delete env.WATCHDOG_USEC;
  delete env.WATCHDOG_PID;
  // Without the addon, systemd hears nothing and times the start out
  // (TimeoutStartSec), restarting a server that served meanwhile.
  const socket = datagramSocketOrSay("systemd notifications; under Type=notify, systemd times the start out and restarts the server");
  let timer: NodeJS.Timeout | undefined;
  // A lost notification is systemd's to time out on; never ours to die of.
  const notify = (state: string): void => void socket?.send(state, path);
  return {
    notify,
    startWatchdog(alive) {
      if (watchdogMs === 0 || timer !== undefined) return;
      timer = setInterval(() => {
        if (alive()) notify("WATCHDOG=1");
      }, watchdogMs / 2);
      timer.unref();
    },
    close() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      socket?.close();
    },
  };
}
