/**
 * A grouped bar chart as SVG text, with no dependencies: one panel per metric, one group
 * of bars per model, one bar per engine, on a logarithmic axis (a tiny model and a 1B model
 * differ by orders of magnitude in tokens/s, which a linear axis would flatten to nothing).
 *
 * ```ts
 * const svg = groupedBarChart({
 *   title: "tokens/s",
 *   series: ["ours", "llama.cpp"],
 *   panels: [{ title: "decode tok/s", groups: [{ label: "qwen Q8_0", values: [12.5, 20.1] }] }],
 * });
 * ```
 */

/** One cluster of bars: a value per series, `null` where that series has no figure. */
export interface BarGroup {
  readonly label: string;
  readonly values: readonly (number | null)[];
}

/** One metric, drawn as its own chart beside the others. */
export interface BarPanel {
  readonly title: string;
  readonly groups: readonly BarGroup[];
}

/** What {@link groupedBarChart} draws. */
export interface BarChart {
  readonly title: string;
  /** Names of the bars in each group, in order (shown in the legend). */
  readonly series: readonly string[];
  readonly panels: readonly BarPanel[];
  /** A line under the title (settings, machine). */
  readonly subtitle?: string;
}

const COLORS = ["#3b6fb6", "#e08a2c", "#4e9a52", "#b64a4a"];
const PANEL_WIDTH = 520;
const PANEL_HEIGHT = 360;
const MARGIN = { top: 40, right: 16, bottom: 90, left: 64 };
const HEADER = 56;

/** Escapes text for SVG element content and attribute values. */
function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A value with three significant digits, without exponent notation for everyday sizes. */
export function formatValue(v: number): string {
  if (v >= 1000) return Math.round(v).toLocaleString("en-US");
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  if (v >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

function panelSvg(panel: BarPanel, series: readonly string[], x0: number, y0: number): string {
  const out: string[] = [];
  const plotW = PANEL_WIDTH - MARGIN.left - MARGIN.right;
  const plotH = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
  const left = x0 + MARGIN.left;
  const top = y0 + MARGIN.top;
  out.push(`<text x="${x0 + PANEL_WIDTH / 2}" y="${y0 + 22}" text-anchor="middle" font-size="14" font-weight="bold">${esc(panel.title)}</text>`);
  const values = panel.groups.flatMap((g) => g.values).filter((v): v is number => v !== null && v > 0 && Number.isFinite(v));
  if (values.length === 0) {
    out.push(`<text x="${left + plotW / 2}" y="${top + plotH / 2}" text-anchor="middle" font-size="12" fill="#777">no figures</text>`);
    return out.join("\n");
  }
  const lo = Math.floor(Math.log10(Math.min(...values)));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...values))));
  const yOf = (v: number) => top + plotH - ((Math.log10(v) - lo) / (hi - lo)) * plotH;
  for (let e = lo; e <= hi; e++) {
    const y = yOf(10 ** e);
    out.push(`<line x1="${left}" y1="${y.toFixed(1)}" x2="${left + plotW}" y2="${y.toFixed(1)}" stroke="#ddd"/>`);
    const tick = e >= 0 ? (10 ** e).toLocaleString("en-US") : (10 ** e).toFixed(-e);
    out.push(`<text x="${left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end" font-size="11">${tick}</text>`);
  }
  out.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#333"/>`);
  out.push(`<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#333"/>`);
  const groupW = plotW / panel.groups.length;
  const barW = Math.min(40, (groupW * 0.8) / series.length);
  panel.groups.forEach((group, gi) => {
    const gx = left + gi * groupW + (groupW - barW * series.length) / 2;
    group.values.forEach((v, si) => {
      const bx = gx + si * barW;
      if (v === null || !(v > 0) || !Number.isFinite(v)) {
        out.push(`<text x="${(bx + barW / 2).toFixed(1)}" y="${top + plotH - 4}" text-anchor="middle" font-size="10" fill="#999">–</text>`);
        return;
      }
      const y = yOf(v);
      out.push(`<rect x="${bx.toFixed(1)}" y="${y.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(top + plotH - y).toFixed(1)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${group.label} ${series[si] ?? ""}: ${formatValue(v)}`)}</title></rect>`);
      out.push(`<text x="${(bx + barW / 2 - 1).toFixed(1)}" y="${(y - 3).toFixed(1)}" text-anchor="middle" font-size="9">${esc(formatValue(v))}</text>`);
    });
    const lx = left + gi * groupW + groupW / 2;
    const ly = top + plotH + 14;
    out.push(`<text x="${lx.toFixed(1)}" y="${ly}" text-anchor="end" font-size="11" transform="rotate(-30 ${lx.toFixed(1)} ${ly})">${esc(group.label)}</text>`);
  });
  return out.join("\n");
}

/** The chart as a standalone SVG document. */
export function groupedBarChart(chart: BarChart): string {
  const width = PANEL_WIDTH * Math.max(1, chart.panels.length);
  const height = HEADER + PANEL_HEIGHT + 10;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="12" y="22" font-size="16" font-weight="bold">${esc(chart.title)}</text>`,
  ];
  if (chart.subtitle) parts.push(`<text x="12" y="40" font-size="11" fill="#555">${esc(chart.subtitle)}</text>`);
  chart.series.forEach((name, i) => {
    const x = width - 140 * (chart.series.length - i);
    parts.push(`<rect x="${x}" y="12" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`);
    parts.push(`<text x="${x + 16}" y="22" font-size="12">${esc(name)}</text>`);
  });
  chart.panels.forEach((panel, i) => parts.push(panelSvg(panel, chart.series, i * PANEL_WIDTH, HEADER)));
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}
