/**
 * A self-contained HTML report: one file, no external assets (images are inline PNG data URIs,
 * charts are inline SVG), readable offline and attachable to a paper review or an issue.
 * @module
 */

/** A paragraph of text (plain text; escaped). */
export interface TextBlock {
  kind: 'text';
  text: string;
}
/** A table with a header row. Numbers are formatted with `digits` decimals. */
export interface TableBlock {
  kind: 'table';
  caption?: string;
  columns: string[];
  rows: Array<Array<string | number | null>>;
  digits?: number;
  /** Row indices to highlight (e.g. the method recommended). */
  highlight?: number[];
}
/** One PNG image. */
export interface ImageBlock {
  kind: 'image';
  caption?: string;
  png: Uint8Array;
  /** Display width in CSS pixels (images are scaled with nearest-neighbour for pixel art). */
  width?: number;
}
/** Pairs of images side by side (e.g. generated vs nearest training image), each with a label. */
export interface PairsBlock {
  kind: 'pairs';
  caption?: string;
  pairs: Array<{ left: Uint8Array; right: Uint8Array; label: string; flagged?: boolean }>;
  leftTitle: string;
  rightTitle: string;
}
/** A histogram of values with vertical threshold lines. */
export interface HistogramBlock {
  kind: 'histogram';
  caption?: string;
  series: Array<{ name: string; values: number[] }>;
  thresholds?: Array<{ value: number; label: string }>;
  bins?: number;
  xLabel: string;
}
/** Line chart of one or more series over x. */
export interface LineChartBlock {
  kind: 'line';
  caption?: string;
  x: number[];
  series: Array<{ name: string; y: Array<number | null> }>;
  xLabel: string;
  yLabel: string;
  /** Reverse the x axis (e.g. diffusion timesteps run from T down to 0). */
  reverseX?: boolean;
}
/** Key/value facts. */
export interface FactsBlock {
  kind: 'facts';
  facts: Array<[string, string | number]>;
}

/** Anything a section can hold. */
export type ReportBlock = TextBlock | TableBlock | ImageBlock | PairsBlock | HistogramBlock | LineChartBlock | FactsBlock;

/** A titled section. */
export interface ReportSection {
  id: string;
  title: string;
  blocks: ReportBlock[];
}

/** The whole report. */
export interface ReportDocument {
  title: string;
  subtitle?: string;
  generatedAt: string;
  sections: ReportSection[];
}

const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2'];

/** Escapes text for HTML. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

function dataUri(png: Uint8Array): string {
  return `data:image/png;base64,${Buffer.from(png).toString('base64')}`;
}

function fmt(v: string | number | null, digits: number): string {
  if (v === null) return '—';
  if (typeof v === 'string') return escapeHtml(v);
  if (!Number.isFinite(v)) return v > 0 ? '∞' : v < 0 ? '−∞' : 'NaN';
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function svgFrame(w: number, h: number, inner: string, xLabel: string, yLabel: string): string {
  return (
    `<svg class="chart" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" xmlns="http://www.w3.org/2000/svg">` +
    inner +
    `<text x="${w / 2}" y="${h - 4}" text-anchor="middle" class="axis-label">${escapeHtml(xLabel)}</text>` +
    `<text x="12" y="${h / 2}" text-anchor="middle" transform="rotate(-90 12 ${h / 2})" class="axis-label">${escapeHtml(yLabel)}</text>` +
    `</svg>`
  );
}

function renderHistogram(b: HistogramBlock): string {
  const W = 560;
  const H = 260;
  const m = { l: 48, r: 16, t: 16, b: 40 };
  const finite = b.series.flatMap((s) => s.values.filter(Number.isFinite));
  const tv = (b.thresholds ?? []).map((t) => t.value);
  let lo = Math.min(...finite, ...tv);
  let hi = Math.max(...finite, ...tv);
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  if (hi === lo) hi = lo + 1;
  const bins = b.bins ?? 30;
  const bw = (hi - lo) / bins;
  const counts = b.series.map((s) => {
    const c = new Array<number>(bins).fill(0);
    for (const v of s.values) if (Number.isFinite(v)) c[Math.min(bins - 1, Math.floor((v - lo) / bw))]! += 1;
    return c;
  });
  const maxC = Math.max(1, ...counts.flat());
  const x = (v: number): number => m.l + ((v - lo) / (hi - lo)) * (W - m.l - m.r);
  const y = (c: number): number => H - m.b - (c / maxC) * (H - m.t - m.b);
  let inner = `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" class="axis"/>`;
  for (const t of niceTicks(lo, hi)) inner += `<text x="${x(t)}" y="${H - m.b + 14}" text-anchor="middle" class="tick">${t}</text>`;
  for (const t of niceTicks(0, maxC, 4)) inner += `<text x="${m.l - 6}" y="${y(t) + 4}" text-anchor="end" class="tick">${t}</text>`;
  counts.forEach((c, si) => {
    const color = PALETTE[si % PALETTE.length];
    c.forEach((n, i) => {
      if (n > 0) {
        inner += `<rect x="${x(lo + i * bw)}" y="${y(n)}" width="${Math.max(1, x(lo + (i + 1) * bw) - x(lo + i * bw) - 1)}" height="${H - m.b - y(n)}" fill="${color}" fill-opacity="${b.series.length > 1 ? 0.55 : 0.85}"/>`;
      }
    });
  });
  for (const t of b.thresholds ?? []) {
    inner += `<line x1="${x(t.value)}" y1="${m.t}" x2="${x(t.value)}" y2="${H - m.b}" class="threshold"/><text x="${x(t.value) + 3}" y="${m.t + 10}" class="tick">${escapeHtml(t.label)}</text>`;
  }
  const legend = b.series
    .map((s, i) => `<span class="legend"><i style="background:${PALETTE[i % PALETTE.length]}"></i>${escapeHtml(s.name)} (n=${s.values.length})</span>`)
    .join(' ');
  return `<figure>${svgFrame(W, H, inner, b.xLabel, 'count')}<figcaption>${legend}${b.caption ? ` — ${escapeHtml(b.caption)}` : ''}</figcaption></figure>`;
}

function renderLine(b: LineChartBlock): string {
  const W = 560;
  const H = 260;
  const m = { l: 52, r: 16, t: 16, b: 40 };
  const ys = b.series.flatMap((s) => s.y.filter((v): v is number => v !== null && Number.isFinite(v)));
  let lo = Math.min(...ys);
  let hi = Math.max(...ys);
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  if (hi === lo) [lo, hi] = [lo - 0.5, hi + 0.5];
  const x0 = Math.min(...b.x);
  const x1 = Math.max(...b.x);
  const span = x1 - x0 || 1;
  const x = (v: number): number => {
    const f = (v - x0) / span;
    return m.l + (b.reverseX ? 1 - f : f) * (W - m.l - m.r);
  };
  const y = (v: number): number => H - m.b - ((v - lo) / (hi - lo)) * (H - m.t - m.b);
  let inner = `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" class="axis"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" class="axis"/>`;
  for (const t of niceTicks(x0, x1)) inner += `<text x="${x(t)}" y="${H - m.b + 14}" text-anchor="middle" class="tick">${t}</text>`;
  for (const t of niceTicks(lo, hi, 4)) inner += `<text x="${m.l - 6}" y="${y(t) + 4}" text-anchor="end" class="tick">${t}</text>`;
  b.series.forEach((s, si) => {
    let d = '';
    let pen = false;
    s.y.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(b.x[i] as number).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    inner += `<path d="${d}" fill="none" stroke="${PALETTE[si % PALETTE.length]}" stroke-width="1.6"/>`;
  });
  const legend = b.series
    .map((s, i) => `<span class="legend"><i style="background:${PALETTE[i % PALETTE.length]}"></i>${escapeHtml(s.name)}</span>`)
    .join(' ');
  return `<figure>${svgFrame(W, H, inner, b.xLabel, b.yLabel)}<figcaption>${legend}${b.caption ? ` — ${escapeHtml(b.caption)}` : ''}</figcaption></figure>`;
}

function renderBlock(b: ReportBlock): string {
  switch (b.kind) {
    case 'text':
      return `<p>${escapeHtml(b.text)}</p>`;
    case 'facts':
      return `<dl class="facts">${b.facts.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${fmt(v, 3)}</dd>`).join('')}</dl>`;
    case 'table': {
      const d = b.digits ?? 3;
      const hl = new Set(b.highlight ?? []);
      return (
        `<table>${b.caption ? `<caption>${escapeHtml(b.caption)}</caption>` : ''}` +
        `<thead><tr>${b.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr></thead><tbody>` +
        b.rows.map((r, i) => `<tr${hl.has(i) ? ' class="hl"' : ''}>${r.map((v) => `<td>${fmt(v, d)}</td>`).join('')}</tr>`).join('') +
        `</tbody></table>`
      );
    }
    case 'image':
      return `<figure><img class="pix" src="${dataUri(b.png)}" ${b.width ? `style="width:${b.width}px"` : ''} alt="${escapeHtml(b.caption ?? 'image')}"/>${b.caption ? `<figcaption>${escapeHtml(b.caption)}</figcaption>` : ''}</figure>`;
    case 'pairs':
      return (
        `<figure><div class="pairs">` +
        b.pairs
          .map(
            (p) =>
              `<div class="pair${p.flagged ? ' flagged' : ''}"><img class="pix" src="${dataUri(p.left)}" alt="${escapeHtml(b.leftTitle)}"/><img class="pix" src="${dataUri(p.right)}" alt="${escapeHtml(b.rightTitle)}"/><span>${escapeHtml(p.label)}</span></div>`,
          )
          .join('') +
        `</div><figcaption>left: ${escapeHtml(b.leftTitle)}; right: ${escapeHtml(b.rightTitle)}${b.caption ? ` — ${escapeHtml(b.caption)}` : ''}</figcaption></figure>`
      );
    case 'histogram':
      return renderHistogram(b);
    case 'line':
      return renderLine(b);
  }
}

const CSS = `
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2937;background:#f8fafc}
header{background:#0f172a;color:#f8fafc;padding:24px 40px}header h1{margin:0 0 4px;font-size:26px}header p{margin:0;color:#cbd5e1}
nav{padding:8px 40px;background:#e2e8f0}nav a{margin-right:16px;color:#1e40af;text-decoration:none}
main{padding:8px 40px 40px;max-width:1200px}section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:16px 24px;margin:20px 0}
h2{margin-top:0;font-size:20px}table{border-collapse:collapse;margin:8px 0 16px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #cbd5e1;padding:4px 10px;text-align:right}th{background:#f1f5f9}td:first-child,th:first-child{text-align:left}
tr.hl td{background:#ecfdf5;font-weight:600}caption{text-align:left;font-weight:600;padding:4px 0}
figure{margin:8px 0 16px}figcaption{color:#475569;font-size:13px}img.pix{image-rendering:pixelated;min-width:64px}
.pairs{display:flex;flex-wrap:wrap;gap:10px}.pair{display:flex;flex-direction:column;align-items:center;border:2px solid #e2e8f0;padding:4px;border-radius:6px}
.pair img{width:72px;margin:1px}.pair span{font-size:12px;color:#334155}.pair.flagged{border-color:#dc2626}
.chart .axis{stroke:#64748b}.chart .tick{font-size:10px;fill:#475569}.chart .axis-label{font-size:11px;fill:#334155}
.chart .threshold{stroke:#111827;stroke-dasharray:4 3}.legend{margin-right:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dl.facts dt{color:#475569}dl.facts dd{margin:0;font-variant-numeric:tabular-nums}
`;

/** Renders a {@link ReportDocument} to one self-contained HTML string. */
export function renderReport(doc: ReportDocument): string {
  const nav = doc.sections.map((s) => `<a href="#${escapeHtml(s.id)}">${escapeHtml(s.title)}</a>`).join('');
  const body = doc.sections
    .map((s) => `<section id="${escapeHtml(s.id)}"><h2>${escapeHtml(s.title)}</h2>${s.blocks.map(renderBlock).join('\n')}</section>`)
    .join('\n');
  return (
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">` +
    `<title>${escapeHtml(doc.title)}</title><style>${CSS}</style></head><body>` +
    `<header><h1>${escapeHtml(doc.title)}</h1><p>${escapeHtml(doc.subtitle ?? '')} · generated ${escapeHtml(doc.generatedAt)}</p></header>` +
    `<nav>${nav}</nav><main>${body}</main></body></html>`
  );
}
