// Which of the reboot simulation's runs make the picture of the wave
// (wave-svg.ts), and what it says under each line. The load generator is
// our Node one (load-generator.ts) for every server, because it records
// each connection's timings; mandos-load prints only percentiles.

import type { RebootRun } from "./reboot.js";
import { waveSvg, type WaveSeries } from "./wave-svg.js";

const LABELS: Record<string, string> = {
  "mandos-ts": "mandos-ts",
  "native-ref-server": "native GnuTLS server (mandos-load's ref-server -w 2 --nodelay)",
  "python-reference": "Python reference (Debian mandos 1.8.16)",
};

function series(run: RebootRun): WaveSeries | null {
  const samples = run.report.samples;
  if (!samples) return null;
  const r = run.report;
  const workers = run.server === "mandos-ts" ? `, --workers ${run.workers}` : "";
  const last = samples.completionsMs[samples.completionsMs.length - 1] ?? 0;
  const served = `${r.succeeded} of ${r.attempted < run.clients ? "the first " : ""}${r.attempted} machines served`;
  const codes = Object.entries(r.failureCodes).map(([code, n]) => `${n} ${code}`).join(", ");
  const when = r.succeeded === r.attempted ? ` in ${(last / 1000).toFixed(2)} s` : ` (${r.failures} failed${codes ? `: ${codes}` : ""})`;
  const latency = r.succeeded > 0 ? `; latency p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms` : "";
  return {
    label: `${LABELS[run.server] ?? run.server}${workers}`,
    attempted: r.attempted,
    completionsMs: samples.completionsMs,
    latenciesMs: samples.latenciesMs,
    note: `${served}${when}, ${run.concurrency} at once${latency}`,
  };
}

/**
 * The picture from the smallest wave that has timings: ours with 0 and 2
 * workers and the native server at the highest concurrency measured, and
 * the Python reference as it was run (fewer machines: it serves about one
 * a second).
 */
export function wavePicture(
  runs: readonly RebootRun[],
  machine: { readonly cores: number; readonly cpu: string; readonly node: string; readonly date: string },
): { svg: string; series: WaveSeries[] } | null {
  const sampled = runs.filter((r) => r.report.samples);
  if (sampled.length === 0) return null;
  const n = Math.min(...sampled.map((r) => r.clients));
  const concurrency = Math.max(...sampled.filter((r) => r.clients === n && r.server === "mandos-ts").map((r) => r.concurrency));
  const chosen = [
    ...sampled.filter((r) => r.clients === n && r.concurrency === concurrency && r.server === "mandos-ts" && (r.workers === 0 || r.workers === 2)),
    ...sampled.filter((r) => r.clients === n && r.concurrency === concurrency && r.server === "native-ref-server"),
    ...sampled.filter((r) => r.clients === n && r.server === "python-reference"),
  ];
  const lines = chosen.map(series).filter((s): s is WaveSeries => s !== null);
  const svg = waveSvg(
    `A reboot wave of ${n.toLocaleString("en")} machines`,
    lines,
    [
      "Each machine: its own Ed25519 key, a TLS 1.3 handshake with raw public keys, a 1,200-byte secret checked byte for byte.",
      "Load generator: bench/load-generator.ts (Node), the same for every server. Ours and the native server after an unmeasured warm-up.",
      `Load generator and server share one machine: ${machine.cores} × ${machine.cpu}, Node ${machine.node}, ${machine.date.slice(0, 10)} (npm run bench).`,
    ],
  );
  return { svg, series: lines };
}
