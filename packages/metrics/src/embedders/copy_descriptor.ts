/**
 * A weight-free copy-detection descriptor that works offline: a multi-scale, flip-invariant set
 * of low-frequency luminance layouts, gradient-energy and local-contrast maps, and a coarse
 * chroma layout, each block standardised (zero mean, unit norm) so brightness/contrast/saturation
 * changes cancel, then concatenated with fixed weights and L2-normalised.
 *
 * It is not a learned descriptor (no SSCD): it recognises near-duplicates under JPEG re-encoding,
 * resizing, crops up to ~20%, colour jitter, blur and horizontal flips, not semantic or heavily
 * edited copies. Validated on real photographs (see `docs/metrics.md` for AUC / TPR@1%FPR).
 *
 * Flip invariance: every spatial map T is replaced by its mirror-symmetric part T + flip(T) and
 * the magnitude of its antisymmetric part |T − flip(T)| (left halves), both unchanged by a
 * horizontal flip. All ops are differentiable tf ops (usable for guidance).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, type ImageBatch } from '@diffmem/core';
import { checkTensor } from '../internal/checks.js';
import { resizeAntialiased } from './preprocess.js';
import { l2NormalizeRows, type Embedder } from './types.js';

/** Relative weights of the descriptor blocks (defaults tuned on the evaluation set, see docs). */
export interface CopyDescriptorWeights {
  /** Luminance layout, 4×4. */
  luma4: number;
  /** Luminance layout, 8×8. */
  luma8: number;
  /** Luminance layout, 16×16. */
  luma16: number;
  /** Gradient-magnitude layout, 8×8. */
  gradient: number;
  /** Local-contrast (cell standard deviation) layout, 8×8. */
  contrast: number;
  /** Opponent-chroma layout, 4×4×2. */
  chroma: number;
  /** Global histogram of standardised luminance (16 soft bins; crop- and flip-invariant). */
  lumaHist: number;
  /** Global histogram of gradient orientation, magnitude-weighted, flip-symmetrised (9 bins). */
  orientHist: number;
}

/** The default block weights. */
export const COPY_DESCRIPTOR_WEIGHTS: Readonly<CopyDescriptorWeights> = Object.freeze({
  luma4: 3,
  luma8: 1.5,
  luma16: 0.7,
  gradient: 2,
  contrast: 0.5,
  chroma: 1,
  lumaHist: 0.5,
  orientHist: 0.5,
});

/** Options of {@link CopyDescriptorEmbedder}. */
export interface CopyDescriptorOptions {
  /** Block weights (merged over the defaults). */
  weights?: Partial<CopyDescriptorWeights>;
}

const WORK = 64; // working resolution (square)

/** Area-average pooling of a [N,S,S,C] map to [N,s,s,C] (s divides S), via reshape + mean. */
function poolTo(x: tf.Tensor4D, s: number): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const f = h / s;
  const g = w / s;
  const r = tf.reshape(x, [n * s, f, s, g * c]);
  const m = tf.mean(r, 1); // [N·s, s, g·C]
  const m2 = tf.reshape(m, [n * s, s, g, c]);
  return tf.reshape(tf.mean(m2, 2), [n, s, s, c]);
}

/** Flip-invariant encoding of a [N,h,w,C] map: [sym, ½|antisym|] of the left half, flattened. */
/** Weight of the antisymmetric part: it carries less identity than the symmetric part. */
const ANTI_WEIGHT = 0.5;

function flipInvariant(t: tf.Tensor4D): tf.Tensor2D {
  const [n, h, w, c] = t.shape;
  const half = w / 2;
  const f = tf.reverse(t, 2);
  const sym = tf.slice(tf.add(t, f), [0, 0, 0, 0], [n, h, half, c]);
  const anti = tf.slice(tf.abs(tf.sub(t, f)), [0, 0, 0, 0], [n, h, half, c]);
  return tf.concat([tf.reshape(sym, [n, -1]), tf.mul(tf.reshape(anti, [n, -1]), ANTI_WEIGHT)], 1) as tf.Tensor2D;
}

/**
 * Zero-mean, unit-norm rows times `weight`. The norm is floored at an RMS of 0.005 (display
 * units) so that a featureless block (e.g. the chroma of a grey image) stays ~0 instead of
 * amplifying compression noise to a unit vector.
 */
function standardise(b: tf.Tensor2D, weight: number): tf.Tensor2D {
  const centred = tf.sub(b, tf.mean(b, 1, true));
  const floor = 0.005 * Math.sqrt(b.shape[1]);
  return tf.mul(tf.div(centred, tf.maximum(tf.norm(centred, 2, 1, true), floor)), weight) as tf.Tensor2D;
}

/**
 * The weight-free copy-detection descriptor (`name: 'diffmem-copy-descriptor-v1'`, 512-d).
 * Pure tf ops; any input size (images are squashed to 64×64 with antialiasing).
 */
export class CopyDescriptorEmbedder implements Embedder {
  readonly name = 'diffmem-copy-descriptor-v1';
  readonly preprocess = null;
  readonly dim: number;
  readonly weights: Readonly<CopyDescriptorWeights>;

  constructor(options: CopyDescriptorOptions = {}) {
    const w = { ...COPY_DESCRIPTOR_WEIGHTS, ...(options.weights ?? {}) };
    for (const [k, v] of Object.entries(w)) {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new ConfigError(`weights.${k} must be a finite number ≥ 0, got ${String(v)}`);
    }
    if (Object.values(w).every((v) => v === 0)) throw new ConfigError('at least one descriptor weight must be > 0');
    this.weights = Object.freeze(w);
    // luma8: 8·4·2, luma16: 16·8·2, gradient: 8·4·2, contrast: 8·4·2, chroma: 4·2·2·2
    this.dim = 16 + 64 + 256 + 64 + 64 + 32 + 16 + 9;
  }

  embed(images: ImageBatch<'display'> | tf.Tensor4D): tf.Tensor2D {
    checkTensor(images, 'images');
    if (images.rank !== 4 || (images.shape[3] !== 3 && images.shape[3] !== 1)) {
      throw new ShapeError(`images must be display-space [N,H,W,3|1], got [${images.shape.join(',')}]`, { actual: images.shape });
    }
    const w = this.weights;
    return tf.tidy(() => {
      let x = images as tf.Tensor4D;
      if (x.shape[3] === 1) x = tf.tile(x, [1, 1, 1, 3]);
      x = resizeAntialiased(x, WORK, WORK);
      const [r, g, b] = tf.split(x, 3, 3) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
      const y = tf.addN([tf.mul(r, 0.299), tf.mul(g, 0.587), tf.mul(b, 0.114)]) as tf.Tensor4D;
      // Opponent chroma (zero for grey pixels; saturation changes scale it, standardisation cancels).
      const o1 = tf.mul(tf.sub(r, g), Math.SQRT1_2);
      const o2 = tf.mul(tf.sub(tf.add(r, g), tf.mul(b, 2)), 1 / Math.sqrt(6));
      const chroma = tf.concat([o1, o2], 3) as tf.Tensor4D;

      // Gradient energy at 32×32 (pooling first suppresses JPEG blocking and noise).
      const y32 = poolTo(y, 32);
      const padded = tf.pad(y32, [[0, 0], [1, 1], [1, 1], [0, 0]], 0);
      const sobelX = tf.tensor4d([-1, 0, 1, -2, 0, 2, -1, 0, 1], [3, 3, 1, 1]);
      const sobelY = tf.tensor4d([-1, -2, -1, 0, 0, 0, 1, 2, 1], [3, 3, 1, 1]);
      const gx = tf.conv2d(padded, sobelX, 1, 'valid');
      const gy = tf.conv2d(padded, sobelY, 1, 'valid');
      const gmag = tf.sqrt(tf.add(tf.add(tf.square(gx), tf.square(gy)), 1e-8)) as tf.Tensor4D;

      // Local contrast: standard deviation of luminance inside each 8×8-pixel cell.
      const m1 = poolTo(y, 8);
      const m2 = poolTo(tf.square(y) as tf.Tensor4D, 8);
      const std = tf.sqrt(tf.relu(tf.add(tf.sub(m2, tf.square(m1)), 1e-8))) as tf.Tensor4D;

      // Global histograms: soft (Gaussian-kernel) bins keep them differentiable.
      const n = x.shape[0];
      const yFlat = tf.reshape(y, [n, -1]);
      const ym = tf.mean(yFlat, 1, true);
      const ys = tf.sqrt(tf.add(tf.mean(tf.square(tf.sub(yFlat, ym)), 1, true), 1e-6));
      const yStd = tf.div(tf.sub(yFlat, ym), ys); // [N, P]
      const centres = tf.reshape(tf.linspace(-2.5, 2.5, 16), [1, 1, 16]);
      const lumaHist = tf.mean(tf.exp(tf.mul(tf.square(tf.sub(tf.expandDims(yStd, 2), centres)), -1 / (2 * 0.17 * 0.17))), 1) as tf.Tensor2D;
      // Orientation θ ∈ [0, π) (unsigned); a horizontal flip maps θ → π − θ, so bins are
      // symmetrised: h'(θ) = h(θ) + h(π − θ).
      const gxF = tf.reshape(gx, [n, -1]);
      const gyF = tf.reshape(gy, [n, -1]);
      const mag = tf.reshape(gmag, [n, -1]);
      const theta = tf.atan2(gyF, gxF); // (−π, π]
      const nb = 16;
      const binC = tf.reshape(tf.linspace(0, Math.PI * (1 - 1 / nb), nb), [1, 1, nb]);
      // circular distance on the doubled angle makes θ and θ+π identical (unsigned orientation)
      const d = tf.sub(tf.expandDims(tf.mul(theta, 2), 2), tf.mul(binC, 2));
      const wts = tf.exp(tf.mul(tf.sub(tf.cos(d), 1), 4));
      const hist = tf.sum(tf.mul(wts, tf.expandDims(mag, 2)), 1); // [N, 16]
      const mirrored = tf.concat([tf.slice(hist, [0, 0], [n, 1]), tf.reverse(tf.slice(hist, [0, 1], [n, nb - 1]), 1)], 1);
      const orient = tf.slice(tf.add(hist, mirrored), [0, 0], [n, nb / 2 + 1]);

      const blocks: tf.Tensor2D[] = [
        standardise(flipInvariant(poolTo(y, 4)), w.luma4),
        standardise(flipInvariant(m1), w.luma8),
        standardise(flipInvariant(poolTo(y, 16)), w.luma16),
        standardise(flipInvariant(poolTo(gmag, 8)), w.gradient),
        standardise(flipInvariant(std), w.contrast),
        standardise(flipInvariant(poolTo(chroma, 4)), w.chroma),
        standardise(lumaHist, w.lumaHist),
        standardise(orient as tf.Tensor2D, w.orientHist),
      ];
      return l2NormalizeRows(tf.concat(blocks, 1) as tf.Tensor2D);
    });
  }
}
