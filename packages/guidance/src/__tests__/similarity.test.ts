import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, DDPMScheduler, Generator, InputError, ShapeError } from '@diffmem/core';
import { ReferenceIndex, nl2 } from '@diffmem/metrics';
import { EmbeddingSimilarity, NoisedTrainingNl2Similarity, PixelNl2Similarity, type SimilarityEmbedder } from '../index.js';
import { smoothImages, toModel } from './helpers.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
});

const sched = new DDPMScheduler();
const ctx = (t: number) => ({ timestep: t, numTrainTimesteps: 1000, alphaProd: sched.alphasCumprod[t] as number });

/** Central finite difference of Σσ along a random direction v vs ⟨∇σ, v⟩. */
function directional(f: (x: tf.Tensor4D) => number, x: tf.Tensor4D, grad: tf.Tensor4D, seed: number, h = 1e-3): [number, number] {
  const g = new Generator(seed);
  const v = tf.tensor4d(g.normalArray(x.size), x.shape);
  const xp = tf.add(x, tf.mul(v, h)) as tf.Tensor4D;
  const xm = tf.sub(x, tf.mul(v, h)) as tf.Tensor4D;
  const fd = (f(xp) - f(xm)) / (2 * h);
  const an = tf.sum(tf.mul(grad, v)).dataSync()[0] as number;
  tf.dispose([v, xp, xm]);
  return [fd, an];
}

describe('PixelNl2Similarity (AMG Eq. 8)', () => {
  let train: tf.Tensor4D;
  let index: ReferenceIndex;
  beforeAll(async () => {
    await tf.setBackend('wasm');
    train = smoothImages(60, 8, 3, 1);
    index = ReferenceIndex.fromImages(train);
  });
  afterAll(() => {
    index.dispose();
    train.dispose();
  });

  test('σ = −nL2 of x̂0 in display units, with neighbours; gradient matches finite differences; no leaks', () => {
    const sim = new PixelNl2Similarity(index, { labels: Array.from({ length: 60 }, (_, i) => i % 3) });
    const x0Display = smoothImages(4, 8, 3, 2);
    const x0 = toModel(x0Display);
    const before = tf.memory().numTensors;
    const r = sim.evaluate(x0, ctx(500), { grad: true, voteK: 10 });
    expect(tf.memory().numTensors).toBe(before + 1); // only the gradient
    const ref = nl2(x0Display, index);
    r.sigma.forEach((s, i) => expect(s).toBeCloseTo(-(ref.nl2[i] as number), 5));
    expect(r.nearestIndex).toEqual(ref.nearestIndex);
    expect(r.voteIndices?.[0]).toHaveLength(10);
    expect(r.grad?.shape).toEqual([4, 8, 8, 3]);
    // The full derivative (denominator included) matches finite differences …
    const full = new PixelNl2Similarity(index, { detachDenominator: false });
    const rf = full.evaluate(x0, ctx(500), { grad: true });
    const f = (x: tf.Tensor4D): number => full.evaluate(x, ctx(500)).sigma.reduce((a, b) => a + b, 0);
    const [fd, an] = directional(f, x0, rf.grad as tf.Tensor4D, 5);
    expect(an).toBeCloseTo(fd, 3);
    expect(Math.abs(an)).toBeGreaterThan(1e-2);
    // … and the official one (denominator held constant) is −(1/(α·mean))·∂ℓ2(x̂0, n0)/∂x̂0.
    const n0 = tf.tidy(() => tf.sub(tf.mul(tf.gather(train, tf.tensor1d(ref.nearestIndex, 'int32')), 2), 1));
    const expected = tf.tidy(() => {
      const diff = tf.mul(tf.sub(x0, n0), 0.5); // display units
      const d0 = tf.sqrt(tf.mean(tf.square(diff), [1, 2, 3], true));
      const den = tf.tensor4d(ref.neighborMeanDistance.map((m) => 0.5 * m), [4, 1, 1, 1]);
      return tf.mul(tf.neg(tf.div(tf.div(diff, tf.mul(d0, 192)), den)), 0.5); // chain ∂display/∂model = ½
    });
    expect(tf.max(tf.abs(tf.sub(expected, r.grad as tf.Tensor4D))).dataSync()[0]).toBeLessThan(1e-5);
    tf.dispose([n0, expected, rf.grad as tf.Tensor]);
    // Stepping against the gradient lowers σ (moves x̂0 away from n0).
    const stepped = tf.sub(x0, tf.mul(r.grad as tf.Tensor4D, 0.5)) as tf.Tensor4D;
    const after = sim.evaluate(stepped, ctx(500)).sigma;
    after.forEach((s, i) => expect(s).toBeLessThan(r.sigma[i] as number));
    tf.dispose([x0Display, x0, stepped, r.grad as tf.Tensor]);
  });

  test('a bit-exact copy takes the gradient along x_t/√ᾱ − n0 (official torch would hit sqrt(0))', () => {
    const sim = new PixelNl2Similarity(index);
    const none = new PixelNl2Similarity(index, { exactCopyDirection: 'none' });
    const copy = toModel(tf.slice(train, [7, 0, 0, 0], [1, 8, 8, 3]));
    const a = sched.alphasCumprod[300] as number;
    const dir = tf.tensor4d(new Generator(3).normalArray(192), [1, 8, 8, 3]);
    const xt = tf.tidy(() => tf.add(tf.mul(copy, Math.sqrt(a)), tf.mul(dir, Math.sqrt(1 - a)))) as tf.Tensor4D;
    const r = sim.evaluate(copy, { ...ctx(300), sample: xt }, { grad: true });
    const z = none.evaluate(copy, { ...ctx(300), sample: xt }, { grad: true });
    expect(r.sigma[0]).toBeCloseTo(0, 6);
    expect(tf.norm(z.grad as tf.Tensor).dataSync()[0]).toBeLessThan(1e-3);
    // Non-zero, and pointing back along the departure (σ decreases along +dir, i.e. ⟨∇σ, dir⟩ < 0).
    const g = r.grad as tf.Tensor4D;
    const cos = tf.tidy(() => tf.sum(tf.mul(g, dir)).dataSync()[0]! / (tf.norm(g).dataSync()[0]! * tf.norm(dir).dataSync()[0]!));
    expect(cos).toBeLessThan(-0.99);
    tf.dispose([copy, dir, xt, g, z.grad as tf.Tensor]);
  });

  test('bad input: k larger than the set, feature index, wrong sample shape', () => {
    expect(() => new PixelNl2Similarity(index, { k: 61 })).toThrow(ConfigError);
    const feats = ReferenceIndex.fromFeatures(tf.ones([3, 4]));
    expect(() => new PixelNl2Similarity(feats)).toThrow(ConfigError);
    feats.dispose();
    const sim = new PixelNl2Similarity(index);
    const wrong = tf.zeros([2, 4, 4, 3]) as tf.Tensor4D;
    expect(() => sim.evaluate(wrong, ctx(10))).toThrow(ShapeError);
    wrong.dispose();
    expect(() => new PixelNl2Similarity(index, { labels: [1, 2] })).toThrow(ShapeError);
  });

  test('an empty reference set is a typed error', () => {
    expect(() => ReferenceIndex.fromImages(tf.zeros([0, 8, 8, 3]))).toThrow(InputError);
    const empty = tf.zeros([0, 8, 8, 3]) as tf.Tensor4D;
    try {
      new NoisedTrainingNl2Similarity(empty, { alphasCumprod: sched.alphasCumprod });
      throw new Error('expected a throw');
    } catch (e) {
      expect(e).toBeInstanceOf(InputError);
      expect((e as InputError).code).toBe('EMPTY_REFERENCE_INDEX');
    }
    empty.dispose();
  });
});

describe('EmbeddingSimilarity (AMG Eq. 9)', () => {
  test('cosine of descriptors, differentiable through the embedder', () => {
    const W = tf.tensor2d(new Generator(9).normalArray(192 * 16), [192, 16]);
    const embedder: SimilarityEmbedder = {
      name: 'random-projection',
      dim: 16,
      embed: (images) => tf.tidy(() => {
        const e = tf.matMul(tf.reshape(tf.sub(images, 0.5), [images.shape[0], -1]), W);
        return tf.div(e, tf.norm(e, 2, 1, true)) as tf.Tensor2D;
      }),
    };
    const train = smoothImages(20, 8, 3, 4);
    const feats = embedder.embed(train);
    const index = ReferenceIndex.fromFeatures(feats);
    const sim = new EmbeddingSimilarity(embedder, index);
    const x0 = toModel(smoothImages(3, 8, 3, 5));
    const before = tf.memory().numTensors;
    const r = sim.evaluate(x0, ctx(200), { grad: true, voteK: 5 });
    expect(tf.memory().numTensors).toBe(before + 1);
    r.sigma.forEach((s) => expect(Math.abs(s)).toBeLessThanOrEqual(1 + 1e-6));
    const f = (x: tf.Tensor4D): number => sim.evaluate(x, ctx(200)).sigma.reduce((a, b) => a + b, 0);
    const [fd, an] = directional(f, x0, r.grad as tf.Tensor4D, 6);
    expect(an).toBeCloseTo(fd, 2);
    // A training image matches itself with cosine 1.
    const own = toModel(tf.slice(train, [4, 0, 0, 0], [1, 8, 8, 3]));
    const o = sim.evaluate(own, ctx(0));
    expect(o.sigma[0]).toBeCloseTo(1, 5);
    expect(o.nearestIndex[0]).toBe(4);
    expect(() => new EmbeddingSimilarity({ ...embedder, dim: 8 }, index)).toThrow(ShapeError);
    tf.dispose([W, train, feats, x0, own, r.grad as tf.Tensor]);
    index.dispose();
  });
});

describe('NoisedTrainingNl2Similarity (official iDDPM)', () => {
  test('x_t against the training set noised to t: a noised training image is its own nearest neighbour', () => {
    const trainD = smoothImages(60, 8, 3, 7);
    const train = toModel(trainD);
    const sim = new NoisedTrainingNl2Similarity(train, { alphasCumprod: sched.alphasCumprod, generator: 1, labels: Array.from({ length: 60 }, () => 0) });
    const t = 50;
    const a = sched.alphasCumprod[t] as number;
    const xt = tf.tidy(() => tf.add(tf.mul(tf.slice(train, [9, 0, 0, 0], [2, 8, 8, 3]), Math.sqrt(a)), tf.mul(tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 3), Math.sqrt(1 - a)))) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const r = sim.evaluate(xt, ctx(t), { grad: true });
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(r.nearestIndex).toEqual([9, 10]);
    r.nl2?.forEach((v) => expect(v).toBeLessThan(1.2));
    // Fresh noise per call: a second call gives different σ.
    const r2 = sim.evaluate(xt, ctx(t));
    expect(r2.sigma[0]).not.toBe(r.sigma[0]);
    tf.dispose([trainD, train, xt, r.grad as tf.Tensor]);
    sim.dispose();
  });
});
