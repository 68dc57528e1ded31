// gpg's key expiry syntax (gpg(1) --quick-gen-key, "Expire-Date" in
// unattended key generation), which mandos-keygen --expire passes through:
// 0 for never, N days, Nd / Nw / Nm / Ny, or an ISO date YYYY-MM-DD.

import { KeygenError } from "./errors.js";

const DAY = 86_400;
const UNIT_SECONDS: Record<string, number> = { "": DAY, d: DAY, w: 7 * DAY, m: 30 * DAY, y: 365 * DAY };

/** Seconds from `now` until the key expires; 0 for never. */
export function parseExpire(text: string, now: Date): number {
  const t = text.trim().toLowerCase();
  if (t === "" ) throw new KeygenError("KEYGEN_BAD_EXPIRE", "Empty key expiration");
  if (t === "0" || t === "none" || t === "never") return 0;
  const relative = /^(\d+)([dwmy]?)$/.exec(t);
  if (relative) return Number(relative[1]) * UNIT_SECONDS[relative[2]!]!;
  const seconds = /^seconds=(\d+)$/.exec(t);
  if (seconds) return Number(seconds[1]);
  const date = /^(\d{4})-?(\d{2})-?(\d{2})$/.exec(t);
  if (date) {
    const at = Date.UTC(Number(date[1]), Number(date[2]) - 1, Number(date[3]));
    const delta = Math.floor((at - now.getTime()) / 1000);
    if (delta > 0) return delta;
  }
  throw new KeygenError("KEYGEN_BAD_EXPIRE", `Invalid key expiration: ${text}`);
}
