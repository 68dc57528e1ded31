// Test support (not a test): asks python3's configparser, through
// test/data/config/configparser-dump.py, what it makes of our inputs.

import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../../test/data/config/configparser-dump.py", import.meta.url));

export type PyValue = string | { error: string };
export interface PyFile {
  error?: { type: string; lineno: number | null };
  defaults?: Record<string, string>;
  defaultValues?: [string, PyValue][];
  sections?: [string, [string, PyValue][]][];
}
export interface OracleAnswer {
  files: PyFile[];
  durations: (number | { error: string } | null)[];
  base64: (string | { error: string })[];
  /** Client.config_parser's settings by client name, or the class of what it raised; null without /usr/sbin/mandos. */
  clients: (Record<string, Record<string, unknown>> | { error: string } | null)[];
}

/** Why the oracle cannot run here, or undefined when it can. */
export function oracleMissing(): string | undefined {
  const probe = spawnSync("python3", ["-c", "import configparser"], { encoding: "utf8" });
  return probe.status === 0 ? undefined : "python3 with configparser is not installed";
}

export function askOracle(
  request: { files?: string[]; durations?: string[]; base64?: string[]; clients?: string[] },
  env: NodeJS.ProcessEnv = process.env,
): OracleAnswer {
  const result = spawnSync("python3", [SCRIPT], { input: JSON.stringify(request), encoding: "utf8", env, maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`oracle failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as OracleAnswer;
}

/** Our ConfigError codes for configparser's exception classes. */
export const PY_ERROR_CODES: Readonly<Record<string, string>> = {
  MissingSectionHeaderError: "CONFIG_MISSING_SECTION_HEADER",
  ParsingError: "CONFIG_PARSING_ERROR",
  DuplicateSectionError: "CONFIG_DUPLICATE_SECTION",
  DuplicateOptionError: "CONFIG_DUPLICATE_OPTION",
  InterpolationSyntaxError: "CONFIG_INTERPOLATION_SYNTAX",
  InterpolationMissingOptionError: "CONFIG_INTERPOLATION_MISSING_OPTION",
  InterpolationDepthError: "CONFIG_INTERPOLATION_DEPTH",
};

/** mulberry32: a small seeded generator, so that a failure can be replayed. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
