// mandos-keygen's command line as util-linux getopt(1) parses it for
// Debian's script (getopt_long, permuting): long options abbreviated to a
// unique prefix (`--leng 4096`), `--opt=value` and `--opt value`, short
// options clustered (`-fS`) or with the value attached (`-l4096`), an
// option's value taken whole even when it starts with `-` (`--comment
// -foo`, `-c -x`), operands anywhere, `--` ending the options. Errors in
// getopt's words, one line each, all of them, as getopt prints them.

export interface OptionSpec {
  readonly type: "boolean" | "string";
  readonly short?: string;
  readonly default?: string;
}

type Value<S extends OptionSpec> = S["type"] extends "boolean" ? boolean | undefined : S extends { readonly default: string } ? string : string | undefined;

export type OptionValues<O extends Record<string, OptionSpec>> = { -readonly [K in keyof O]: Value<O[K]> };

export interface ParsedCommandLine<O extends Record<string, OptionSpec>> {
  readonly values: OptionValues<O>;
  readonly positionals: string[];
  /** getopt's messages, without the program name; empty when the line parsed. */
  readonly errors: string[];
}

/**
 * Parses `argv` against `options`. An abbreviation that more than one long
 * option begins with is taken for the one in `preferred` if exactly one of
 * those begins with it: Debian's options, so that a command line Debian's
 * script takes (`--d DIR`) means the same though ours has more options
 * (`--dry-run`).
 */
export function getopt<O extends Record<string, OptionSpec>>(argv: readonly string[], options: O, preferred: ReadonlySet<string> = new Set()): ParsedCommandLine<O> {
  const values: Record<string, string | boolean | undefined> = {};
  for (const [name, spec] of Object.entries(options)) if (spec.default !== undefined) values[name] = spec.default;
  const positionals: string[] = [];
  const errors: string[] = [];
  const names = Object.keys(options);
  const byShort = new Map(Object.entries(options).filter(([, s]) => s.short !== undefined).map(([n, s]) => [s.short!, n]));

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const given = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const name = longOption(arg, given, names, preferred, errors);
      if (name === null) continue;
      if (options[name]!.type === "boolean") {
        if (eq >= 0) errors.push(`option '--${name}' doesn't allow an argument`);
        else values[name] = true;
      } else if (eq >= 0) {
        values[name] = arg.slice(eq + 1);
      } else if (i + 1 < argv.length) {
        values[name] = argv[++i]!;
      } else {
        errors.push(`option '--${name}' requires an argument`);
      }
      continue;
    }
    if (arg.startsWith("-") && arg !== "-") {
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j]!;
        const name = byShort.get(letter);
        if (name === undefined) {
          errors.push(`invalid option -- '${letter}'`);
          continue;
        }
        if (options[name]!.type === "boolean") {
          values[name] = true;
          continue;
        }
        if (j + 1 < arg.length) values[name] = arg.slice(j + 1);
        else if (i + 1 < argv.length) values[name] = argv[++i]!;
        else errors.push(`option requires an argument -- '${letter}'`);
        break;
      }
      continue;
    }
    positionals.push(arg);
  }
  return { values: values as OptionValues<O>, positionals, errors };
}

/** The long option `given` (from `arg`) names, exactly or as a prefix; null (and an error naming `arg`) if none or several. */
function longOption(arg: string, given: string, names: readonly string[], preferred: ReadonlySet<string>, errors: string[]): string | null {
  if (names.includes(given)) return given;
  const candidates = given === "" ? [] : names.filter((n) => n.startsWith(given));
  if (candidates.length === 1) return candidates[0]!;
  const preferredCandidates = candidates.filter((n) => preferred.has(n));
  if (preferredCandidates.length === 1) return preferredCandidates[0]!;
  if (candidates.length === 0) errors.push(`unrecognized option '${arg}'`);
  else {
    const listed = preferredCandidates.length > 1 ? preferredCandidates : candidates;
    errors.push(`option '${arg}' is ambiguous; possibilities: ${listed.map((n) => `'--${n}'`).join(" ")}`);
  }
  return null;
}
