import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '../../backend/gradients.js';
import {
  DDIMScheduler,
  DDPMScheduler,
  NoiseSchedule,
  addNoise,
  cumprodF32,
  epsFromX0,
  getVelocity,
  linspaceF32,
  predictX0,
  predictX0AndEps,
  processPredOriginalSample,
  rescaleZeroTerminalSnr,
  roundHalfEven,
  thresholdSample,
} from '../index.js';
import { randnLike } from '../../random.js';
import { DTypeError, ShapeError, ValueRangeError } from '../../errors.js';

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('noise schedules (float32, torch semantics)', () => {
  test('linspaceF32 has exact endpoints and float32 values', () => {
    const v = linspaceF32(1e-4, 0.02, 1000);
    expect(v[0]).toBe(Math.fround(1e-4));
    expect(v[999]).toBe(Math.fround(0.02));
    expect(rel(v[500] as number, 1e-4 + (500 * (0.02 - 1e-4)) / 999)).toBeLessThan(1e-6);
    expect(Array.from(linspaceF32(0, 1, 1))).toEqual([0]);
    expect(linspaceF32(0, 1, 0)).toHaveLength(0);
  });

  test('cumprodF32 accumulates in float64 and rounds each output (torch CPU)', () => {
    const a = Float32Array.from([0.5, 0.3, 0.7]);
    const out = cumprodF32(a);
    expect(out[2]).toBe(Math.fround((a[0] as number) * (a[1] as number) * (a[2] as number)));
  });

  test('linear ᾱ_{T−1} matches the float64 product (4.0358e-5)', () => {
    const s = new NoiseSchedule({ numTrainTimesteps: 1000, betaStart: 1e-4, betaEnd: 0.02, betaSchedule: 'linear' });
    expect(rel(s.alphasCumprod[999] as number, 4.0358299687678105e-5)).toBeLessThan(1e-5);
    expect(rel(s.alphasCumprod[499] as number, 0.07858724288177824)).toBeLessThan(1e-5);
    expect(s.snr(0)).toBeGreaterThan(s.snr(999));
    expect(() => s.snr(1000)).toThrow(ValueRangeError);
  });

  test('scaled_linear and squaredcos_cap_v2 match their definitions', () => {
    const sl = new NoiseSchedule({ numTrainTimesteps: 1000, betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear' });
    expect(rel(sl.alphasCumprod[999] as number, 0.004660098513077238)).toBeLessThan(1e-4);
    const cos = new NoiseSchedule({ numTrainTimesteps: 1000, betaStart: 0, betaEnd: 0, betaSchedule: 'squaredcos_cap_v2' });
    expect(rel(cos.betas[0] as number, 4.128422482196914e-5)).toBeLessThan(1e-6);
    expect(rel(cos.betas[500] as number, 0.003155691441585007)).toBeLessThan(1e-6);
    expect(rel(cos.betas[998] as number, 0.7499993929011166)).toBeLessThan(1e-6);
    expect(cos.betas[999]).toBe(Math.fround(0.999));
  });

  test('sigmoid and laplace schedules are increasing and in (0, 1)', () => {
    for (const betaSchedule of ['sigmoid', 'laplace'] as const) {
      const s = new NoiseSchedule({ numTrainTimesteps: 100, betaStart: 1e-4, betaEnd: 0.02, betaSchedule });
      for (let i = 1; i < 100; i++) expect(s.alphasCumprod[i]).toBeLessThan(s.alphasCumprod[i - 1] as number);
      expect(Math.min(...s.betas)).toBeGreaterThan(0);
      expect(Math.max(...s.betas)).toBeLessThan(1);
    }
  });

  test('rescale_betas_zero_snr: ᾱ_{T−1} = 0 and ᾱ_0 kept', () => {
    const base = linspaceF32(1e-4, 0.02, 1000);
    const r = rescaleZeroTerminalSnr(base);
    const s = new NoiseSchedule({ numTrainTimesteps: 1000, betaStart: 1e-4, betaEnd: 0.02, betaSchedule: 'linear', rescaleBetasZeroSnr: true });
    expect(Array.from(s.betas)).toEqual(Array.from(r));
    expect(s.alphasCumprod[999]).toBe(0);
    expect(rel(s.alphasCumprod[0] as number, 1 - 1e-4)).toBeLessThan(1e-6);
  });

  test('trained_betas are used verbatim', () => {
    const betas = [0.1, 0.2, 0.3];
    const s = new NoiseSchedule({ numTrainTimesteps: 3, betaStart: 0, betaEnd: 0, betaSchedule: 'linear', trainedBetas: betas });
    expect(Array.from(s.betas)).toEqual(betas.map(Math.fround));
    expect(s.alphasCumprod[2]).toBe(Math.fround(Math.fround(0.9) * Math.fround(0.8) * Math.fround(0.7)));
  });

  test('roundHalfEven is NumPy rounding', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 937.5, 812.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, 938, 812, 2, 3]);
  });
});

describe('prediction-type conversions', () => {
  const sched = new DDIMScheduler();

  test.each(['epsilon', 'sample', 'v_prediction'] as const)('%s: model output of the true (x0, ε) recovers them', (type) => {
    const before = tf.memory().numTensors;
    const x0 = randnLike([2, 4, 4, 3], 1);
    const eps = randnLike([2, 4, 4, 3], 2);
    for (const t of [10, 500, 990]) {
      const xt = sched.addNoise(x0, eps, t);
      const target = type === 'epsilon' ? tf.clone(eps) : type === 'sample' ? tf.clone(x0) : sched.getVelocity(x0, eps, t);
      const out = predictX0AndEps(target, xt, sched.alphaProd(t), type);
      expect(maxAbsDiff(out.x0, x0)).toBeLessThan(t > 900 ? 2e-3 : 1e-4);
      expect(maxAbsDiff(out.eps, eps)).toBeLessThan(1e-4);
      const onlyX0 = predictX0(target, xt, sched.alphaProd(t), type);
      expect(maxAbsDiff(onlyX0, out.x0)).toBe(0);
      tf.dispose([xt, target, out.x0, out.eps, onlyX0]);
    }
    tf.dispose([x0, eps]);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('per-sample timesteps (array or int32 tensor) equal per-sample scalar calls', () => {
    const x0 = randnLike([3, 2, 2, 1], 3);
    const eps = randnLike([3, 2, 2, 1], 4);
    const ts = [5, 400, 900];
    const batched = sched.addNoise(x0, eps, ts);
    const tsTensor = tf.tensor1d(ts, 'int32');
    const batched2 = addNoise(sched.alphasCumprod, x0, eps, tsTensor);
    const pieces = ts.map((t, i) =>
      tf.tidy(() => sched.addNoise(tf.slice(x0, [i], [1]), tf.slice(eps, [i], [1]), t)),
    );
    const stacked = tf.concat(pieces);
    expect(maxAbsDiff(batched, stacked)).toBe(0);
    expect(maxAbsDiff(batched2, stacked)).toBe(0);
    const pred = sched.predictX0AndEps(eps, batched, ts);
    expect(maxAbsDiff(pred.x0, x0)).toBeLessThan(1e-3);
    tf.dispose([x0, eps, batched, batched2, tsTensor, ...pieces, stacked, pred.x0, pred.eps]);
  });

  test('gradients flow through predictX0AndEps (∂x̂0/∂m = −√(1−ᾱ)/√ᾱ for epsilon)', () => {
    const t = 300;
    const a = sched.alphaProd(t);
    const x = randnLike([1, 2, 2, 1], 5);
    const m = randnLike([1, 2, 2, 1], 6);
    const g = tf.grad((mm: tf.Tensor) => tf.sum(predictX0AndEps(mm, x, a, 'epsilon').x0))(m);
    const expected = -Math.sqrt(1 - a) / Math.sqrt(a);
    for (const v of g.dataSync()) expect(v).toBeCloseTo(expected, 5);
    const gx = tf.grad((xx: tf.Tensor) => tf.sum(predictX0AndEps(m, xx, a, 'v_prediction').eps))(x);
    for (const v of gx.dataSync()) expect(v).toBeCloseTo(Math.sqrt(1 - a), 5);
    tf.dispose([x, m, g, gx]);
  });

  test('epsFromX0 inverts the epsilon conversion', () => {
    const x = randnLike([1, 3, 3, 2], 7);
    const m = randnLike([1, 3, 3, 2], 8);
    const a = sched.alphaProd(700);
    const { x0 } = predictX0AndEps(m, x, a, 'epsilon');
    const e = epsFromX0(x0, x, a);
    expect(maxAbsDiff(e, m)).toBeLessThan(1e-4);
    tf.dispose([x, m, x0, e]);
  });

  test('velocity: v = √ᾱ ε − √(1−ᾱ) x0', () => {
    const x0 = tf.ones([1, 1, 1, 1]);
    const eps = tf.fill([1, 1, 1, 1], 2);
    const a = sched.alphaProd(250);
    const v = getVelocity(sched.alphasCumprod, x0, eps, 250);
    expect(v.dataSync()[0]).toBeCloseTo(Math.sqrt(a) * 2 - Math.sqrt(1 - a), 6);
    tf.dispose([x0, eps, v]);
  });

  test('bad inputs throw typed errors', () => {
    const x = tf.zeros([2, 2, 2, 1]);
    const y = tf.zeros([2, 2, 2, 2]);
    const i = tf.zeros([2, 2, 2, 1], 'int32');
    expect(() => predictX0AndEps(x, y, 0.5, 'epsilon')).toThrow(ShapeError);
    expect(() => predictX0AndEps(i, x, 0.5, 'epsilon')).toThrow(DTypeError);
    expect(() => predictX0AndEps(x, x, 1.5, 'epsilon')).toThrow(ValueRangeError);
    expect(() => predictX0AndEps(x, x, [0.5], 'epsilon')).toThrow(ShapeError);
    expect(() => sched.addNoise(x, x, 1000)).toThrow(ValueRangeError);
    expect(() => sched.addNoise(x, x, [1, 2, 3])).toThrow(ShapeError);
    tf.dispose([x, y, i]);
  });
});

describe('clipping and dynamic thresholding', () => {
  /** torch.quantile(|v|, q) with linear interpolation, for a reference. */
  function quantile(values: number[], q: number): number {
    const s = values.map(Math.abs).sort((a, b) => a - b);
    const pos = q * (s.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.ceil(pos);
    return (s[lo] as number) + (pos - lo) * ((s[hi] as number) - (s[lo] as number));
  }

  test('thresholdSample matches a reference quantile implementation per sample', () => {
    const before = tf.memory().numTensors;
    const x = tf.tidy(() => tf.mul(randnLike([3, 5, 5, 3], 11), tf.tensor4d([0.5, 2, 4], [3, 1, 1, 1])));
    const ratio = 0.9;
    const maxValue = 3;
    const out = thresholdSample(x, ratio, maxValue);
    const xv = Array.from(x.dataSync());
    const ov = out.dataSync();
    const d = 75;
    for (let b = 0; b < 3; b++) {
      const row = xv.slice(b * d, (b + 1) * d);
      const s = Math.min(Math.max(quantile(row, ratio), 1), maxValue);
      row.forEach((v, j) => expect(ov[b * d + j]).toBeCloseTo(Math.min(Math.max(v, -s), s) / s, 5));
    }
    tf.dispose([x, out]);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('processPredOriginalSample: thresholding wins over clip; clip to ±range; else unchanged copy', () => {
    const x = tf.tensor4d([-3, -0.5, 0.5, 3], [1, 2, 2, 1]);
    const clipped = processPredOriginalSample(x, { clipSample: true, clipSampleRange: 2 });
    expect(Array.from(clipped.dataSync())).toEqual([-2, -0.5, 0.5, 2]);
    const same = processPredOriginalSample(x, { clipSample: false, clipSampleRange: 1 });
    expect(same).not.toBe(x);
    expect(Array.from(same.dataSync())).toEqual([-3, -0.5, 0.5, 3]);
    const th = processPredOriginalSample(x, {
      clipSample: true,
      clipSampleRange: 1,
      thresholding: true,
      dynamicThresholdingRatio: 1,
      sampleMaxValue: 2,
    });
    // s = clamp(max|x| = 3, 1, 2) = 2 → clamp(x, ±2)/2.
    expect(Array.from(th.dataSync())).toEqual([-1, -0.25, 0.25, 1]);
    tf.dispose([x, clipped, same, th]);
  });

  test('DDPM step with thresholding runs and bounds x̂0 by 1', () => {
    const s = new DDPMScheduler({ thresholding: true, sampleMaxValue: 1.5 });
    const x = randnLike([2, 4, 4, 3], 12);
    const m = randnLike([2, 4, 4, 3], 13);
    const out = s.step(m, 0, x);
    expect(Math.max(...Array.from(out.predOriginalSample.dataSync()).map(Math.abs))).toBeLessThanOrEqual(1 + 1e-6);
    tf.dispose([x, m, out.prevSample, out.predOriginalSample]);
  });
});
