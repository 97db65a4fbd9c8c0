import { ConfigError } from '@diffmem/core';
import {
  OFFICIAL_IDDPM_SIM,
  OFFICIAL_IDDPM_THRESHOLD,
  OFFICIAL_SD_SIM,
  OFFICIAL_SD_THRESHOLD,
  THRESHOLDS,
  deduplicationScale,
  despecificationScale,
  resolveC1,
  similarityGuidanceCoefficient,
  thresholdAt,
  thresholdScaleAt,
  validateThreshold,
  voteDuplicateLabel,
} from '../index.js';

describe('thresholds λ_t', () => {
  test('official SD asy(t, 0.3, 0.4, 0.005, 0) on the DDPM index', () => {
    const asy = (t: number): number => 0.3 - (0.3 - 0.4) * Math.exp(-0.005 * t);
    for (const t of [1, 21, 481, 981]) expect(thresholdAt(OFFICIAL_SD_THRESHOLD, t, 1000)).toBeCloseTo(asy(t), 12);
    expect(thresholdAt(OFFICIAL_SD_THRESHOLD, 981, 1000)).toBeCloseTo(0.3007, 4);
    expect(thresholdAt(OFFICIAL_SD_THRESHOLD, 1, 1000)).toBeCloseTo(0.3995, 4);
  });

  test('official iDDPM thres(t) = 1.95 − 0.45·exp(−0.025 t) on the respaced 250-step axis, as λ = −thres', () => {
    // T = 4000 respaced to 250: DDPM t = 16·i ↔ respaced index i.
    for (const i of [0, 10, 100, 249]) {
      const thres = 1.95 - 0.45 * Math.exp(-0.025 * i);
      expect(thresholdAt(OFFICIAL_IDDPM_THRESHOLD, 16 * i, 4000)).toBeCloseTo(-thres, 12);
    }
    expect(thresholdAt(OFFICIAL_IDDPM_THRESHOLD, 0, 1000)).toBeCloseTo(-1.5, 12);
  });

  test('constant and always-on', () => {
    expect(thresholdAt(THRESHOLDS.constant(-1.5), 700, 1000)).toBe(-1.5);
    expect(thresholdAt(THRESHOLDS.always(), 3, 1000)).toBe(-Infinity);
    const always = THRESHOLDS.always(OFFICIAL_IDDPM_THRESHOLD);
    expect(thresholdAt(always, 0, 1000)).toBe(-Infinity);
    expect(thresholdScaleAt(always, 0, 1000)).toBeCloseTo(-1.5, 12);
    expect(thresholdScaleAt(THRESHOLDS.always(), 0, 1000)).toBeNaN();
  });

  test('malformed schedules are ConfigErrors', () => {
    expect(() => validateThreshold({ kind: 'constant', value: Number.NaN })).toThrow(ConfigError);
    expect(() => validateThreshold({ kind: 'saturating-exponential', a: 1, b: 1, c: 1, timeScale: 0 })).toThrow(ConfigError);
    expect(() => validateThreshold({ kind: 'nope' } as never)).toThrow(ConfigError);
  });
});

describe('guidance terms', () => {
  test('G_spe: s1 = clip(c1·u, 0, s0 − 1), c1 auto = (s0 − 1)/0.5 (13 at s0 = 7.5)', () => {
    const c1 = resolveC1({}, 7.5);
    expect(c1).toBe(13);
    expect(despecificationScale(0.2, 7.5, c1)).toBeCloseTo(2.6, 12);
    expect(despecificationScale(0.9, 7.5, c1)).toBe(6.5); // effective scale s0 − s1 = 1
    expect(despecificationScale(-0.3, 7.5, c1)).toBe(0);
    expect(() => resolveC1({ c1: -1 }, 7.5)).toThrow(ConfigError);
  });

  test('G_dup: s2 = clip(c2·u, 0, s0 − s1 − 1); official c2 = (s0 − 1 − s1)/0.3', () => {
    const s1 = despecificationScale(0.2, 7.5, 13); // 2.6
    expect(deduplicationScale(0.2, 7.5, s1, 'official')).toBeCloseTo(((6.5 - 2.6) / 0.3) * 0.2, 12);
    expect(deduplicationScale(0.6, 7.5, s1, 'official')).toBeCloseTo(3.9, 12); // capped at s0 − s1 − 1
    expect(deduplicationScale(0.6, 7.5, 6.5, 'official')).toBe(0); // no budget left
    expect(deduplicationScale(0.1, 7.5, 0, 5)).toBeCloseTo(0.5, 12);
  });

  test('G_sim coefficients: paper constant, official SD 100·(σ − 0.3)·e^{(1000 − t)/170}, iDDPM 80000·(σ − λ)', () => {
    expect(similarityGuidanceCoefficient({ kind: 'paper', c3: 7 }, 0.9, 0.3, 500, 1000)).toBe(7);
    expect(similarityGuidanceCoefficient(OFFICIAL_SD_SIM, 0.5, 0.3, 981, 1000)).toBeCloseTo(100 * 0.2 * Math.exp(19 / 170), 9);
    expect(similarityGuidanceCoefficient(OFFICIAL_SD_SIM, 0.5, 0.3, 1, 1000)).toBeCloseTo(100 * 0.2 * Math.exp(999 / 170), 6);
    expect(similarityGuidanceCoefficient({ ...OFFICIAL_SD_SIM, sigmaOffset: 'threshold' }, -1.2, -1.6, 0, 1000)).toBeCloseTo(100 * 0.4 * Math.exp(1000 / 170), 6);
    expect(similarityGuidanceCoefficient(OFFICIAL_IDDPM_SIM, -1.2, -1.7, 0, 1000)).toBeCloseTo(80000 * 0.5, 9);
  });

  test('duplicate-label vote: most common label (first met on ties) if it occurs more than minCount times', () => {
    const labels = Int32Array.from([0, 1, 1, 2, 2, 2]);
    expect(voteDuplicateLabel([3, 4, 5, 1, 2], labels, 2)).toBe(2);
    expect(voteDuplicateLabel([3, 4, 5, 1, 2], labels, 3)).toBeNull();
    expect(voteDuplicateLabel([1, 3, 2, 4], labels, 1)).toBe(1); // tie 2–2: label 1 came first
  });
});
