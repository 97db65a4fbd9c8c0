/**
 * ROC summaries for memorization detectors, with the conventions of the papers' evaluation code
 * (Wen et al. ICLR 2024 `det_mem_viz.ipynb`, which reuses the Tree-Ring code):
 *
 * - AUC: area under the ROC curve (`sklearn.metrics.auc(fpr, tpr)`; ties count ½, i.e. the
 *   Mann–Whitney U statistic).
 * - TPR@1%FPR: `tpr[np.where(fpr < .01)[0][-1]]`, the largest TPR over operating points whose FPR
 *   is **strictly** below the target.
 * - ACC: `max(1 − (fpr + (1 − tpr))/2)`, the best balanced accuracy over thresholds.
 *
 * Higher scores mean "more likely memorized" (positive). Wen et al. publish no absolute
 * threshold: pick one for a target FPR on known non-memorized inputs with {@link thresholdAtFpr}.
 * @module
 */
import { ConfigError, InputError } from '@diffmem/core';
import { toBoolLabels, toScores } from './internal/checks.js';

/** A ROC curve: operating points in order of decreasing threshold (first point (0,0) at +∞). */
export interface RocCurve {
  fpr: number[];
  tpr: number[];
  /** Flag an input as positive when score ≥ threshold. */
  thresholds: number[];
}

function prepare(scores: ArrayLike<number>, labels: ArrayLike<boolean | number>): { s: Float64Array; y: boolean[]; pos: number; neg: number } {
  const s = toScores(scores);
  const y = toBoolLabels(labels, s.length);
  const pos = y.filter(Boolean).length;
  const neg = y.length - pos;
  if (pos === 0 || neg === 0) {
    throw new InputError('ROC_ONE_CLASS', `ROC needs both positives and negatives, got ${pos} positive(s) and ${neg} negative(s)`, { pos, neg });
  }
  return { s, y, pos, neg };
}

/** The full ROC curve (one point per distinct score, like `sklearn.metrics.roc_curve(drop_intermediate=False)`). */
export function rocCurve(scores: ArrayLike<number>, labels: ArrayLike<boolean | number>): RocCurve {
  const { s, y, pos, neg } = prepare(scores, labels);
  const order = Array.from(s.keys()).sort((a, b) => (s[b] as number) - (s[a] as number));
  const fpr = [0];
  const tpr = [0];
  const thresholds = [Infinity];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < order.length; i++) {
    const j = order[i] as number;
    if (y[j]) tp++;
    else fp++;
    const next = order[i + 1];
    if (next === undefined || s[next] !== s[j]) {
      fpr.push(fp / neg);
      tpr.push(tp / pos);
      thresholds.push(s[j] as number);
    }
  }
  return { fpr, tpr, thresholds };
}

/** Area under the ROC curve (trapezoidal over the full curve; ties count ½). */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<boolean | number>): number {
  const { fpr, tpr } = rocCurve(scores, labels);
  let a = 0;
  for (let i = 1; i < fpr.length; i++) a += ((fpr[i] as number) - (fpr[i - 1] as number)) * ((tpr[i] as number) + (tpr[i - 1] as number)) / 2;
  return a;
}

/**
 * The largest TPR over operating points with FPR < `targetFpr` (Wen et al.'s TPR@1%FPR for the
 * default 0.01). `inclusive: true` uses FPR ≤ target instead.
 */
export function tprAtFpr(
  scores: ArrayLike<number>,
  labels: ArrayLike<boolean | number>,
  targetFpr = 0.01,
  options: { inclusive?: boolean } = {},
): number {
  if (!(targetFpr > 0 && targetFpr <= 1)) throw new ConfigError(`targetFpr must be in (0, 1], got ${targetFpr}`);
  const { fpr, tpr } = rocCurve(scores, labels);
  let best = 0;
  for (let i = 0; i < fpr.length; i++) {
    const f = fpr[i] as number;
    if (options.inclusive ? f <= targetFpr : f < targetFpr) best = Math.max(best, tpr[i] as number);
  }
  return best;
}

/** Best balanced accuracy max(1 − (FPR + FNR)/2) over thresholds, and the threshold (score ≥ t). */
export function bestAccuracy(scores: ArrayLike<number>, labels: ArrayLike<boolean | number>): { accuracy: number; threshold: number } {
  const { fpr, tpr, thresholds } = rocCurve(scores, labels);
  let best = -1;
  let thr = Infinity;
  for (let i = 0; i < fpr.length; i++) {
    const acc = 1 - ((fpr[i] as number) + (1 - (tpr[i] as number))) / 2;
    if (acc > best) {
      best = acc;
      thr = thresholds[i] as number;
    }
  }
  return { accuracy: best, threshold: thr };
}

/**
 * A decision threshold calibrated on negatives (e.g. scores of prompts known not to be
 * memorized): flag an input when **score > threshold**; at most ⌊targetFpr·n⌋ of the negatives
 * exceed it. Returns the achieved false-positive rate on the calibration negatives.
 */
export function thresholdAtFpr(negativeScores: ArrayLike<number>, targetFpr = 0.01): { threshold: number; fpr: number } {
  if (!(targetFpr >= 0 && targetFpr < 1)) throw new ConfigError(`targetFpr must be in [0, 1), got ${targetFpr}`);
  const s = Array.from(toScores(negativeScores, 'negativeScores')).sort((a, b) => b - a);
  const allowed = Math.floor(targetFpr * s.length + 1e-9);
  const threshold = s[allowed] as number; // the (allowed+1)-th largest; only scores above it are flagged
  const fp = s.filter((v) => v > threshold).length;
  return { threshold, fpr: fp / s.length };
}

/** AUC, TPR at 1% FPR (strict, as Wen et al.) and best balanced accuracy in one call. */
export function detectionSummary(
  scores: ArrayLike<number>,
  labels: ArrayLike<boolean | number>,
): { auc: number; tprAt1pctFpr: number; accuracy: number; positives: number; negatives: number } {
  const { pos, neg } = prepare(scores, labels);
  return {
    auc: rocAuc(scores, labels),
    tprAt1pctFpr: tprAtFpr(scores, labels, 0.01),
    accuracy: bestAccuracy(scores, labels).accuracy,
    positives: pos,
    negatives: neg,
  };
}
