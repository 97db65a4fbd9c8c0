import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { Generator, InputError, ShapeError } from '@diffmem/core';
import {
  FeatureStatsAccumulator,
  ModelEmbedder,
  featureStats,
  frechetDistance,
  frechetDistanceFromStats,
  frechetDistanceImages,
  matMul64,
  pixelFeatures,
  sqrtmPsd,
  symmetricEigen,
  type FeatureStats,
} from '../index.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

/** A random orthogonal n×n matrix (Gram–Schmidt on Gaussian columns), row-major. */
function randomOrthogonal(n: number, g: Generator): Float64Array {
  const q = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const v = Array.from({ length: n }, () => g.normal());
    for (let k = 0; k < j; k++) {
      let dot = 0;
      for (let i = 0; i < n; i++) dot += (v[i] as number) * (q[i * n + k] as number);
      for (let i = 0; i < n; i++) v[i] = (v[i] as number) - dot * (q[i * n + k] as number);
    }
    const norm = Math.hypot(...v);
    for (let i = 0; i < n; i++) q[i * n + j] = (v[i] as number) / norm;
  }
  return q;
}

function transpose(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j] as number;
  return t;
}

function withEigenvalues(q: Float64Array, lambda: number[]): Float64Array {
  const n = lambda.length;
  const d = new Float64Array(n * n);
  lambda.forEach((l, i) => (d[i * n + i] = l));
  return matMul64(matMul64(q, d, n), transpose(q, n), n);
}

describe('Jacobi eigen solver', () => {
  it('recovers known eigenvalues and orthonormal eigenvectors', () => {
    const n = 12;
    const g = new Generator(1);
    const q = randomOrthogonal(n, g);
    const lambda = Array.from({ length: n }, (_, i) => (i - 3) * 0.7);
    const a = withEigenvalues(q, lambda);
    const { values, vectors } = symmetricEigen(a, n);
    lambda.forEach((l, i) => expect(values[i]).toBeCloseTo(l, 10));
    const vtv = matMul64(transpose(vectors, n), vectors, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(vtv[i * n + j]).toBeCloseTo(i === j ? 1 : 0, 10);
    const back = withEigenvalues(vectors, Array.from(values));
    for (let i = 0; i < n * n; i++) expect(back[i]).toBeCloseTo(a[i] as number, 10);
  });

  it('Householder–QL agrees with Jacobi (values and vectors) and is fast at FID sizes', () => {
    for (const n of [1, 2, 5, 40, 90]) {
      const g = new Generator(10 + n);
      const m = new Float64Array(n * n).map(() => g.normal());
      const sym = Float64Array.from(m, (_, i) => ((m[i] as number) + (m[(i % n) * n + Math.floor(i / n)] as number)) / 2);
      const jac = symmetricEigen(sym, n, { method: 'jacobi' });
      const hql = symmetricEigen(sym, n, { method: 'householder-ql' });
      const vals = symmetricEigen(sym, n, { method: 'householder-ql', vectors: false });
      for (let i = 0; i < n; i++) {
        expect(hql.values[i]).toBeCloseTo(jac.values[i] as number, 9);
        expect(vals.values[i]).toBeCloseTo(jac.values[i] as number, 9);
      }
      const back = withEigenvalues(hql.vectors, Array.from(hql.values));
      for (let i = 0; i < n * n; i++) expect(back[i]).toBeCloseTo(sym[i] as number, 9);
    }
    // repeated eigenvalues
    const q = randomOrthogonal(10, new Generator(99));
    const rep = withEigenvalues(q, [1, 1, 1, 2, 2, 3, 3, 3, 3, 0]);
    expect(Array.from(symmetricEigen(rep, 10, { method: 'householder-ql' }).values)).toEqual([0, 1, 1, 1, 2, 2, 3, 3, 3, 3].map((v) => expect.closeTo(v, 10)));
    const n = 256;
    const g = new Generator(7);
    const big = withEigenvalues(randomOrthogonal(n, g), Array.from({ length: n }, (_, i) => i / n));
    const t0 = performance.now();
    const e = symmetricEigen(big, n);
    const ms = performance.now() - t0;
    console.log(`Householder–QL eigendecomposition of a ${n}x${n} matrix: ${ms.toFixed(0)} ms`);
    expect(e.values[n - 1]).toBeCloseTo((n - 1) / n, 9);
  });

  it('computes the PSD square root (S·S = A), clipping round-off negatives', () => {
    const n = 8;
    const q = randomOrthogonal(n, new Generator(2));
    const a = withEigenvalues(q, [0, 0, 1e-3, 0.5, 1, 2, 3, 10]);
    const { sqrt } = sqrtmPsd(a, n);
    const s2 = matMul64(sqrt, sqrt, n);
    for (let i = 0; i < n * n; i++) expect(s2[i]).toBeCloseTo(a[i] as number, 9);
    expect(() => symmetricEigen([1, 2, 3], 2)).toThrow(ShapeError);
  });
});

describe('Fréchet distance', () => {
  function stats(mu: number[], sigma: Float64Array, n = 100): FeatureStats {
    return { n, dim: mu.length, mu: Float64Array.from(mu), sigma };
  }

  it('is 0 for identical statistics and (μ1−μ2)² + (σ1−σ2)² in 1-D', () => {
    expect(frechetDistanceFromStats(stats([1], Float64Array.of(4)), stats([1], Float64Array.of(4)))).toBeCloseTo(0, 10);
    expect(frechetDistanceFromStats(stats([1], Float64Array.of(4)), stats([3], Float64Array.of(9)))).toBeCloseTo(4 + 1, 10);
  });

  it('matches the closed form for commuting covariances and is rotation invariant', () => {
    const n = 6;
    const q = randomOrthogonal(n, new Generator(3));
    const l1 = [0.5, 1, 2, 3, 4, 5];
    const l2 = [2, 1, 0.25, 3, 1, 0.1];
    const mu1 = [0, 1, 2, 3, 4, 5];
    const mu2 = [1, 1, 1, 1, 1, 1];
    const closed = mu1.reduce((a, m, i) => a + (m - (mu2[i] as number)) ** 2, 0) + l1.reduce((a, l, i) => a + (Math.sqrt(l) - Math.sqrt(l2[i] as number)) ** 2, 0);
    const diag = (l: number[]) => withEigenvalues(new Float64Array(n * n).map((_, i) => (i % (n + 1) === 0 ? 1 : 0)), l);
    expect(frechetDistanceFromStats(stats(mu1, diag(l1)), stats(mu2, diag(l2)))).toBeCloseTo(closed, 8);
    // rotate both distributions by the same orthogonal Q: distance unchanged
    const rot = (mu: number[]) => Array.from({ length: n }, (_, i) => mu.reduce((a, m, j) => a + (q[i * n + j] as number) * m, 0));
    expect(frechetDistanceFromStats(stats(rot(mu1), withEigenvalues(q, l1)), stats(rot(mu2), withEigenvalues(q, l2)))).toBeCloseTo(closed, 8);
  });

  it('estimates mean and unbiased covariance from features (float64 accumulation)', () => {
    const g = new Generator(4);
    const data = g.normalArray(300 * 5).map((v, i) => v + 100 * ((i % 5) + 1)); // large offsets test the shift trick
    const feats = tf.tensor2d(data, [300, 5]);
    const before = tf.memory().numTensors;
    const s = featureStats(feats, { batchSize: 64 });
    expect(tf.memory().numTensors).toBe(before);
    for (let j = 0; j < 5; j++) {
      let m = 0;
      for (let i = 0; i < 300; i++) m += data[i * 5 + j] as number;
      m /= 300;
      expect(s.mu[j]).toBeCloseTo(m, 6);
      let v = 0;
      for (let i = 0; i < 300; i++) v += ((data[i * 5 + j] as number) - m) ** 2;
      expect(s.sigma[j * 5 + j]).toBeCloseTo(v / 299, 3);
    }
    expect(frechetDistance(feats, feats)).toBeCloseTo(0, 6);
    const acc = new FeatureStatsAccumulator();
    const one = tf.slice(feats, [0, 0], [1, 5]);
    acc.add(one);
    expect(() => acc.finish()).toThrow(InputError);
    const other = tf.zeros([2, 4]);
    expect(() => acc.add(other)).toThrow(ShapeError);
    for (const t of [feats, one, other]) t.dispose();
  });

  it('compares image sets with pluggable features (pixels or an Embedder)', () => {
    const g = new Generator(5);
    const a = tf.tensor4d(g.uniformArray(40 * 16 * 16 * 3), [40, 16, 16, 3]);
    const bData = g.uniformArray(40 * 16 * 16 * 3).map((v) => 0.5 * v); // darker set
    const b = tf.tensor4d(bData, [40, 16, 16, 3]);
    const before = tf.memory().numTensors;
    const self = frechetDistanceImages(a, a, pixelFeatures(4), { batchSize: 16 });
    const cross = frechetDistanceImages(a, b, pixelFeatures(4), { batchSize: 16 });
    expect(self).toBeCloseTo(0, 6);
    expect(cross).toBeGreaterThan(1);
    // any Embedder plugs in (a 6-d model embedder keeps the test fast; 521-d takes seconds)
    const tiny = new ModelEmbedder((x: tf.Tensor4D) => tf.concat([tf.mean(x, [1, 2]), tf.max(x, [1, 2])], 1), { name: 'tiny', preprocess: 'none' });
    const embCross = frechetDistanceImages(a, b, tiny, { batchSize: 20 });
    expect(embCross).toBeGreaterThan(0);
    expect(frechetDistanceImages(a, a, tiny)).toBeCloseTo(0, 6);
    expect(tf.memory().numTensors).toBe(before);
    a.dispose();
    b.dispose();
  });
});
