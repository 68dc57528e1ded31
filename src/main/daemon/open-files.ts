// This process's open-files limit (RLIMIT_NOFILE), which bounds the
// connections it may hold open (serve/limits.ts, openConnectionsAllowed).
// Node has no getrlimit(2); it raises the soft limit to the hard one as it
// starts, and /proc/self/limits shows the result.

import { readFileSync } from "node:fs";

/** The soft limit on open files; null when unlimited or unknown (no /proc). */
export function openFilesLimit(limitsFile = "/proc/self/limits"): number | null {
  let text: string;
  try {
    text = readFileSync(limitsFile, "latin1");
  } catch {
    return null;
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1];
  return soft === undefined || !/^\d+$/.test(soft) ? null : Number(soft);
}
