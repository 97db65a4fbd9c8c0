/**
 * The evidence runner behind `scripts/eval-solidmark.mjs`: runs {@link auditSolidMark} on a marked
 * model and a random-init model of the same configuration and prints the eidetic counts next to
 * the three nulls (analytic 2δ − δ², shuffled keys, random init), per duplication group, with the
 * time per image.
 * @module
 */
import { auditSolidMark, type SolidMarkAuditOptions, type SolidMarkAuditProgress, type SolidMarkAuditReport } from './audit.js';
import type { SolidMarkDeltaCounts, SolidMarkGroupSummary } from './summary.js';

/** Options of {@link runSolidMarkEvaluation}: the audit's, plus a line logger for progress. */
export interface SolidMarkEvaluationOptions extends SolidMarkAuditOptions {
  /** Receives progress lines (e.g. `console.error`); default silent. */
  log?: (line: string) => void;
}

/** The report and its text rendering. */
export interface SolidMarkEvaluation {
  report: SolidMarkAuditReport;
  text: string;
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : '–');
const num = (x: number | null, d = 1): string => (x === null || !Number.isFinite(x) ? '–' : x.toFixed(d));

function countRow(c: SolidMarkDeltaCounts): string {
  const cells = [
    c.delta.toString().padEnd(6),
    `${c.count} (${pct(c.rate)})`.padEnd(15),
    `${num(c.chance.expected)} (${pct(c.chance.rate)})`.padEnd(16),
    num(c.chance.givenPredictions).padEnd(10),
    `${num(c.shuffled.mean)} ± ${num(c.shuffled.sd)}`.padEnd(14),
    c.randomInit ? `${c.randomInit.count} (${pct(c.randomInit.rate)})`.padEnd(14) : 'not run'.padEnd(14),
    String(c.meanKeyCount),
  ];
  return `  ${cells.join(' ')}`;
}

function groupBlock(title: string, g: SolidMarkGroupSummary): string[] {
  const lines = [
    `${title} — N = ${g.n}; ℓ_SM mean ${num(g.meanDistance, 4)}, median ${num(g.medianDistance, 4)}` +
      (g.randomInitMeanDistance !== null ? `; random-init mean ${num(g.randomInitMeanDistance, 4)}` : '') +
      (g.highBorderStd ? `; ${g.highBorderStd} border(s) not solid` : ''),
    `  ${'δ'.padEnd(6)} ${'model'.padEnd(15)} ${'chance 2δ−δ²'.padEnd(16)} ${'chance|k̂'.padEnd(10)} ${'shuffled keys'.padEnd(14)} ${'random init'.padEnd(14)} mean-key`,
    ...g.counts.map(countRow),
  ];
  const keysPerImage = g.counts[0]?.hitKeyIndex.length ?? 1;
  if (keysPerImage > 1) {
    for (const c of g.counts) lines.push(`  which key hit at δ = ${c.delta}: [${c.hitKeyIndex.join(', ')}] (by copy index)`);
  }
  return lines;
}

/**
 * Renders an audit report as plain text: headline counts (trained images) against the nulls,
 * the membership groups (held-out keys are a never-trained control), the duplication groups,
 * time per image and warnings.
 */
export function formatSolidMarkReport(report: SolidMarkAuditReport): string {
  const s = report.summary;
  const out: string[] = [];
  out.push(
    `SolidMark audit: ${report.results.length} image(s), ${s.repeats} outpainting(s) each; ` +
      `${report.complete ? 'complete' : 'INCOMPLETE'}${report.interrupted ? ' (interrupted)' : ''}; ` +
      `${report.computed} computed, ${report.reused} reused from disk`,
  );
  out.push('Counts are #{ℓ_SM < δ}; a count means nothing unless it clearly exceeds all three nulls.');
  out.push('');
  out.push(...groupBlock('Trained images (copies ≥ 1)', s.overall));
  for (const [name, g] of Object.entries(s.byGroup)) {
    if (!g) continue;
    out.push('');
    out.push(...groupBlock(`Group ${name}${name === 'held-out' ? ' (keys never trained: expect chance)' : ''}`, g));
  }
  // Duplication levels add information only when they do not coincide with the membership groups
  // (e.g. the duplication study's d = 1…9); copies 0 is the held-out group, already printed.
  const levels = Object.keys(s.byCopies).filter((k) => k !== '0').sort((a, b) => Number(a) - Number(b));
  const groupOfLevel = new Map<string, Set<string>>();
  const levelsOfGroup = new Map<string, Set<string>>();
  for (const r of report.results) {
    if (r.copies === 0) continue;
    const k = String(r.copies);
    if (!groupOfLevel.has(k)) groupOfLevel.set(k, new Set());
    groupOfLevel.get(k)?.add(r.group);
    if (!levelsOfGroup.has(r.group)) levelsOfGroup.set(r.group, new Set());
    levelsOfGroup.get(r.group)?.add(k);
  }
  const redundant = [...groupOfLevel.values()].every((g) => g.size === 1) && [...levelsOfGroup.values()].every((l) => l.size === 1);
  if (!redundant) {
    for (const k of levels) {
      out.push('');
      out.push(...groupBlock(`Duplication group: ${k} cop${k === '1' ? 'y' : 'ies'}`, s.byCopies[k] as SolidMarkGroupSummary));
    }
  }
  out.push('');
  out.push(
    `Time per image: model ${num(s.secondsPerImage.model, 3)} s, random init ${num(s.secondsPerImage.randomInit, 3)} s` +
      ' (images reused from disk keep the time measured when they were computed)',
  );
  for (const w of s.warnings) out.push(`WARNING: ${w}`);
  return out.join('\n');
}

/** Runs the audit with progress lines and returns the report with its text rendering. */
export async function runSolidMarkEvaluation(o: SolidMarkEvaluationOptions): Promise<SolidMarkEvaluation> {
  const { log, ...audit } = o;
  const report = await auditSolidMark({
    ...audit,
    onProgress: (p: SolidMarkAuditProgress) => {
      log?.(`[${p.role}] ${p.done}/${p.total} (${p.secondsPerImage.toFixed(3)} s/image)`);
      o.onProgress?.(p);
    },
  });
  return { report, text: formatSolidMarkReport(report) };
}
