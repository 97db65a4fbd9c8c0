import { ConfigError, InputError, NonFiniteError, ShapeError } from '@diffmem/core';
import {
  basicStats,
  bestAccuracy,
  detectionSummary,
  fractionAbove,
  nl2Stats,
  percentile,
  rocAuc,
  rocCurve,
  similarityStats,
  thresholdAtFpr,
  tprAtFpr,
} from '../index.js';

describe('replication statistics', () => {
  it('percentile interpolates linearly like np.percentile', () => {
    expect(percentile([1, 2, 3, 4], 75)).toBeCloseTo(3.25, 12);
    expect(percentile([4, 1, 3, 2], 50)).toBeCloseTo(2.5, 12);
    expect(percentile([10], 95)).toBe(10);
    expect(percentile([0, 10], 95)).toBeCloseTo(9.5, 12);
    expect(() => percentile([1], 101)).toThrow(ConfigError);
    expect(() => percentile([], 50)).toThrow(InputError);
    expect(() => percentile([1, Number.NaN], 50)).toThrow(NonFiniteError);
  });

  it('std is the population std (np.std) and thresholds are strict', () => {
    const b = basicStats([1, 2, 3, 4]);
    expect(b.mean).toBe(2.5);
    expect(b.std).toBeCloseTo(Math.sqrt(1.25), 12);
    expect(fractionAbove([0.5, 0.51, 0.2, 0.9], 0.5)).toBe(0.5);
  });

  it('similarity stats carry Somepalli et al. and AMG Table 1 columns', () => {
    const sims = [0.1, 0.2, 0.3, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.95];
    const s = similarityStats(sims, [0.75]);
    expect(s.n).toBe(10);
    expect(s.fractionAbove05).toBeCloseTo(0.5, 12); // 0.55 … 0.95
    expect(s.amg.pctAbove05).toBeCloseTo(50, 9);
    expect(s.amg.pctAbove04).toBeCloseTo(70, 9);
    expect(s.amg.top1).toBe(0.95);
    expect(s.amg.top5pct).toBeCloseTo(percentile(sims, 95), 12);
    expect(s.p95).toBeCloseTo(0.8 + (0.95 - 0.8) * 0.55, 12);
    expect(s.fractionAbove['0.75']).toBeCloseTo(0.2, 12);
  });

  it('nL2 stats carry AMG Tables 2–3 columns (Top5% = 5th percentile, Top1 = min)', () => {
    const v = [0.5, 1.3, 1.45, 1.55, 1.62, 1.7, 1.8, 1.9, 2.0, 2.1];
    const s = nl2Stats(v);
    expect(s.amg.top1).toBe(0.5);
    expect(s.amg.top5pct).toBeCloseTo(0.5 + (1.3 - 0.5) * 0.45, 12);
    // AMG code: quantile(-nL2, 0.95) with the sign dropped is the same number
    expect(-percentile(v.map((x) => -x), 95)).toBeCloseTo(s.amg.top5pct, 12);
    expect(s.countBelow14).toBe(2);
    expect(s.countBelow16).toBe(4);
    expect(s.amg.pctBelow14).toBeCloseTo(20, 9);
    expect(s.amg.pctBelow16).toBeCloseTo(40, 9);
  });
});

describe('ROC helpers', () => {
  const scores = [0.1, 0.4, 0.35, 0.8];
  const labels = [0, 0, 1, 1];

  it('matches sklearn roc_curve / auc on the textbook example', () => {
    const c = rocCurve(scores, labels);
    expect(c.fpr).toEqual([0, 0, 0.5, 0.5, 1]);
    expect(c.tpr).toEqual([0, 0.5, 0.5, 1, 1]);
    expect(c.thresholds).toEqual([Infinity, 0.8, 0.4, 0.35, 0.1]);
    expect(rocAuc(scores, labels)).toBeCloseTo(0.75, 12);
  });

  it('counts ties as ½ and implements Wen’s strict TPR@FPR and balanced accuracy', () => {
    expect(rocAuc([1, 1, 1, 1], [0, 1, 0, 1])).toBeCloseTo(0.5, 12);
    expect(tprAtFpr(scores, labels, 0.01)).toBe(0.5);
    expect(tprAtFpr(scores, labels, 0.5)).toBe(0.5); // strict: fpr < 0.5
    expect(tprAtFpr(scores, labels, 0.5, { inclusive: true })).toBe(1);
    expect(bestAccuracy(scores, labels).accuracy).toBeCloseTo(0.75, 12);
    const perfect = detectionSummary([0.9, 0.8, 0.1, 0.2], [true, true, false, false]);
    expect(perfect).toMatchObject({ auc: 1, tprAt1pctFpr: 1, accuracy: 1, positives: 2, negatives: 2 });
  });

  it('calibrates a threshold on negatives for a target FPR', () => {
    const neg = Array.from({ length: 200 }, (_, i) => i / 200); // 0 … 0.995
    const { threshold, fpr } = thresholdAtFpr(neg, 0.01);
    expect(fpr).toBeLessThanOrEqual(0.01);
    expect(neg.filter((v) => v > threshold)).toHaveLength(2);
    expect(thresholdAtFpr(neg, 0).fpr).toBe(0);
  });

  it('rejects one-class inputs, bad labels and lengths', () => {
    expect(() => rocAuc([1, 2], [1, 1])).toThrow(expect.objectContaining({ code: 'ROC_ONE_CLASS' }));
    expect(() => rocAuc([1, 2], [1])).toThrow(ShapeError);
    expect(() => rocAuc([1, 2], [1, 2])).toThrow(ConfigError);
    expect(() => tprAtFpr(scores, labels, 0)).toThrow(ConfigError);
  });
});
