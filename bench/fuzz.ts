// `npm run fuzz`: the engine's fuzz target (test/fuzz/engine-fuzz.ts) for
// as long as asked; with --legacy, the legacy flight's
// (test/fuzz/legacy-fuzz.ts: mutated OpenPGP certificates). Here, not under
// test/: node --test runs every file under a test/ directory, and this one
// runs for minutes. Prints progress every 10,000 inputs (1,000 legacy) and
// every violation, and exits 1 if there was one.
//   npm run fuzz -- --inputs 1000000 --seed 7
//   npm run fuzz -- --legacy --inputs 100000

import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { loadCorpus } from "../test/fuzz/corpus.js";
import { runFuzz } from "../test/fuzz/engine-fuzz.js";
import { runLegacyFuzz } from "../test/fuzz/legacy-fuzz.js";
import { freshIdentity } from "../test/helpers/legacy-keys.js";

const { values } = parseArgs({
  options: {
    inputs: { type: "string", default: "1000000" },
    seed: { type: "string", default: String(Date.now() % 2 ** 31) },
    live: { type: "string", default: "0.05" },
    legacy: { type: "boolean", default: false },
  },
});
const inputs = Number(values.inputs);
const seed = Number(values.seed);
const started = performance.now();
const seconds = (): string => ((performance.now() - started) / 1000).toFixed(0);

/** What both targets count. */
interface Counts {
  readonly inputs: number;
  readonly completed: number;
  readonly failed: number;
  readonly violations: readonly unknown[];
  readonly maxInputMs: number;
  readonly errors: Readonly<Record<string, number>>;
}

/** `extra`: the target's own counts, after the shared ones. */
function progress(s: Counts, extra = ""): void {
  console.log(`${s.inputs} inputs, ${seconds()} s, completed ${s.completed}, failed ${s.failed}${extra}, violations ${s.violations.length}, max ${s.maxInputMs.toFixed(1)} ms/input`);
}

/** The violations (the first 50), a summary line, the errors by kind; exit status 1 if there was a violation. */
function finish(s: Counts, extra = ""): void {
  for (const v of s.violations.slice(0, 50)) console.log("VIOLATION", JSON.stringify(v));
  console.log(
    `done: ${s.inputs} inputs in ${seconds()} s (seed ${seed}): completed ${s.completed}, failed ${s.failed}${extra}; ` +
      `violations ${s.violations.length}; max ${s.maxInputMs.toFixed(1)} ms/input`,
  );
  console.log("errors:", JSON.stringify(s.errors));
  process.exitCode = s.violations.length > 0 ? 1 : 0;
}

const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);

if (values.legacy) {
  console.log(`fuzzing the legacy flight's certificate checks: ${inputs} inputs, seed ${seed}`);
  finish(await runLegacyFuzz({
    inputs,
    seed,
    identity: await freshIdentity(2048),
    // An input is two handshakes' worth of RSA and OpenPGP.js, ~10-30 ms; generous for a loaded machine.
    maxInputMs: 2000,
    now: () => performance.now(),
    onProgress: (s) => {
      if (s.inputs % 1000 === 0) progress(s);
    },
  }));
} else {
  console.log(`fuzzing the TLS engine: ${inputs} inputs, seed ${seed}`);
  const stats = runFuzz({
    inputs,
    seed,
    corpus: loadCorpus(),
    // Generous: a shared, loaded machine; an input's own work is well under 10 ms.
    maxInputMs: 1000,
    now: () => performance.now(),
    maxHeapGrowth: 256 * 1024 * 1024,
    liveShare: Number(values.live),
    onProgress: (s) => {
      if (s.inputs % 10_000 === 0) progress(s, `, waiting ${s.waiting}, heap +${mib(s.maxHeapGrowth)} MiB`);
    },
  });
  finish(stats, `, waiting ${stats.waiting}; heap growth max ${mib(stats.maxHeapGrowth)} MiB`);
}
