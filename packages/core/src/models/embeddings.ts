/**
 * Timestep embeddings of UNet2DModel (`src/diffusers/models/embeddings.py`): the DDPM sinusoid
 * (`get_timestep_embedding` / `Timesteps`), Gaussian Fourier features (`GaussianFourierProjection`,
 * score-SDE models) and the time MLP (`TimestepEmbedding`).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { silu } from './activations.js';
import { Linear } from './layers.js';
import { joinName, type ParamRegistry, type ParamSource } from './modeling_utils.js';

/**
 * The sinusoid frequencies f_k = exp(−ln(max_period) · k / (half − shift)), k = 0…half−1,
 * evaluated step by step in float32 as torch does (so embeddings match to float32 round-off).
 */
export function sinusoidFrequencies(embeddingDim: number, downscaleFreqShift: number, maxPeriod = 10000): Float32Array {
  const half = Math.floor(embeddingDim / 2);
  const out = new Float32Array(half);
  const negLog = Math.fround(-Math.log(maxPeriod));
  const denom = Math.fround(half - downscaleFreqShift);
  for (let k = 0; k < half; k++) {
    const exponent = Math.fround(Math.fround(negLog * k) / denom);
    out[k] = Math.fround(Math.exp(exponent));
  }
  return out;
}

/**
 * `get_timestep_embedding` (Ho et al. 2020, DDPM, §B / Vaswani et al. positional encoding):
 * emb = [sin(s·t·f), cos(s·t·f)] (or [cos, sin] if `flipSinToCos`), zero-padded to an odd
 * `embeddingDim`. `timesteps` [N] may be fractional.
 */
export function getTimestepEmbedding(
  timesteps: tf.Tensor1D,
  embeddingDim: number,
  flipSinToCos = false,
  downscaleFreqShift = 1,
  scale = 1,
  maxPeriod = 10000,
): tf.Tensor2D {
  return tf.tidy(() => {
    const freqs = tf.tensor2d(sinusoidFrequencies(embeddingDim, downscaleFreqShift, maxPeriod), [1, Math.floor(embeddingDim / 2)]);
    let args = tf.mul(tf.reshape(tf.cast(timesteps, 'float32'), [-1, 1]), freqs);
    if (scale !== 1) args = tf.mul(args, scale);
    const sin = tf.sin(args);
    const cos = tf.cos(args);
    let emb = tf.concat(flipSinToCos ? [cos, sin] : [sin, cos], 1) as tf.Tensor2D;
    if (embeddingDim % 2 === 1) emb = tf.pad(emb, [[0, 0], [0, 1]]);
    return emb;
  });
}

/** `Timesteps(num_channels, flip_sin_to_cos, downscale_freq_shift)`: the parameter-free sinusoid. */
export class Timesteps {
  constructor(
    readonly numChannels: number,
    readonly flipSinToCos: boolean,
    readonly downscaleFreqShift: number,
    readonly scale = 1,
  ) {}

  forward(_p: ParamSource, timesteps: tf.Tensor1D): tf.Tensor2D {
    return getTimestepEmbedding(timesteps, this.numChannels, this.flipSinToCos, this.downscaleFreqShift, this.scale);
  }
}

/**
 * `GaussianFourierProjection(embedding_size, scale)` (Song et al. 2021, score SDE): fixed random
 * frequencies W ~ N(0, scale²) (state-dict key `weight`, not trained);
 * emb = [sin(2π·log(σ)·W), cos(2π·log(σ)·W)] (`log=True`, `flip_sin_to_cos=False` as UNet2DModel builds it).
 */
export class GaussianFourierProjection {
  readonly weight: string;

  constructor(
    reg: ParamRegistry,
    readonly prefix: string,
    readonly embeddingSize: number,
    readonly scale: number,
    readonly log = true,
    readonly flipSinToCos = false,
  ) {
    this.weight = reg.add({
      name: joinName(prefix, 'weight'),
      shape: [embeddingSize],
      layout: 'plain',
      init: { kind: 'normal', std: scale },
      trainable: false,
    });
  }

  forward(p: ParamSource, x: tf.Tensor1D): tf.Tensor2D {
    return tf.tidy(() => {
      let t = tf.cast(x, 'float32');
      if (this.log) t = tf.log(t);
      // Same association as torch: ((x · W) · 2) · π.
      const proj = tf.mul(tf.mul(tf.mul(tf.reshape(t, [-1, 1]), tf.reshape(p.get(this.weight), [1, -1])), 2), Math.PI);
      const sin = tf.sin(proj);
      const cos = tf.cos(proj);
      return tf.concat(this.flipSinToCos ? [cos, sin] : [sin, cos], 1) as tf.Tensor2D;
    });
  }
}

/** `TimestepEmbedding(in, time_embed_dim)`: linear_1 → SiLU → linear_2 (diffusers' default act). */
export class TimestepEmbedding {
  readonly linear1: Linear;
  readonly linear2: Linear;

  constructor(reg: ParamRegistry, readonly prefix: string, inChannels: number, timeEmbedDim: number) {
    this.linear1 = new Linear(reg, joinName(prefix, 'linear_1'), inChannels, timeEmbedDim);
    this.linear2 = new Linear(reg, joinName(prefix, 'linear_2'), timeEmbedDim, timeEmbedDim);
  }

  forward(p: ParamSource, sample: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.linear2.forward(p, silu(this.linear1.forward(p, sample))));
  }
}
