// The picture of a reboot wave (issue 19) as a standalone SVG: on the
// left, the share of the wave's machines that hold their secret against
// the time since the wave began; on the right, the distribution of the
// latency to the secret (the share of machines served within x). Both time
// axes are logarithmic, so a server that needs 0.5 s and one that needs
// 40 s fit one picture.
//
// A small writer of our own rather than a plotting library: two panels of
// step lines, axes and a legend are some 150 lines of string building,
// while the well-kept libraries (Vega, Plotly, D3) need a browser, a DOM
// or a canvas package to render to SVG, and a dependency tree larger than
// this project's for one picture.

export interface WaveSeries {
  readonly label: string;
  /** The wave's machines (connections attempted): the 100% of both panels. */
  readonly attempted: number;
  /** When each secret arrived, ms since the wave began. */
  readonly completionsMs: readonly number[];
  /** Each connection's latency to its secret, ms. */
  readonly latenciesMs: readonly number[];
  /** One line under the label: how the wave was made. */
  readonly note: string;
}

const COLORS = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b"];
const WIDTH = 980;
const PANEL = { width: 400, height: 260, top: 70, left: [70, 545] } as const;
/** The time axes: 1 ms to 100 s. */
const DECADES = [1, 10, 100, 1_000, 10_000, 100_000];

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const fmt = (x: number): string => (Math.round(x * 10) / 10).toString();

function timeLabel(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${ms / 1000} s`;
}

/** x of `ms` on a panel's logarithmic axis. */
function xOf(ms: number, left: number): number {
  const lo = Math.log10(DECADES[0]!);
  const hi = Math.log10(DECADES[DECADES.length - 1]!);
  const v = Math.min(hi, Math.max(lo, Math.log10(Math.max(ms, DECADES[0]!))));
  return left + ((v - lo) / (hi - lo)) * PANEL.width;
}

const yOf = (share: number): number => PANEL.top + PANEL.height * (1 - share);

/** A step line through (sorted[i], (i + 1) / total), thinned to at most ~400 steps. */
function stepPath(sorted: readonly number[], total: number, left: number): string {
  if (sorted.length === 0 || total === 0) return "";
  const stride = Math.max(1, Math.floor(sorted.length / 400));
  let d = `M${fmt(xOf(sorted[0]!, left))},${fmt(yOf(0))}`;
  for (let i = 0; i < sorted.length; i += stride) {
    const last = Math.min(sorted.length - 1, i + stride - 1);
    const x = xOf(sorted[last]!, left);
    d += `H${fmt(x)}`;
    d += `V${fmt(yOf((last + 1) / total))}`;
  }
  return d;
}

function panel(left: number, title: string, xTitle: string): string {
  let out = `<text x="${left + PANEL.width / 2}" y="${PANEL.top - 14}" text-anchor="middle" font-weight="bold">${esc(title)}</text>\n`;
  out += `<rect x="${left}" y="${PANEL.top}" width="${PANEL.width}" height="${PANEL.height}" fill="none" stroke="#444"/>\n`;
  for (const ms of DECADES) {
    const x = fmt(xOf(ms, left));
    out += `<line x1="${x}" y1="${PANEL.top}" x2="${x}" y2="${PANEL.top + PANEL.height}" stroke="#ddd"/>`;
    out += `<text x="${x}" y="${PANEL.top + PANEL.height + 16}" text-anchor="middle">${timeLabel(ms)}</text>\n`;
  }
  for (const share of [0, 0.25, 0.5, 0.75, 1]) {
    const y = fmt(yOf(share));
    out += `<line x1="${left}" y1="${y}" x2="${left + PANEL.width}" y2="${y}" stroke="#ddd"/>`;
    out += `<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${share * 100}%</text>\n`;
  }
  out += `<text x="${left + PANEL.width / 2}" y="${PANEL.top + PANEL.height + 36}" text-anchor="middle">${esc(xTitle)}</text>\n`;
  return out;
}

/** The whole picture; `caption` lines go under the legend. */
export function waveSvg(title: string, series: readonly WaveSeries[], caption: readonly string[]): string {
  const legendTop = PANEL.top + PANEL.height + 64;
  const height = legendTop + series.length * 36 + caption.length * 18 + 20;
  let out = `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">\n`;
  out += `<rect width="${WIDTH}" height="${height}" fill="white"/>\n`;
  out += `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>\n`;
  const [leftA, leftB] = PANEL.left;
  out += panel(leftA, "Machines holding their secret", "time since the wave began (log scale)");
  out += panel(leftB, "Latency to the secret (share served within x)", "latency (log scale)");
  out += `<text transform="translate(16 ${PANEL.top + PANEL.height / 2}) rotate(-90)" text-anchor="middle">share of the wave's machines</text>\n`;
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const line = (d: string): string => (d ? `<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>\n` : "");
    out += line(stepPath(s.completionsMs, s.attempted, leftA));
    out += line(stepPath(s.latenciesMs, s.attempted, leftB));
    const y = legendTop + i * 36;
    out += `<line x1="${leftA}" y1="${y}" x2="${leftA + 24}" y2="${y}" stroke="${color}" stroke-width="3"/>`;
    out += `<text x="${leftA + 32}" y="${y + 4}" font-weight="bold">${esc(s.label)}</text>`;
    out += `<text x="${leftA + 32}" y="${y + 19}" fill="#444">${esc(s.note)}</text>\n`;
  });
  caption.forEach((line, i) => {
    out += `<text x="${leftA}" y="${legendTop + series.length * 36 + 8 + i * 18}" fill="#444">${esc(line)}</text>\n`;
  });
  return out + "</svg>\n";
}
