// The values a client's properties may hold when they come from outside
// this process (the state file, etcd), as clients.conf and D-Bus take them:
// one set of checks, so that what one source refuses the other does too.
// A value past them once stopped the server (an expiry of 1e300 from etcd, a
// NUL in a host at the first D-Bus announcement).

import { MAX_CLIENT_DURATION_MS, MAX_CLIENT_TIME_MS } from "../config/duration.js";

/** Whole milliseconds, not negative, at most 100,000 years. */
export const isDuration = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= MAX_CLIENT_DURATION_MS;

/** A string D-Bus can carry: none with a NUL character (no host name or command has one; clients.conf refuses one). */
export const isText = (v: unknown): v is string => typeof v === "string" && !v.includes("\0");

/** A checker's exit status as the reference keeps it: -2 (never ran), -1 (killed), or 0-255; D-Bus carries it as int16. */
export const isCheckerStatus = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= -2 && v <= 255;

/** A time (ms since the epoch) within MAX_CLIENT_TIME_MS of 1970: every time made from it plus a duration stays a valid Date. */
export const isTimeMs = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && Math.abs(v) <= MAX_CLIENT_TIME_MS;
