/**
 * A closed-form denoiser for Gaussian data: a test oracle for samplers and DDIM inversion (no
 * training, no weights). For x_t = √ᾱ·x0 + √(1−ᾱ)·ε the optimal ε-predictor is
 * E[ε | x_t] = (x_t − √ᾱ·E[x0 | x_t])/√(1−ᾱ) (Tweedie's formula; Efron 2011). The finite-training-set
 * counterpart (the perfectly memorizing model) is `EmpiricalDenoiser` in `models/`.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, ValueRangeError } from '../errors.js';
import type { Denoiser, DenoiserInfo } from '../models/types.js';

function timestepAlphas(alphasCumprod: Float32Array, timestep: number | tf.Tensor1D, batch: number): number[] {
  const ts = typeof timestep === 'number' ? new Array<number>(batch).fill(timestep) : Array.from(timestep.dataSync());
  if (ts.length !== batch) throw new ShapeError(`got ${ts.length} timesteps for a batch of ${batch}`);
  return ts.map((t) => {
    const a = alphasCumprod[t];
    if (!Number.isInteger(t) || a === undefined) {
      throw new ValueRangeError(`timestep ${t} is not an integer in [0, ${alphasCumprod.length})`, { timestep: t });
    }
    return a;
  });
}

function checkSample(sample: tf.Tensor4D, info: DenoiserInfo): void {
  if (sample.rank !== 4 || sample.shape[1] !== info.sampleSize || sample.shape[2] !== info.sampleSize || sample.shape[3] !== info.inChannels) {
    throw new ShapeError(
      `sample [${sample.shape.join(',')}] must be [N,${info.sampleSize},${info.sampleSize},${info.inChannels}]`,
    );
  }
}

/** Options of {@link GaussianDenoiser}. */
export interface GaussianDenoiserOptions {
  /** ᾱ table of the noise schedule (e.g. `scheduler.alphasCumprod`). */
  alphasCumprod: Float32Array;
  sampleSize: number;
  channels: number;
  /** μ of x0 ~ N(μ, s²I): one number for every pixel (default 0). */
  mean?: number;
  /** s > 0 (default 1). */
  std?: number;
}

/**
 * The exact ε-predictor for Gaussian data x0 ~ N(μ, s²I):
 * `ε*(x_t, t) = √(1−ᾱ)·(x_t − √ᾱ·μ)/(ᾱs² + 1 − ᾱ)`. Linear in x_t, so the DDIM ODE and its
 * inversion can be checked in closed form.
 */
export class GaussianDenoiser implements Denoiser {
  readonly info: DenoiserInfo;
  private readonly alphasCumprod: Float32Array;
  private readonly mean: number;
  private readonly variance: number;

  constructor(options: GaussianDenoiserOptions) {
    const std = options.std ?? 1;
    if (!(std > 0)) throw new ConfigError(`std must be > 0, got ${std}`);
    this.alphasCumprod = options.alphasCumprod;
    this.mean = options.mean ?? 0;
    this.variance = std * std;
    this.info = { sampleSize: options.sampleSize, inChannels: options.channels, outChannels: options.channels, numClassEmbeds: null };
  }

  /** ε*(x_t, t) (labels are not accepted: the model is unconditional). */
  predict(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, classLabels?: tf.Tensor1D): tf.Tensor4D {
    if (classLabels !== undefined) throw new ConfigError('GaussianDenoiser is unconditional');
    checkSample(sample, this.info);
    const alphas = timestepAlphas(this.alphasCumprod, timestep, sample.shape[0]);
    return tf.tidy(() => {
      const coef = (fn: (a: number) => number): tf.Tensor =>
        tf.tensor4d(Float32Array.from(alphas.map(fn)), [alphas.length, 1, 1, 1]);
      const scale = coef((a) => Math.sqrt(1 - a) / (a * this.variance + 1 - a));
      const shift = coef((a) => Math.sqrt(a) * this.mean);
      return tf.mul(scale, tf.sub(sample, shift)) as tf.Tensor4D;
    });
  }
}
