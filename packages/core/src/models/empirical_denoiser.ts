/**
 * The closed-form optimal denoiser of a finite training set — a model that memorizes perfectly.
 *
 * For data distributed uniformly on training images {x⁽ⁱ⁾}, the MMSE estimate of x0 from
 * x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε is a softmax-weighted mean of the training images,
 * `E[x0 | x_t] = Σ_i w_i x⁽ⁱ⁾`, `w = softmax_i(−‖x_t − √ᾱ_t x⁽ⁱ⁾‖² / (2(1−ᾱ_t)))`, and the
 * optimal ε-prediction is `(x_t − √ᾱ_t·E[x0|x_t]) / √(1−ᾱ_t)`. Sampling with it reproduces
 * training images exactly, which makes it the reference "fully memorizing" model for testing
 * memorization metrics and mitigations with known answers (no training needed). Class-conditional
 * use restricts the sum to one class; the null class (`numClasses`) uses every image.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import type { ImageBatch } from '../tensor/types.js';
import { assertRank } from '../tensor/validate.js';
import type { Denoiser, DenoiserInfo } from './types.js';

/** Options of {@link EmpiricalDenoiser}. */
export interface EmpiricalDenoiserOptions {
  /** ᾱ_t for t = 0..T−1 (a scheduler's `alphasCumprod`). */
  alphasCumprod: Float32Array;
  /** Class of each training image, for class-conditional use. */
  labels?: Int32Array;
  /** Number of classes (labels in [0, numClasses); `numClasses` itself is the null class). */
  numClasses?: number;
}

/** The optimal ε-predictor of a finite training set (see module docs). Dispose when done. */
export class EmpiricalDenoiser implements Denoiser {
  readonly info: DenoiserInfo;
  private readonly flat: tf.Tensor2D; // [N, D]
  private readonly sqNorms: tf.Tensor1D; // [N]
  private readonly classMask: tf.Tensor2D | null; // [numClasses+1, N], 0 or -1e30
  private readonly alphas: Float32Array;

  constructor(trainImages: ImageBatch<'model'>, o: EmpiricalDenoiserOptions) {
    assertRank(trainImages, 4, 'training images');
    const [n, h, w, c] = trainImages.shape;
    if (h !== w) throw new ShapeError(`training images must be square, got ${h}x${w}`);
    this.alphas = o.alphasCumprod;
    const k = o.numClasses ?? null;
    if (o.labels && (k === null || o.labels.length !== n)) {
      throw new ConfigError(`labels need numClasses and one label per image (${o.labels.length} labels, ${n} images)`);
    }
    this.info = { sampleSize: h, inChannels: c, outChannels: c, numClassEmbeds: k === null ? null : k + 1 };
    this.flat = tf.tidy(() => tf.reshape(tf.clone(trainImages), [n, h * w * c]));
    this.sqNorms = tf.tidy(() => tf.sum(tf.square(this.flat), 1));
    if (o.labels && k !== null) {
      const m = new Float32Array((k + 1) * n);
      for (let cls = 0; cls < k; cls++) for (let i = 0; i < n; i++) m[cls * n + i] = o.labels[i] === cls ? 0 : -1e30;
      this.classMask = tf.tensor2d(m, [k + 1, n]);
    } else {
      this.classMask = null;
    }
  }

  /** ε̂(x_t, t[, y]); differentiable in `sample`. */
  predict(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, classLabels?: tf.Tensor1D): tf.Tensor4D {
    return tf.tidy(() => {
      const [b, h, w, c] = sample.shape;
      const T = this.alphas.length;
      let abar: tf.Tensor2D;
      if (typeof timestep === 'number') {
        if (!(Number.isInteger(timestep) && timestep >= 0 && timestep < T)) throw new ConfigError(`timestep ${timestep} outside [0, ${T})`);
        abar = tf.fill([b, 1], this.alphas[timestep] as number) as tf.Tensor2D;
      } else {
        const ts = Array.from(timestep.dataSync());
        abar = tf.tensor2d(Float32Array.from(ts, (t) => this.alphas[t] as number), [b, 1]);
      }
      const x = tf.reshape(sample, [b, h * w * c]) as tf.Tensor2D;
      const sa = tf.sqrt(abar);
      const var_ = tf.sub(1, abar);
      // ‖x − √ᾱ y‖² = ‖x‖² − 2√ᾱ x·y + ᾱ‖y‖²
      const d2 = tf.add(
        tf.sub(tf.sum(tf.square(x), 1, true), tf.mul(tf.mul(2, sa), tf.matMul(x, this.flat, false, true))),
        tf.mul(abar, tf.reshape(this.sqNorms, [1, -1])),
      );
      let logits = tf.div(tf.neg(d2), tf.mul(2, var_));
      if (this.classMask && classLabels) logits = tf.add(logits, tf.gather(this.classMask, classLabels));
      const wts = tf.softmax(logits);
      const x0 = tf.matMul(wts, this.flat);
      const eps = tf.div(tf.sub(x, tf.mul(sa, x0)), tf.sqrt(var_));
      return tf.reshape(eps, [b, h, w, c]) as tf.Tensor4D;
    });
  }

  dispose(): void {
    tf.dispose([this.flat, this.sqNorms]);
    this.classMask?.dispose();
  }
}
