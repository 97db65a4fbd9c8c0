/**
 * The DDPM training objective (Ho et al. 2020, Eq. 14; diffusers `train_unconditional.py`):
 * draw t ~ U{0..T−1} and ε ~ N(0, I), form x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, and regress the model
 * output on the target of its `prediction_type`: ε (epsilon), v = √ᾱ_t·ε − √(1−ᾱ_t)·x0
 * (v_prediction, Salimans & Ho 2022) or x0 (sample). Loss = mean squared error.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser, PredictionType } from '../models/types.js';

/** Inputs of one loss evaluation (all owned by the caller). */
export interface DiffusionLossInputs {
  /** Clean images in model space, [B,H,W,C]. */
  x0: tf.Tensor4D;
  /** Gaussian noise, same shape as x0. */
  noise: tf.Tensor4D;
  /** Integer timesteps, [B] int32. */
  timesteps: tf.Tensor1D;
  /** √ᾱ_t per sample, [B]. */
  sqrtAlphaBar: tf.Tensor1D;
  /** √(1−ᾱ_t) per sample, [B]. */
  sqrtOneMinusAlphaBar: tf.Tensor1D;
  /** Class labels, [B] int32 (class-conditional models). */
  labels?: tf.Tensor1D;
}

/** Mean squared error of the model's prediction against its `predictionType` target (a scalar). */
export function diffusionLoss(model: Denoiser, inp: DiffusionLossInputs, predictionType: PredictionType): tf.Scalar {
  return tf.tidy(() => {
    const a = tf.reshape(inp.sqrtAlphaBar, [-1, 1, 1, 1]);
    const s = tf.reshape(inp.sqrtOneMinusAlphaBar, [-1, 1, 1, 1]);
    const xt = tf.add(tf.mul(a, inp.x0), tf.mul(s, inp.noise)) as tf.Tensor4D;
    const out = model.predict(xt, inp.timesteps, inp.labels);
    const target =
      predictionType === 'epsilon'
        ? inp.noise
        : predictionType === 'v_prediction'
          ? tf.sub(tf.mul(a, inp.noise), tf.mul(s, inp.x0))
          : inp.x0;
    return tf.mean(tf.squaredDifference(out, target)) as tf.Scalar;
  });
}
