import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, Generator, ShapeError, randn, type Denoiser } from '@diffmem/core';
import {
  WenDetector,
  conditionalNoiseMagnitude,
  conditioningAttribution,
  ddimTimesteps,
  detectionSummary,
  sampleWithWenScore,
  wenScore,
} from '../index.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

const S = 4;
const CH = 2;
const K = 6; // classes 0..5, null class 6

/** ᾱ of the DDPM linear schedule (β from 1e-4 to 0.02, T = 1000). */
function linearAlphasCumprod(T = 1000): number[] {
  const out: number[] = [];
  let a = 1;
  for (let t = 0; t < T; t++) {
    a *= 1 - (1e-4 + ((0.02 - 1e-4) * t) / (T - 1));
    out.push(a);
  }
  return out;
}

/**
 * A toy class-conditional denoiser: ε(x, t, y) = 0.3·x + e_y (e_y a per-class channel offset),
 * so ‖ε(x,c) − ε(x,∅)‖₂ = √(S·S)·‖e_c − e_∅‖ for every x and t.
 */
function offsetDenoiser(emb: number[][]): Denoiser {
  return {
    info: { sampleSize: S, inChannels: CH, outChannels: CH, numClassEmbeds: K },
    predict: (x, _t, labels) =>
      tf.tidy(() => {
        const table = tf.tensor2d(emb);
        const e = tf.gather(table, labels as tf.Tensor1D); // [N, CH]
        return tf.add(tf.mul(x, 0.3), tf.reshape(e, [-1, 1, 1, CH])) as tf.Tensor4D;
      }),
  };
}

const EMB = Array.from({ length: K + 1 }, (_, c) => (c === K ? [0, 0] : [0.1 * c, c % 2 === 0 ? 2 * c : 0]));
const expected = (c: number) => Math.sqrt(S * S) * Math.hypot((EMB[c] as number[])[0] as number, (EMB[c] as number[])[1] as number);

describe('Wen et al. magnitude', () => {
  it('is ‖ε(x,c) − ε(x,∅)‖₂ per sample from one batched call', () => {
    const den = offsetDenoiser(EMB);
    const x = randn([3, S, S, CH], 1);
    const before = tf.memory().numTensors;
    const m = conditionalNoiseMagnitude(den, x, 500, [1, 2, 4], { nullClass: K });
    expect(tf.memory().numTensors).toBe(before);
    [1, 2, 4].forEach((c, i) => expect(m[i]).toBeCloseTo(expected(c), 4));
    const mInf = conditionalNoiseMagnitude(den, x, 500, 2, { nullClass: K, p: Infinity });
    expect(mInf[0]).toBeCloseTo(4, 5);
    x.dispose();
  });

  it('validates the denoiser, the null class and the labels', () => {
    const den = offsetDenoiser(EMB);
    const x = randn([2, S, S, CH], 1);
    const uncond: Denoiser = { ...den, info: { ...den.info, numClassEmbeds: null } };
    expect(() => conditionalNoiseMagnitude(uncond, x, 1, 0, { nullClass: 0 })).toThrow(/unconditional/);
    expect(() => conditionalNoiseMagnitude(den, x, 1, 0, { nullClass: K + 1 })).toThrow(ConfigError);
    expect(() => conditionalNoiseMagnitude(den, x, 1, [0], { nullClass: K })).toThrow(ShapeError);
    expect(() => conditionalNoiseMagnitude(den, x, 1, [0, 9], { nullClass: K })).toThrow(ConfigError);
    expect(() => conditionalNoiseMagnitude(den, x, 1, 0, { nullClass: K, p: 0.5 })).toThrow(ConfigError);
    x.dispose();
  });

  it('averages over chosen steps and generations (detector, callback and recorded trajectory agree)', () => {
    // A model whose conditional gap shrinks with t, so step selection matters.
    const den: Denoiser = {
      info: { sampleSize: S, inChannels: CH, outChannels: CH, numClassEmbeds: K },
      predict: (x, t, labels) =>
        tf.tidy(() => {
          const lab = (labels as tf.Tensor1D).dataSync();
          const off = Array.from(lab, (c) => (c === K ? 0 : (c + 1) * (1 + (t as number) / 100)));
          return tf.add(x, tf.reshape(tf.tensor1d(off), [-1, 1, 1, 1])) as tf.Tensor4D;
        }),
    };
    const steps = [900, 600, 300, 0].map((t, i) => ({ stepIndex: i, timestep: t, sample: randn([2, S, S, CH], 10 + i) }));
    const res = wenScore(den, steps, { classLabels: [0, 1], nullClass: K, steps: [0, 2] });
    const gap = (c: number, t: number) => (c + 1) * (1 + t / 100) * Math.sqrt(S * S * CH);
    expect(res.stepIndices).toEqual([0, 2]);
    expect(res.perSample[0]).toBeCloseTo((gap(0, 900) + gap(0, 300)) / 2, 3);
    expect(res.perSample[1]).toBeCloseTo((gap(1, 900) + gap(1, 300)) / 2, 3);
    expect(res.score).toBeCloseTo(((res.perSample[0] as number) + (res.perSample[1] as number)) / 2, 9);
    const det = new WenDetector(den, { nullClass: K, steps: (_i, t) => t >= 600 });
    const cb = det.callback([0, 1]);
    steps.forEach((s) => cb(s.stepIndex, s.timestep, s.sample));
    expect(det.result().timesteps).toEqual([900, 600]);
    det.reset();
    expect(() => det.result()).toThrow(ConfigError);
    for (const s of steps) s.sample.dispose();
  });
});

describe('sampleWithWenScore (minimal DDIM loop)', () => {
  const ac = linearAlphasCumprod();

  it('uses diffusers’ leading DDIM timesteps', () => {
    expect(ddimTimesteps(1000, 5)).toEqual([800, 600, 400, 200, 0]);
    expect(ddimTimesteps(1000, 50, 1).slice(0, 2)).toEqual([981, 961]);
  });

  it('lands exactly on the data point with the exact ε of a point mass, and scores the gap', () => {
    // Data: class c is the point μ_c; the exact ε for a point mass is (x_t − √ᾱ μ)/√(1−ᾱ).
    const mu = (c: number) => (c === K ? 0 : 0.2 * (c + 1));
    const den: Denoiser = {
      info: { sampleSize: S, inChannels: CH, outChannels: CH, numClassEmbeds: K },
      predict: (x, t, labels) =>
        tf.tidy(() => {
          const a = ac[t as number] as number;
          const m = tf.reshape(tf.tensor1d(Array.from((labels as tf.Tensor1D).dataSync(), mu)), [-1, 1, 1, 1]);
          return tf.div(tf.sub(x, tf.mul(m, Math.sqrt(a))), Math.sqrt(1 - a)) as tf.Tensor4D;
        }),
    };
    const before = tf.memory().numTensors;
    const res = sampleWithWenScore(den, {
      classLabel: 2,
      nullClass: K,
      numGenerations: 3,
      alphasCumprod: ac,
      numInferenceSteps: 10,
      guidanceScale: 1,
      seed: 7,
      returnSamples: true,
      keepTrajectory: true,
      steps: [0, 1],
    });
    const samples = res.samples as tf.Tensor4D;
    const err = tf.tidy(() => tf.max(tf.abs(tf.sub(samples, mu(2)))).dataSync()[0] as number);
    expect(err).toBeLessThan(1e-3);
    // gap at step i: √ᾱ_t (μ_c − μ_∅)/√(1−ᾱ_t) per element
    const t0 = 900;
    const g0 = (Math.sqrt(ac[t0] as number) * mu(2)) / Math.sqrt(1 - (ac[t0] as number)) * Math.sqrt(S * S * CH);
    expect(res.perStep[0]![0]).toBeCloseTo(g0, 3);
    expect(res.trajectory).toHaveLength(2);
    samples.dispose();
    for (const st of res.trajectory ?? []) st.sample.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('separates a memorized class from the others (ROC on the score)', () => {
    // Class 3 has a huge conditional gap (a "memorized" condition); the others small ones.
    const emb = Array.from({ length: K + 1 }, (_, c) => (c === K ? [0, 0] : c === 3 ? [3, 3] : [0.2, 0.1 * c]));
    const den = offsetDenoiser(emb);
    const scores: number[] = [];
    const labels: boolean[] = [];
    for (let c = 0; c < K; c++) {
      for (const seed of [1, 2]) {
        const r = sampleWithWenScore(den, { classLabel: c, nullClass: K, numGenerations: 2, alphasCumprod: ac, numInferenceSteps: 4, seed });
        scores.push(r.score);
        labels.push(c === 3);
      }
    }
    expect(detectionSummary(scores, labels).auc).toBe(1);
  });
});

describe('conditioning attribution', () => {
  it('matches the analytic gradient norm and singles out the trigger token', () => {
    // ε(x, t, e) = 0.5·x + (e·W) broadcast over pixels, e: [N, L, d] flattened to [N, L·d].
    const L = 3;
    const d = 4;
    const g = new Generator(5);
    const wData = g.normalArray(L * d * CH);
    for (let i = 0; i < d * CH; i++) wData[i] = 0; // token 0 does not influence the output
    const Wm = tf.tensor2d(wData, [L * d, CH]);
    const predict = (x: tf.Tensor4D, _t: number, e: tf.Tensor) =>
      tf.tidy(() => tf.add(tf.mul(x, 0.5), tf.reshape(tf.matMul(tf.reshape(e, [e.shape[0] as number, L * d]), Wm), [-1, 1, 1, CH])) as tf.Tensor4D);
    const e = tf.tensor2d(g.normalArray(L * d), [L, d]);
    const e0 = tf.zeros([L, d]);
    const traj = [0, 1].map((i) => ({ timestep: 100 * i, sample: randn([2, S, S, CH], 30 + i) }));
    const before = tf.memory().numTensors;
    const res = conditioningAttribution(predict, { embedding: e, nullEmbedding: e0, trajectory: traj });
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(res.rowNorms).toHaveLength(L);
    expect(res.rowNorms![0]).toBeCloseTo(0, 6);
    expect(res.rowNorms![1]).toBeGreaterThan(0);
    // analytic: L = √(N·S·S)·‖u‖, u = W^T e_flat; ∂L/∂e = √(N·S·S)·W u/‖u‖
    const scale = Math.sqrt(2 * S * S);
    const analytic = tf.tidy(() => {
      const u = tf.matMul(tf.reshape(e, [1, L * d]), Wm);
      return tf.reshape(tf.mul(tf.matMul(u, tf.transpose(Wm)), scale / (tf.norm(u).dataSync()[0] as number)), [L, d]);
    });
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(analytic, res.gradient))).dataSync()[0] as number);
    expect(diff).toBeLessThan(1e-4);
    expect(res.gradientNorm).toBeCloseTo(tf.tidy(() => tf.norm(analytic).dataSync()[0] as number), 4);
    for (const t of [Wm, e, e0, analytic, res.gradient]) t.dispose();
    for (const s of traj) s.sample.dispose();
    expect(() => conditioningAttribution(predict, { embedding: tf.zeros([2]), nullEmbedding: tf.zeros([3]), trajectory: [] })).toThrow(ShapeError);
  });
});
