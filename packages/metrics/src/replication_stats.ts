/**
 * Summary statistics of per-image memorization scores, as the papers report them.
 *
 * Similarity scores (e.g. SSCD cosine to the nearest training image; higher = more copied):
 * - Somepalli et al. (CVPR 2023, `somepago/DCR/diff_retrieval.py`): mean, std (population, as
 *   `np.std`), 75/90/95th percentiles (`np.percentile`, linear interpolation) and
 *   `sim_gt_05pc` = fraction with similarity **> 0.5** (the "replication" convention).
 * - AMG Table 1: **Top5%** = 95th percentile, **Top1** = maximum, **%>0.5** and **%>0.4** as
 *   percentages.
 *
 * nL2 scores (lower = more memorized), AMG Tables 2–3 (`image_sample_guided.py`):
 * **Top5%** = 5th percentile of nL2 (the code's `quantile(−nL2, 0.95)`, sign dropped),
 * **Top1** = minimum nL2 (`max(−nL2)`), **%<1.4** and **%<1.6** as percentages.
 *
 * SolidMark's critique (Kowalczuk et al.) applies: percentiles depend on the data set and on the
 * memorized fraction, so report the threshold fractions and the per-image scores too.
 * @module
 */
import { ConfigError } from '@diffmem/core';
import { toScores } from './internal/checks.js';

/**
 * The q-th percentile (0–100) with linear interpolation between order statistics, numpy's
 * default (`np.percentile(x, q)`, method 'linear').
 */
export function percentile(values: ArrayLike<number>, q: number): number {
  if (!(q >= 0 && q <= 100)) throw new ConfigError(`percentile q must be in [0, 100], got ${q}`);
  const s = Array.from(toScores(values, 'values')).sort((a, b) => a - b);
  const pos = ((s.length - 1) * q) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = s[lo] as number;
  return a + ((s[hi] as number) - a) * (pos - lo);
}

/** Fraction of values strictly above `threshold`. */
export function fractionAbove(values: ArrayLike<number>, threshold: number): number {
  const v = toScores(values, 'values');
  let c = 0;
  for (const x of v) if (x > threshold) c++;
  return c / v.length;
}

/** Fraction of values strictly below `threshold`. */
export function fractionBelow(values: ArrayLike<number>, threshold: number): number {
  const v = toScores(values, 'values');
  let c = 0;
  for (const x of v) if (x < threshold) c++;
  return c / v.length;
}

/** Mean, population standard deviation, min and max. */
export function basicStats(values: ArrayLike<number>): { n: number; mean: number; std: number; min: number; max: number } {
  const v = toScores(values, 'values');
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const x of v) {
    sum += x;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  const mean = sum / v.length;
  let ss = 0;
  for (const x of v) ss += (x - mean) ** 2;
  return { n: v.length, mean, std: Math.sqrt(ss / v.length), min, max };
}

/** Statistics of similarity scores (higher = more replicated). */
export interface SimilarityStats {
  n: number;
  mean: number;
  /** Population std (`np.std`). */
  std: number;
  p75: number;
  p90: number;
  p95: number;
  /** Somepalli et al.'s `sim_gt_05pc`: fraction > 0.5 (in [0, 1]). */
  fractionAbove05: number;
  /** Fractions above each requested threshold (in [0, 1]). */
  fractionAbove: Record<string, number>;
  /** AMG Table 1 columns. */
  amg: { top5pct: number; top1: number; pctAbove05: number; pctAbove04: number };
}

/** Statistics of nL2 scores (lower = more memorized). */
export interface Nl2Stats {
  n: number;
  mean: number;
  std: number;
  p5: number;
  p25: number;
  p50: number;
  /** Fractions below each requested threshold (in [0, 1]). */
  fractionBelow: Record<string, number>;
  /** Counts below 1.4 and 1.6 (what the AMG script prints). */
  countBelow14: number;
  countBelow16: number;
  /** AMG Tables 2–3 columns. */
  amg: { top5pct: number; top1: number; pctBelow14: number; pctBelow16: number };
}

/**
 * Replication statistics of similarity scores (Somepalli et al. 2023; AMG Table 1).
 * @param thresholds extra thresholds for `fractionAbove` (0.4 and 0.5 are always included).
 */
export function similarityStats(similarities: ArrayLike<number>, thresholds: readonly number[] = []): SimilarityStats {
  const b = basicStats(similarities);
  const fa: Record<string, number> = {};
  for (const t of [0.4, 0.5, ...thresholds]) fa[String(t)] = fractionAbove(similarities, t);
  return {
    n: b.n,
    mean: b.mean,
    std: b.std,
    p75: percentile(similarities, 75),
    p90: percentile(similarities, 90),
    p95: percentile(similarities, 95),
    fractionAbove05: fa['0.5'] as number,
    fractionAbove: fa,
    amg: {
      top5pct: percentile(similarities, 95),
      top1: b.max,
      pctAbove05: 100 * (fa['0.5'] as number),
      pctAbove04: 100 * (fa['0.4'] as number),
    },
  };
}

/**
 * Statistics of nL2 scores (AMG Tables 2–3).
 * @param thresholds extra thresholds for `fractionBelow` (1.4 and 1.6 are always included).
 */
export function nl2Stats(nl2: ArrayLike<number>, thresholds: readonly number[] = []): Nl2Stats {
  const b = basicStats(nl2);
  const fb: Record<string, number> = {};
  for (const t of [1.4, 1.6, ...thresholds]) fb[String(t)] = fractionBelow(nl2, t);
  return {
    n: b.n,
    mean: b.mean,
    std: b.std,
    p5: percentile(nl2, 5),
    p25: percentile(nl2, 25),
    p50: percentile(nl2, 50),
    fractionBelow: fb,
    countBelow14: Math.round((fb['1.4'] as number) * b.n),
    countBelow16: Math.round((fb['1.6'] as number) * b.n),
    amg: {
      top5pct: percentile(nl2, 5),
      top1: b.min,
      pctBelow14: 100 * (fb['1.4'] as number),
      pctBelow16: 100 * (fb['1.6'] as number),
    },
  };
}
