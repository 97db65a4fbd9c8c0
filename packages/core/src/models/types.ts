/**
 * The interface between denoising networks and everything that drives them (schedulers'
 * pipelines, trainers, guidance, InvMM, SolidMark). Any network that predicts from a noisy NHWC
 * sample at a timestep — our UNet2DModel, a user's own model — plugs in through it.
 * @module
 */
import type * as tf from '@tensorflow/tfjs-core';

/** What a model was trained to predict (diffusers' `prediction_type`). */
export type PredictionType = 'epsilon' | 'sample' | 'v_prediction';

/** Static facts about a denoiser that callers need to build inputs. */
export interface DenoiserInfo {
  /** Spatial size of the sample (square). */
  readonly sampleSize: number;
  readonly inChannels: number;
  readonly outChannels: number;
  /**
   * Rows of the class-embedding table for class-conditional models (diffusers'
   * `num_class_embeds`), `null` when unconditional. Models trained for classifier-free guidance
   * reserve one row as the "null" class (usually the last, `numClassEmbeds − 1`); callers always
   * pass that id explicitly (`nullClassId`).
   */
  readonly numClassEmbeds: number | null;
}

/**
 * A denoising network ε_θ(x_t, t[, y]).
 *
 * `predict` is synchronous and tidy-safe (call it inside `tf.tidy`); it does not dispose its
 * inputs and returns a new [N,H,W,outChannels] float32 tensor. `timestep` is one integer timestep
 * for the whole batch or a [N] tensor. `classLabels` ([N] int32) is required for class-conditional
 * models; for classifier-free guidance the "null" class is the extra embedding row the model was
 * trained with under class dropout (the trainer's `nullClassId`, usually `numClassEmbeds − 1`).
 */
export interface Denoiser {
  readonly info: DenoiserInfo;
  predict(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, classLabels?: tf.Tensor1D): tf.Tensor4D;
}
