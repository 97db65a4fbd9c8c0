// Natural-motion filtering: magnitude gates (data-juicer, VBench constants), the affine
// camera-motion fit and its residual, and defined behaviour on zero / NaN flows.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { NonFiniteError, ShapeError } from '@diffmem/core';
import { expectNoTensorLeak } from '@diffmem/core/testing';
import {
  DEFAULT_NATURAL_MOTION_CONFIG,
  fitAffineFlow,
  flowMagnitudeStats,
  naturalMotionDecision,
  pyRound,
  resolveNaturalMotionConfig,
  vbenchDynamic,
  vbenchInterval,
} from '../natural_motion.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
});

/** A flow field [N,H,W,2] from a function of (pair, x, y). */
function field(n: number, h: number, w: number, f: (i: number, x: number, y: number) => [number, number]): tf.Tensor4D {
  const v = new Float32Array(n * h * w * 2);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const [u, vv] = f(i, x, y);
        v[((i * h + y) * w + x) * 2] = u;
        v[((i * h + y) * w + x) * 2 + 1] = vv;
      }
  return tf.tensor4d(v, [n, h, w, 2]);
}

describe('VBench dynamic degree and data-juicer constants', () => {
  test('Python rounding (half to even), as VBench and data-juicer use it', () => {
    expect([0.5, 1.5, 2.5, 3.5, 3.75, -0.5, 2.4999].map(pyRound)).toEqual([0, 2, 2, 4, 4, 0, 2]);
    // interval = max(1, round(fps/8))
    expect([24, 8, 12, 20, 29.97, 4, 60].map(vbenchInterval)).toEqual([3, 1, 2, 2, 4, 1, 8]);
  });

  test('threshold max(1, 8/fps)·6·min(H,W)/256 and count round(4·frames/16)', () => {
    expect(vbenchDynamic([7], 24, 256, 320).threshold).toBeCloseTo(6, 10);
    expect(vbenchDynamic([7], 4, 256, 320).threshold).toBeCloseTo(12, 10);
    expect(vbenchDynamic([7], 8, 64, 64).threshold).toBeCloseTo(1.5, 10);
    // 15 pairs = 16 frames → 4 moving pairs needed; 5 pairs (6 frames) → round(1.5) = 2; 1 pair → round(0.5) = 0
    expect(vbenchDynamic(new Array(15).fill(0), 8, 256, 256).requiredPairs).toBe(4);
    expect(vbenchDynamic(new Array(5).fill(0), 8, 256, 256).requiredPairs).toBe(2);
    expect(vbenchDynamic([0], 8, 256, 256).requiredPairs).toBe(0);
    expect(vbenchDynamic(new Array(9).fill(0), 8, 256, 256).requiredPairs).toBe(2); // round(2.5) = 2
    const r = vbenchDynamic([7, 5, 6.5, 0.1, 9], 24, 256, 256);
    expect(r.movingPairs).toBe(3);
    expect(r.dynamic).toBe(true);
    expect(vbenchDynamic([7, 0, 0, 0, 0], 24, 256, 256).dynamic).toBe(false);
    expect(vbenchDynamic([], 24, 256, 256).dynamic).toBe(false); // check_move on an empty list
  });

  test('mean magnitude and mean of the top 5 % (VBench max_rad)', async () => {
    // 10×10 field, 5 pixels move by (3, 4) → |F| = 5 there.
    const f = field(2, 10, 10, (i, x, y) => (i === 0 && y === 0 && x < 5 ? [3, 4] : [0, 0]));
    const s = await expectNoTensorLeak(() => flowMagnitudeStats(f), 'flowMagnitudeStats');
    expect(s.mean[0]).toBeCloseTo(0.25, 6);
    expect(s.topMean[0]).toBeCloseTo(5, 6); // cut_index = int(100·0.05) = 5
    expect(s.mean[1]).toBe(0);
    expect(s.topMean[1]).toBe(0);
    f.dispose();
  });
});

describe('affine camera-motion fit', () => {
  test('recovers pan + zoom + rotation exactly; the residual is zero', async () => {
    const h = 24;
    const w = 32;
    const cx = (w - 1) / 2;
    const cy = (h - 1) / 2;
    const p: Array<[number, number, number, number, number, number]> = [
      [1.5, 0.02, -0.03, -0.7, 0.03, 0.02],
      [0, 0, 0, 2, 0, 0],
    ];
    const f = field(2, h, w, (i, x, y) => {
      const [a0, a1, a2, b0, b1, b2] = p[i] as [number, number, number, number, number, number];
      return [a0 + a1 * (x - cx) + a2 * (y - cy), b0 + b1 * (x - cx) + b2 * (y - cy)];
    });
    const fit = await expectNoTensorLeak(() => fitAffineFlow(f), 'fitAffineFlow');
    fit.params.forEach((q, i) => q.forEach((v, j) => expect(v).toBeCloseTo((p[i] as number[])[j] as number, 4)));
    expect(Math.max(...fit.residualRatio)).toBeLessThan(1e-4);
    expect(tf.max(tf.abs(fit.residual)).dataSync()[0]).toBeLessThan(1e-4);
    tf.dispose([f, fit.affine, fit.residual]);
  });

  test('object motion on top of a camera pan stays in the residual (ρ large); a pan alone has ρ ≈ 0', () => {
    const f = field(2, 32, 32, (i, x, y) => {
      const pan: [number, number] = [2, -1];
      const inObject = i === 0 && x >= 10 && x < 18 && y >= 12 && y < 20;
      return inObject ? [pan[0] - 4, pan[1] + 3] : pan;
    });
    const fit = fitAffineFlow(f);
    expect(fit.residualRatio[0]).toBeGreaterThan(0.3);
    expect(fit.residualRatio[1]).toBeLessThan(1e-4);
    // the residual is concentrated on the object
    const r = fit.residual.arraySync() as number[][][][];
    const inside = Math.hypot(...(r[0]![14]![14] as [number, number]));
    const outside = Math.hypot(...(r[0]![2]![2] as [number, number]));
    expect(inside).toBeGreaterThan(4 * outside);
    tf.dispose([f, fit.affine, fit.residual]);
  });

  test('zero flow: ρ = 0 and no NaN; NaN flow → NonFiniteError; wrong shape → ShapeError', () => {
    const zero = tf.zeros([3, 8, 8, 2]);
    const fit = fitAffineFlow(zero);
    expect(fit.residualRatio).toEqual([0, 0, 0]);
    expect(fit.params.flat().every((v) => v === 0)).toBe(true);
    tf.dispose([fit.affine, fit.residual]);
    const nan = tf.tidy(() => tf.concat([tf.zeros([1, 8, 8, 2]), tf.fill([1, 8, 8, 2], NaN)]));
    expect(() => fitAffineFlow(nan)).toThrow(NonFiniteError);
    expect(() => flowMagnitudeStats(nan)).toThrow(NonFiniteError);
    const bad = tf.zeros([3, 8, 8, 3]);
    expect(() => fitAffineFlow(bad)).toThrow(ShapeError);
    tf.dispose([zero, nan, bad]);
  });
});

describe('NMF decisions', () => {
  const config = resolveNaturalMotionConfig();

  test('defaults are the reference note placeholders', () => {
    expect(DEFAULT_NATURAL_MOTION_CONFIG).toEqual({ minMeanMagnitude: 0.25, vbenchDynamic: true, minResidualRatio: 0.3 });
  });

  test('static pairs, camera-only pairs and moving pairs; the gate scales with resolution', () => {
    // at 64 px the data-juicer gate is 0.25·64/256 = 0.0625 px
    const d = naturalMotionDecision([0.01, 0.5, 0.5], [0.9, 0.1, 0.6], vbenchDynamic([3, 3], 8, 64, 64), 64, 64, config);
    expect(d.magnitudeGate).toBeCloseTo(0.0625, 10);
    expect(d.pairStatus).toEqual(['static', 'camera', 'moving']);
    expect(d.static).toBe(false);
    const quiet = naturalMotionDecision([0.01, 0.02], [0.9, 0.9], null, 64, 64, config);
    expect(quiet.static).toBe(true);
    expect(quiet.staticBy).toEqual(['mean-magnitude']);
    const vb = naturalMotionDecision([0.5, 0.5], [0.9, 0.9], vbenchDynamic([0.2, 0.3], 8, 64, 64), 64, 64, config);
    expect(vb.staticBy).toEqual(['vbench-dynamic']);
  });

  test('zero motion is static even with every gate disabled (defined, not NaN)', () => {
    const off = resolveNaturalMotionConfig({ minMeanMagnitude: null, vbenchDynamic: false, minResidualRatio: null });
    const d = naturalMotionDecision([0, 0], [0, 0], null, 64, 64, off);
    expect(d.static).toBe(true);
    expect(d.staticBy).toEqual(['zero-flow']);
    expect(d.pairStatus).toEqual(['static', 'static']);
    expect(Number.isNaN(d.meanMagnitude)).toBe(false);
  });

  test('invalid configuration → ConfigError', () => {
    expect(() => resolveNaturalMotionConfig({ minResidualRatio: 2 })).toThrow(/minResidualRatio/);
    expect(() => resolveNaturalMotionConfig({ minMeanMagnitude: -1 })).toThrow(/minMeanMagnitude/);
  });
});
