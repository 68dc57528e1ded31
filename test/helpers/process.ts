// Whether a process the test started still runs. This machine's PID 1 does
// not reap, so a detached server that exited can stay a zombie: it counts
// as gone. EPERM (a process of another user's) counts as alive.

import { readFileSync } from "node:fs";

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}
