// `npm run fuzz`: the engine's fuzz target (test/fuzz/engine-fuzz.ts) for
// as long as asked. Here, not under test/: node --test runs every file
// under a test/ directory, and this one runs for minutes. Prints progress every 10,000 inputs and every violation, and exits
// 1 if there was one.
//   npm run fuzz -- --inputs 1000000 --seed 7

import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { loadCorpus } from "../test/fuzz/corpus.js";
import { runFuzz } from "../test/fuzz/engine-fuzz.js";

const { values } = parseArgs({
  options: {
    inputs: { type: "string", default: "1000000" },
    seed: { type: "string", default: String(Date.now() % 2 ** 31) },
    live: { type: "string", default: "0.05" },
  },
});
const inputs = Number(values.inputs);
const seed = Number(values.seed);
const started = performance.now();
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
    if (s.inputs % 10_000 !== 0) return;
    const secs = (performance.now() - started) / 1000;
    console.log(`${s.inputs} inputs, ${secs.toFixed(0)} s, completed ${s.completed}, failed ${s.failed}, waiting ${s.waiting}, violations ${s.violations.length}, max ${s.maxInputMs.toFixed(1)} ms/input, heap +${(s.maxHeapGrowth / 2 ** 20).toFixed(1)} MiB`);
  },
});
for (const v of stats.violations.slice(0, 50)) console.log("VIOLATION", JSON.stringify(v));
const secs = (performance.now() - started) / 1000;
console.log(
  `done: ${stats.inputs} inputs in ${secs.toFixed(0)} s (seed ${seed}): completed ${stats.completed}, failed ${stats.failed}, waiting ${stats.waiting}; ` +
    `violations ${stats.violations.length}; max ${stats.maxInputMs.toFixed(1)} ms/input; heap growth max ${(stats.maxHeapGrowth / 2 ** 20).toFixed(1)} MiB`,
);
console.log("errors:", JSON.stringify(stats.errors));
process.exitCode = stats.violations.length > 0 ? 1 : 0;
