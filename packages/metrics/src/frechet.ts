/**
 * Fréchet distance between two feature sets modelled as Gaussians (Heusel et al. 2017, FID):
 *
 *   d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^{½} Σ₂ Σ₁^{½})^{½})
 *
 * The cross term uses the symmetric form: Tr((Σ₁Σ₂)^{½}) = Tr((Σ₁^{½}Σ₂Σ₁^{½})^{½}) =
 * Σ √λᵢ(Σ₁^{½}Σ₂Σ₁^{½}), computed with two symmetric eigendecompositions (Jacobi, float64) —
 * no complex parts to discard, unlike `scipy.linalg.sqrtm(Σ₁Σ₂)` in pytorch-fid. Covariances are
 * unbiased (N − 1, as `np.cov`), accumulated in float64 over float32 chunk products.
 *
 * Features are pluggable: any {@link Embedder}, a function of tf ops, or {@link pixelFeatures}.
 * FID proper needs Inception-v3 pool features (2048-d), which diffmem does not ship; numbers
 * from other feature extractors are not comparable to published FIDs.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError, ShapeError } from '@diffmem/core';
import { checkFiniteRows, checkInt, readFloat32 } from './internal/checks.js';
import { resizeAntialiased } from './embedders/preprocess.js';
import type { Embedder } from './embedders/types.js';
import { matMul64, sqrtmPsd, symmetricEigen } from './linalg/jacobi.js';

/** Mean and covariance of a feature set. */
export interface FeatureStats {
  /** Number of feature vectors. */
  n: number;
  dim: number;
  mu: Float64Array;
  /** Row-major dim×dim unbiased covariance. */
  sigma: Float64Array;
}

/** Streams feature batches into mean/covariance sums (float64). */
export class FeatureStatsAccumulator {
  private n = 0;
  private dim = -1;
  private sum: Float64Array = new Float64Array(0);
  private sumSq: Float64Array = new Float64Array(0);
  private shift: Float32Array | null = null;

  /** Adds a [B, D] batch (not disposed). */
  add(features: tf.Tensor): void {
    if (!(features instanceof tf.Tensor) || features.rank !== 2) {
      throw new ShapeError(`features must be a [N, D] tensor, got ${features instanceof tf.Tensor ? `[${features.shape.join(',')}]` : typeof features}`);
    }
    const [b, d] = features.shape as [number, number];
    if (b === 0) return;
    if (this.dim < 0) {
      this.dim = d;
      this.sum = new Float64Array(d);
      this.sumSq = new Float64Array(d * d);
    } else if (d !== this.dim) throw new ShapeError(`feature batch has dimension ${d}, earlier batches ${this.dim}`, { expected: this.dim, actual: d });
    const data = readFloat32(features);
    checkFiniteRows(data, d, 'features');
    // Shift by the first row to keep the float32 cross products well conditioned.
    if (!this.shift) this.shift = data.slice(0, d);
    const shift = this.shift;
    const cross = tf.tidy(() => {
      const x = tf.sub(tf.tensor2d(data, [b, d]), tf.tensor2d(shift, [1, d]));
      return tf.matMul(tf.transpose(x), x);
    });
    const c = cross.dataSync();
    cross.dispose();
    for (let i = 0; i < d * d; i++) this.sumSq[i] = (this.sumSq[i] as number) + (c[i] as number);
    for (let r = 0; r < b; r++) for (let j = 0; j < d; j++) this.sum[j] = (this.sum[j] as number) + (data[r * d + j] as number) - (shift[j] as number);
    this.n += b;
  }

  /** Mean and unbiased covariance of everything added. */
  finish(): FeatureStats {
    if (this.n < 2) throw new InputError('TOO_FEW_SAMPLES', `a covariance needs at least 2 feature vectors, got ${this.n}`, { n: this.n });
    const d = this.dim;
    const n = this.n;
    const meanShifted = Float64Array.from(this.sum, (s) => s / n);
    const sigma = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) {
        sigma[i * d + j] = ((this.sumSq[i * d + j] as number) - n * (meanShifted[i] as number) * (meanShifted[j] as number)) / (n - 1);
      }
    }
    const shift = this.shift as Float32Array;
    const mu = Float64Array.from(meanShifted, (m, j) => m + (shift[j] as number));
    return { n, dim: d, mu, sigma };
  }
}

/** Mean and unbiased covariance of a [N, D] feature matrix. */
export function featureStats(features: tf.Tensor, options: { batchSize?: number } = {}): FeatureStats {
  const acc = new FeatureStatsAccumulator();
  const bs = checkInt(options.batchSize ?? 4096, 'batchSize');
  if (!(features instanceof tf.Tensor) || features.rank !== 2) throw new ShapeError('features must be a [N, D] tensor');
  const n = features.shape[0] as number;
  for (let s = 0; s < n; s += bs) {
    const chunk = tf.slice(features, [s, 0], [Math.min(bs, n - s), -1]);
    acc.add(chunk);
    chunk.dispose();
  }
  return acc.finish();
}

/** The Fréchet distance between two Gaussians (see the module formula). */
export function frechetDistanceFromStats(a: FeatureStats, b: FeatureStats): number {
  if (a.dim !== b.dim) throw new ShapeError(`feature dimensions differ: ${a.dim} vs ${b.dim}`, { expected: a.dim, actual: b.dim });
  const d = a.dim;
  let meanTerm = 0;
  for (let i = 0; i < d; i++) meanTerm += ((a.mu[i] as number) - (b.mu[i] as number)) ** 2;
  let tr = 0;
  for (let i = 0; i < d; i++) tr += (a.sigma[i * d + i] as number) + (b.sigma[i * d + i] as number);
  const s1h = sqrtmPsd(a.sigma, d).sqrt;
  const m = matMul64(matMul64(s1h, b.sigma, d), s1h, d);
  // Only the eigenvalues of M are needed: Tr(M^½) = Σ √λᵢ.
  const { values } = symmetricEigen(m, d, { vectors: false });
  let cross = 0;
  for (const l of values) cross += Math.sqrt(Math.max(l, 0));
  // Round-off can make an exact-zero distance slightly negative.
  return Math.max(0, meanTerm + tr - 2 * cross);
}

/** The Fréchet distance between two feature matrices [N₁, D] and [N₂, D]. */
export function frechetDistance(a: tf.Tensor | FeatureStats, b: tf.Tensor | FeatureStats): number {
  const sa = a instanceof tf.Tensor ? featureStats(a) : a;
  const sb = b instanceof tf.Tensor ? featureStats(b) : b;
  return frechetDistanceFromStats(sa, sb);
}

/** A feature extractor: display images [N,H,W,C] → [N, D]. */
export type FeatureFunction = (images: tf.Tensor4D) => tf.Tensor2D;

/**
 * Raw-pixel features: each image resized (antialiased) to size×size and flattened (3·size² values),
 * a weight-free stand-in for Inception features when only relative comparisons are needed.
 */
export function pixelFeatures(size = 8): FeatureFunction {
  checkInt(size, 'size');
  return (images) =>
    tf.tidy(() => {
      let x = images;
      if (x.shape[3] === 1) x = tf.tile(x, [1, 1, 1, 3]);
      return tf.reshape(resizeAntialiased(x, size, size), [x.shape[0], -1]) as tf.Tensor2D;
    });
}

function extractor(features: Embedder | FeatureFunction): FeatureFunction {
  if (typeof features === 'function') return features;
  if (features && typeof features.embed === 'function') return (x) => features.embed(x);
  throw new ConfigError('features must be an Embedder or a function images → [N, D]');
}

/**
 * Fréchet distance between two image sets under a pluggable feature extractor; images are
 * processed in batches (default 64). Inputs are not disposed.
 */
export function frechetDistanceImages(
  imagesA: tf.Tensor4D,
  imagesB: tf.Tensor4D,
  features: Embedder | FeatureFunction,
  options: { batchSize?: number } = {},
): number {
  const f = extractor(features);
  const bs = checkInt(options.batchSize ?? 64, 'batchSize');
  const stats = (imgs: tf.Tensor4D, name: string): FeatureStats => {
    if (!(imgs instanceof tf.Tensor) || imgs.rank !== 4) throw new ShapeError(`${name} must be an image batch [N,H,W,C]`);
    const acc = new FeatureStatsAccumulator();
    const n = imgs.shape[0];
    for (let s = 0; s < n; s += bs) {
      const feats = tf.tidy(() => f(tf.slice(imgs, [s, 0, 0, 0], [Math.min(bs, n - s), -1, -1, -1])));
      try {
        acc.add(feats);
      } finally {
        feats.dispose();
      }
    }
    return acc.finish();
  };
  return frechetDistanceFromStats(stats(imagesA, 'imagesA'), stats(imagesB, 'imagesB'));
}
