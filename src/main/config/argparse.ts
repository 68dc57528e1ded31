// How Python's argparse (3.11, the reference's) reads a command line of
// optional arguments only, so that ours takes and refuses the same words
// with the same messages: which word is an option, a long option shortened
// to a prefix (allow_abbrev), "-p80" and "-p=80", "--" ending the options,
// a value that may not look like an option, flags chained after one dash,
// and the errors in argparse's order (an ambiguous abbreviation anywhere
// first, then left to right, unrecognized words last). Parsing only:
// commander (cli.ts) takes the words this returns, written out in full.

import { pyRepr } from "../python/repr.js";
import { pyInt } from "./python-values.js";

export interface ArgSpec {
  /** "-p", "--port"; the long form is the one handed on. */
  readonly short?: string;
  readonly long: string;
  /** help and version act where they stand; a flag takes no value. */
  readonly kind: "help" | "version" | "flag" | "value";
  /** For the usage line; a value option's. */
  readonly metavar?: string;
  /** A Python int() in this range (argparse's type=int, range ours). */
  readonly integer?: { readonly min: number; readonly max: number };
  /**
   * Ours, not the reference's: a prefix it shares with exactly one of the
   * reference's options means that one, as on the reference's command line.
   */
  readonly extra?: boolean;
}

export type ArgparseResult =
  | { readonly kind: "help" }
  | { readonly kind: "version" }
  | {
      readonly kind: "parsed";
      /** Every option taken, long form: "--debug", "--port=80". */
      readonly words: readonly string[];
      /** argparse's message for the first error, or none. */
      readonly error?: string;
    };

/** argparse's _negative_number_matcher: such a word is a value (no option of ours looks like a number). */
const NEGATIVE_NUMBER = /^-\d+$|^-\d*\.\d+$/;

interface Optional { readonly spec: ArgSpec | undefined; readonly optionString: string; readonly explicit: string | undefined }

class ArgparseError extends Error {}

/** "-p/--port", as argparse names an argument in its messages. */
const nameOf = (spec: ArgSpec): string => [spec.short, spec.long].filter(Boolean).join("/");

/**
 * argparse's _parse_optional: null for a word that is a value (not an
 * option), else the option it names (spec undefined: unknown) and any
 * value given with it. Throws ArgparseError for an ambiguous prefix.
 */
function classify(word: string, specs: readonly ArgSpec[]): Optional | null {
  const strings = new Map<string, ArgSpec>();
  for (const spec of specs) for (const s of [spec.short, spec.long]) if (s !== undefined) strings.set(s, spec);
  if (!word.startsWith("-")) return null;
  const exact = strings.get(word);
  if (exact) return { spec: exact, optionString: word, explicit: undefined };
  if (word.length === 1) return null;
  const equals = word.indexOf("=");
  if (equals >= 0) {
    const spec = strings.get(word.slice(0, equals));
    if (spec) return { spec, optionString: word.slice(0, equals), explicit: word.slice(equals + 1) };
  }
  // _get_option_tuples: a long prefix (before any "="); one dash, the
  // two-character option and the rest as its value, or a prefix.
  const tuples: Optional[] = [];
  if (word.startsWith("--")) {
    const prefix = equals < 0 ? word : word.slice(0, equals);
    const explicit = equals < 0 ? undefined : word.slice(equals + 1);
    for (const [s, spec] of strings) if (s.startsWith(prefix)) tuples.push({ spec, optionString: s, explicit });
  } else {
    for (const [s, spec] of strings) {
      if (s === word.slice(0, 2)) tuples.push({ spec, optionString: s, explicit: word.slice(2) });
      else if (s.startsWith(word)) tuples.push({ spec, optionString: s, explicit: undefined });
    }
  }
  // A command line written for the reference ("--a", "--serv") keeps its
  // meaning beside our extra options; among the reference's own options an
  // ambiguity stays one, as there.
  const reference = tuples.filter((t) => t.spec?.extra !== true);
  if (tuples.length > 1 && reference.length === 1) return reference[0]!;
  if (tuples.length > 1) throw new ArgparseError(`ambiguous option: ${word} could match ${tuples.map((t) => t.optionString).join(", ")}`);
  if (tuples.length === 1) return tuples[0]!;
  if (NEGATIVE_NUMBER.test(word)) return null;
  if (word.includes(" ")) return null;
  return { spec: undefined, optionString: word, explicit: undefined };
}

/** argparse's type=int (Python's int()), then our range. */
function checkValue(spec: ArgSpec, value: string): void {
  if (!spec.integer) return;
  const parsed = pyInt(value);
  if (parsed === undefined) throw new ArgparseError(`argument ${nameOf(spec)}: invalid int value: ${pyRepr(value)}`);
  const n = Number(parsed);
  if (n < spec.integer.min || n > spec.integer.max) {
    throw new ArgparseError(`argument ${nameOf(spec)}: invalid value: ${pyRepr(value)} (from ${spec.integer.min} to ${spec.integer.max})`);
  }
}

/**
 * Reads `argv` as argparse would with these options and no positional
 * arguments. `lenient`: go on past errors (dropping what they concern) and
 * let help and version pass, as the reference's --check does with the
 * words it does not know; the first error is still said. `known`: words
 * that are no option of these are no error (parse_known_args).
 */
export function argparse(argv: readonly string[], specs: readonly ArgSpec[], how: { readonly lenient?: boolean; readonly known?: boolean } = {}): ArgparseResult {
  const lenient = how.lenient === true;
  let first: string | undefined;
  const fail = (error: unknown): void => {
    if (!(error instanceof ArgparseError)) throw error;
    if (!lenient) throw error;
    first ??= error.message;
  };
  try {
    // First every word is classified: 'O' an option, 'A' a value, '-' the
    // first "--" (after it, all are values). An ambiguity fails here.
    const classes: Array<Optional | "A" | "-"> = [];
    for (const word of argv) {
      if (classes.includes("-")) classes.push("A");
      else if (word === "--") classes.push("-");
      else {
        try {
          classes.push(classify(word, specs) ?? "A");
        } catch (error) {
          fail(error);
          classes.push({ spec: undefined, optionString: word, explicit: undefined });
        }
      }
    }
    const words: string[] = [];
    const extras: string[] = [];
    for (let i = 0; i < argv.length; i++) {
      const c = classes[i]!;
      if (c === "A" || c === "-") {
        extras.push(argv[i]!);
        continue;
      }
      if (c.spec === undefined) {
        extras.push(argv[i]!);
        continue;
      }
      try {
        // One word: an option, or after one dash several flags ("-vh").
        const taken: Array<{ spec: ArgSpec; value?: string }> = [];
        let { spec, optionString, explicit } = c as { spec: ArgSpec; optionString: string; explicit: string | undefined };
        for (;;) {
          if (spec.kind === "value") {
            if (explicit !== undefined) {
              taken.push({ spec, value: explicit });
            } else {
              // The next word, if a value ("--" is none, nor is taken).
              if (classes[i + 1] !== "A") throw new ArgparseError(`argument ${nameOf(spec)}: expected one argument`);
              i++;
              taken.push({ spec, value: argv[i]! });
            }
            break;
          }
          taken.push({ spec });
          if (explicit === undefined) break;
          const next = optionString.length === 2 && optionString[1] !== "-" && explicit !== "" ? specs.find((s) => s.short === `-${explicit![0]}`) : undefined;
          if (next === undefined) throw new ArgparseError(`argument ${nameOf(spec)}: ignored explicit argument ${pyRepr(explicit)}`);
          spec = next;
          optionString = next.short!;
          explicit = explicit.length > 1 ? explicit.slice(1) : undefined;
        }
        for (const { spec: s, value } of taken) {
          if (s.kind === "help" || s.kind === "version") {
            if (!lenient) return s.kind === "help" ? { kind: "help" } : { kind: "version" };
            continue;
          }
          if (value === undefined) {
            words.push(s.long);
            continue;
          }
          try {
            checkValue(s, value);
            words.push(`${s.long}=${value}`);
          } catch (error) {
            if (!lenient) throw error;
            fail(error);
          }
        }
      } catch (error) {
        fail(error);
      }
    }
    if (extras.length > 0 && how.known !== true) fail(new ArgparseError(`unrecognized arguments: ${extras.join(" ")}`));
    return first === undefined ? { kind: "parsed", words } : { kind: "parsed", words, error: first };
  } catch (error) {
    if (!(error instanceof ArgparseError)) throw error;
    return { kind: "parsed", words: [], error: error.message };
  }
}

/**
 * argparse's usage line: "usage: mandos [-h] [-v] [-i IF] ...", wrapped
 * at `columns` less 2 as its HelpFormatter wraps it (Python takes $COLUMNS,
 * else the terminal's width, else 80), continuation lines indented under
 * the first option.
 */
export function usage(prog: string, specs: readonly ArgSpec[], columns: number): string {
  const parts = specs.map((s) => `[${s.short ?? s.long}${s.kind === "value" ? ` ${s.metavar ?? s.long.slice(2).toUpperCase()}` : ""}]`);
  const width = Math.max(columns - 2, 11);
  const prefix = "usage: ";
  const whole = `${prog} ${parts.join(" ")}`;
  if (prefix.length + whole.length <= width) return `${prefix}${whole}\n`;
  const indent = " ".repeat(prefix.length + prog.length + 1);
  const lines: string[][] = [];
  let line: string[] = [prog];
  let length = prefix.length + prog.length;
  for (const part of parts) {
    if (length + 1 + part.length > width) {
      lines.push(line);
      line = [];
      length = indent.length - 1;
    }
    line.push(part);
    length += part.length + 1;
  }
  lines.push(line);
  return `${prefix}${lines.map((l, n) => (n === 0 ? "" : indent) + l.join(" ")).join("\n")}\n`;
}
