// Unit tests of the InvMM building blocks: presets, the adaptive λ schedule, the official DDIM
// grid and verification sampler, and the objective terms.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, DDPMScheduler, Generator } from '@diffmem/core';
import { AdaptiveKLWeight } from '../schedule.js';
import { INVMM_PRESETS, resolveInvMMConfig } from '../presets.js';
import { officialDDIMTimes, sampleVerificationDDIM } from '../sampler.js';
import { conditionalModelOutput } from '../model.js';
import { gumbelSoftmax, invmmScore, klToStandardNormal, reconstructionLoss } from '../objective.js';
import { aucLowerIsPositive } from '../auc.js';
import { CH, S, empiricalModel, maxAbsDiff, randomImages } from './helpers.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
});

describe('presets', () => {
  test('default preset = the official DDPM constants', () => {
    const c = resolveInvMMConfig();
    expect(c).toEqual({
      learningRate: 0.1,
      maxSteps: 2000,
      batchSize: 32,
      checkEvery: 50,
      stallThreshold: 1e-3,
      lambdaIncrement: 1e-4,
      lambda0: 1,
      movingAverageWindow: 100,
      scoreReduction: 'mean',
      gumbelTau: 2,
      verification: { numInferenceSteps: 200, numSamples: 8, sampler: 'official', guidanceScales: [1], stopAtFirstFailure: true, chunkSize: 2 },
    });
    expect(resolveInvMMConfig({ preset: 'ddpm-cpu' })).toMatchObject({ maxSteps: 225, batchSize: 16, checkEvery: 25, stallThreshold: 1e-3, verification: { numInferenceSteps: 50, numSamples: 8, sampler: 'scheduler' } });
    expect(resolveInvMMConfig({ preset: 'ddpm-cpu' }).lambdaIncrement).toBeCloseTo((INVMM_PRESETS['ddpm-cifar10'].lambdaIncrement * 2000) / 300, 12);
    expect(resolveInvMMConfig({ preset: 'cpu-quick' })).toMatchObject({ maxSteps: 100, batchSize: 8, checkEvery: 10, verification: { numInferenceSteps: 20, numSamples: 8 } });
    expect(resolveInvMMConfig({ preset: 'ldm-faces' })).toMatchObject({ batchSize: 16, checkEvery: 10, lambdaIncrement: 5e-4, verification: { numInferenceSteps: 50 } });
    expect(INVMM_PRESETS.sd.verification.guidanceScales).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  test('overrides merge; typos and bad values are ConfigErrors', () => {
    const c = resolveInvMMConfig({ preset: 'sd', maxSteps: 10, verification: { numSamples: 2 } });
    expect(c.maxSteps).toBe(10);
    expect(c.verification).toEqual({ numInferenceSteps: 50, numSamples: 2, sampler: 'official', guidanceScales: [1, 2, 3, 4, 5, 6, 7], stopAtFirstFailure: true, chunkSize: 2 });
    expect(() => resolveInvMMConfig({ verification: { stopAtFirstFailure: 'yes' as never } })).toThrow(/stopAtFirstFailure/);
    expect(() => resolveInvMMConfig({ maxStep: 3 } as never)).toThrow(ConfigError);
    expect(() => resolveInvMMConfig({ preset: 'cifar' as never })).toThrow(/unknown InvMM preset/);
    expect(() => resolveInvMMConfig({ batchSize: 0 })).toThrow(/batchSize must be a positive integer/);
    expect(() => resolveInvMMConfig({ learningRate: -1 })).toThrow(ConfigError);
    expect(() => resolveInvMMConfig({ verification: { sampler: 'euler' as never } })).toThrow(/sampler/);
    expect(() => resolveInvMMConfig({ verification: { guidanceScales: [] } })).toThrow(/guidanceScales/);
    expect(() => resolveInvMMConfig({ scoreReduction: 'max' as never })).toThrow(/scoreReduction/);
  });
});

describe('AdaptiveKLWeight (official λ rule)', () => {
  test('linear growth, checkpoint every C steps from step C−1, halving on a stall, window-limited moving average', () => {
    const w = new AdaptiveKLWeight({ lambda0: 1, checkEvery: 3, stallThreshold: 0.5, lambdaIncrement: 0.1, movingAverageWindow: 2 });
    const losses = [5, 4, 3, 3, 3, 3, 3, 3, 3];
    const out = losses.map((p, step) => w.update(step, p));
    expect(out.map((u) => u.checkpoint)).toEqual([false, false, true, false, false, true, false, false, true]);
    expect(out.map((u) => u.movingAverage)).toEqual([5, 4.5, 3.5, 3, 3, 3, 3, 3, 3]);
    // step 2: first checkpoint, p_prev = ∞ → λ + δ; step 5: 3.5 − 3 = 0.5, not < ξ → + δ;
    // step 8: 3 − 3 = 0 < ξ → halve.
    expect(out.map((u) => u.stalled)).toEqual([false, false, false, false, false, false, false, false, true]);
    const expected = [1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 0.9];
    out.forEach((u, i) => expect(u.lambda).toBeCloseTo(expected[i] as number, 12));
    expect(out[8]?.lambdaUsed).toBeCloseTo(1.8, 12);
  });

  test('step 0 is never a checkpoint, even with C = 1 (the official `step > 0` guard)', () => {
    const w = new AdaptiveKLWeight({ lambda0: 1, checkEvery: 1, stallThreshold: 1e-3, lambdaIncrement: 0, movingAverageWindow: 100 });
    expect(w.update(0, 1).checkpoint).toBe(false);
    expect(w.update(1, 1).checkpoint).toBe(true);
    expect(w.update(2, 1)).toMatchObject({ checkpoint: true, stalled: true, lambda: 0.5 });
  });
});

describe('verification sampler', () => {
  test('official grid: int(linspace(−1, T−1, n+1)) reversed', () => {
    const g200 = officialDDIMTimes(1000, 200);
    expect(g200).toHaveLength(201);
    expect(g200.slice(0, 3)).toEqual([999, 994, 989]);
    expect(g200.slice(-2)).toEqual([4, -1]);
    expect(officialDDIMTimes(1000, 50).slice(0, 2)).toEqual([999, 979]);
    expect(officialDDIMTimes(1000, 50).slice(-2)).toEqual([19, -1]);
    // non-integer stride: truncation toward zero like torch's .int()
    expect(officialDDIMTimes(1000, 3)).toEqual([999, 665, 332, -1]);
  });

  test('a one-image memorizing model regenerates that image from any x_T; official = diffusers trailing DDIM', async () => {
    const one = randomImages(1, 11);
    const three = randomImages(3, 12);
    const trailing = new DDPMScheduler({ timestepSpacing: 'trailing', clipSample: false });
    const m1 = empiricalModel(one, { scheduler: trailing });
    const m3 = empiricalModel(three, { scheduler: trailing });
    const xT = tf.randomNormal([4, S, S, CH], 0, 1, 'float32', 5) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const off = await sampleVerificationDDIM(m1.denoiser, m1.scheduler, xT, { numInferenceSteps: 10, sampler: 'official', condition: { kind: 'none' } });
    const target = tf.tidy(() => tf.tile(tf.sub(tf.mul(one, 2), 1), [4, 1, 1, 1]));
    expect(maxAbsDiff(off, target)).toBeLessThan(1e-3);
    const a = await sampleVerificationDDIM(m3.denoiser, m3.scheduler, xT, { numInferenceSteps: 20, sampler: 'official', condition: { kind: 'none' } });
    const b = await sampleVerificationDDIM(m3.denoiser, m3.scheduler, xT, { numInferenceSteps: 20, sampler: 'scheduler', condition: { kind: 'none' } });
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-4);
    tf.dispose([off, a, b, target]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([one, three, xT]);
    m1.dispose();
    m3.dispose();
  });
});

describe('objective', () => {
  test('KL term, score reductions and the closed form', () => {
    const g = new Generator(3);
    const mu = g.normalArray(12);
    const lv = g.normalArray(12);
    let ref = 0;
    for (let i = 0; i < 12; i++) ref += 0.5 * ((mu[i] as number) ** 2 + Math.exp(lv[i] as number) - (lv[i] as number) - 1);
    expect(invmmScore(mu, lv, 'sum')).toBeCloseTo(ref, 10);
    expect(invmmScore(mu, lv)).toBeCloseTo(ref / 12, 10);
    const kl = klToStandardNormal(tf.tensor(mu), tf.tensor(lv));
    expect(kl.dataSync()[0]).toBeCloseTo(ref / 12, 5);
    kl.dispose();
    expect(invmmScore(new Float32Array(4), new Float32Array(4))).toBe(0);
  });

  test('p_loss is ~0 for the image a one-image memorizer knows, > 0 for another; soft one-hot = given label', () => {
    const imgs = randomImages(2, 21);
    const labels = Int32Array.from([0, 1]);
    const m = empiricalModel(imgs, { labels, numClasses: 2 });
    const uncond = empiricalModel(tf.slice(imgs, [0, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D);
    const before = tf.memory().numTensors;
    const x0 = tf.tidy(() => tf.sub(tf.mul(tf.slice(imgs, [0, 0, 0, 0], [1, -1, -1, -1]), 2), 1)) as tf.Tensor4D;
    const x1 = tf.tidy(() => tf.sub(tf.mul(tf.slice(imgs, [1, 0, 0, 0], [1, -1, -1, -1]), 2), 1)) as tf.Tensor4D;
    const noise = tf.randomNormal([4, S, S, CH], 0, 1, 'float32', 1) as tf.Tensor4D;
    const ts = [0, 10, 500, 999];
    const p0 = reconstructionLoss(uncond.denoiser, uncond.scheduler, x0, noise, ts, { kind: 'none' });
    const p1 = reconstructionLoss(uncond.denoiser, uncond.scheduler, x1, noise, ts, { kind: 'none' });
    expect(p0.dataSync()[0]).toBeLessThan(1e-6);
    expect(p1.dataSync()[0]).toBeGreaterThan(0.01);
    const oneHot = tf.tensor2d([0, 1, 0, 1, 0, 1, 0, 1], [4, 2]);
    const xt = tf.randomNormal([4, S, S, CH], 0, 1, 'float32', 2) as tf.Tensor4D;
    const soft = conditionalModelOutput(m.denoiser, xt, 500, { kind: 'soft', weights: oneHot });
    const given = conditionalModelOutput(m.denoiser, xt, 500, { kind: 'label', label: 1 });
    expect(maxAbsDiff(soft, given)).toBeLessThan(1e-5);
    const [zl, zu] = [tf.tensor1d([0, 0, 8]), tf.tensor2d(new Generator(1).uniformArray(6), [2, 3])];
    const gs = gumbelSoftmax(zl, zu, 2);
    const gv = gs.dataSync();
    expect((gv[0] as number) + (gv[1] as number) + (gv[2] as number)).toBeCloseTo(1, 5);
    expect(gv[2]).toBeGreaterThan(0.5);
    tf.dispose([x0, x1, noise, p0, p1, oneHot, xt, soft, given, gs, zl, zu]);
    expect(tf.memory().numTensors).toBe(before);
    imgs.dispose();
    m.dispose();
    uncond.dispose();
  });
});

describe('AUC (lower score = positive)', () => {
  test('Mann–Whitney with ∞ and ties counted half', () => {
    expect(aucLowerIsPositive([0.1, 0.2], [0.5, Infinity])).toBe(1);
    expect(aucLowerIsPositive([Infinity], [Infinity])).toBe(0.5);
    expect(aucLowerIsPositive([0.3, Infinity], [0.3, 0.1])).toBeCloseTo((0.5 + 0 + 0 + 0) / 4, 12);
    expect(aucLowerIsPositive([1, 2, 3], [2])).toBeCloseTo((1 + 0.5 + 0) / 3, 12);
    expect(() => aucLowerIsPositive([], [1])).toThrow(/at least one/);
    expect(() => aucLowerIsPositive([NaN], [1])).toThrow(/NaN/);
  });
});
