/**
 * The InvMM objective (A.3 of the reference document; `GaussianDiffusionInversionTrainer` in the
 * official `ddpm/diffusion.py`):
 *
 * ```
 * ε_b = μ + exp(logvar/2)·n_b,  n_b ~ N(0, I),  t_b ~ U{0, …, T−1}       (b = 1…B)
 * x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε_b
 * x̂0 = (x_t − √(1−ᾱ_t)·ε_θ(x_t, t)) / √ᾱ_t            (unclipped)
 * p_loss = mean_{b, pixels} (x̂0 − x0)²
 * r_loss = ½·mean(μ² + e^{logvar} − logvar − 1)         = KL(N(μ,σ²) ‖ N(0,I)) per dimension
 * loss = p_loss + λ·r_loss
 * ```
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '@diffmem/core';
import { conditionalModelOutput, type InvMMClassCondition, type InvMMScheduler } from './model.js';
import type { InvMMScoreReduction } from './presets.js';

/** ½·mean(μ² + e^{logvar} − logvar − 1): the normality term r_loss (differentiable). */
export function klToStandardNormal(mu: tf.Tensor, logvar: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mul(0.5, tf.mean(tf.sub(tf.sub(tf.add(tf.square(mu), tf.exp(logvar)), logvar), 1))) as tf.Scalar);
}

/**
 * The InvMM score of an inverted distribution: ½·Σ(μ² + σ² − log σ² − 1) reduced by the mean
 * over dimensions (default, the official code since commit 47c65ed) or the sum (before it).
 * Computed in float64 on the host.
 */
export function invmmScore(mu: Float32Array, logvar: Float32Array, reduction: InvMMScoreReduction = 'mean'): number {
  let s = 0;
  for (let i = 0; i < mu.length; i++) {
    const m = mu[i] as number;
    const lv = logvar[i] as number;
    s += m * m + Math.exp(lv) - lv - 1;
  }
  const total = 0.5 * s;
  return reduction === 'sum' ? total : total / mu.length;
}

/** x_T = μ + exp(logvar/2)·n (the reparameterisation; `n` is [B,…] standard normal). */
export function reparameterize(mu: tf.Tensor, logvar: tf.Tensor, n: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => tf.add(tf.mul(n, tf.exp(tf.div(logvar, 2))), mu) as tf.Tensor4D);
}

/**
 * Soft (Gumbel-softmax) class weights, `softmax((z + g)/τ)` with g = −log(−log u) per row:
 * `F.gumbel_softmax(log_coeffs, tau, hard=False)` of the official soft prompt.
 * `uniforms` is [B, K] in (0, 1); returns [B, K].
 */
export function gumbelSoftmax(logits: tf.Tensor1D, uniforms: tf.Tensor2D, tau: number): tf.Tensor2D {
  return tf.tidy(() => {
    const g = tf.neg(tf.log(tf.neg(tf.log(uniforms))));
    return tf.softmax(tf.div(tf.add(g, tf.reshape(logits, [1, -1])), tau)) as tf.Tensor2D;
  });
}

/**
 * p_loss: the mean squared error of the one-step x̂0 prediction from x_t = q(x_t | x0, ε) with
 * the learned noises `noise` [B,H,W,C] at per-sample `timesteps`. `x0` is [1,H,W,C] in model
 * space. Uses the scheduler's ᾱ_t and prediction type (ε, x0 or v); x̂0 is not clipped.
 * Differentiable in `noise` (and in soft class weights).
 */
export function reconstructionLoss(
  denoiser: Denoiser,
  scheduler: InvMMScheduler,
  x0: tf.Tensor4D,
  noise: tf.Tensor4D,
  timesteps: readonly number[],
  condition: InvMMClassCondition,
): tf.Scalar {
  return tf.tidy(() => {
    const b = noise.shape[0];
    const target = tf.tile(x0, [b, 1, 1, 1]) as tf.Tensor4D;
    const xt = scheduler.addNoise(target, noise, timesteps);
    const out = conditionalModelOutput(denoiser, xt, tf.tensor1d(timesteps as number[], 'int32'), condition);
    const { x0: x0Hat } = scheduler.predictX0AndEps(out, xt, timesteps);
    return tf.mean(tf.squaredDifference(x0Hat, target)) as tf.Scalar;
  });
}
