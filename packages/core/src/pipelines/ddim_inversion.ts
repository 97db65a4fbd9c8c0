/**
 * DDIM inversion: run the deterministic DDIM ODE (Song et al. 2021 eq. 13) from images x_0 to
 * latents x_T with `DDIMInverseScheduler`, and regenerate images from latents with the matching
 * `DDIMScheduler` at η = 0. With an exact ε-predictor and small steps, regenerate(invert(x)) ≈ x;
 * the residual comes from evaluating ε at the target timestep on the lower-level sample (the
 * diffusers convention, see `scheduling_ddim_inverse.ts`).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../models/types.js';
import { DDIMScheduler } from '../schedulers/scheduling_ddim.js';
import { DDIMInverseScheduler } from '../schedulers/scheduling_ddim_inverse.js';
import type { ImageBatch, Noise } from '../tensor/types.js';
import { asImageBatch, asNoise } from '../tensor/validate.js';
import {
  prepareConditioning,
  runDenoisingLoop,
  type ClassConditioningOptions,
  type Conditioning,
  type StepCallback,
} from './pipeline_utils.js';

/** Options shared by {@link invertDDIM} and {@link regenerateDDIM}. */
export interface DDIMInversionOptions extends ClassConditioningOptions {
  /**
   * The DDIMScheduler whose configuration defines both directions (default: diffusers' defaults).
   * It is not mutated: fresh DDIM / DDIM-inverse schedulers are built from its config.
   */
  scheduler?: DDIMScheduler;
  /** n (default 50). */
  numInferenceSteps?: number;
  /** Called after every step. */
  callback?: StepCallback;
  /** Throw NonFiniteError at the first NaN/Inf (default true). */
  checkFinite?: boolean;
}

/** Options of {@link invertDDIM}. */
export interface InvertDDIMOptions extends DDIMInversionOptions {
  /** Also return every intermediate latent (default false). */
  returnTrajectory?: boolean;
}

/** The result of {@link invertDDIM}. The caller owns (and disposes) every tensor in it. */
export interface DDIMInversion {
  /** x_T at the last (highest) grid timestep, [N,H,W,C]. */
  readonly latents: Noise;
  /** The ascending grid the inversion visited (its last entry is the level of `latents`). */
  readonly timesteps: readonly number[];
  /**
   * With `returnTrajectory`: n+1 tensors, the input images followed by x at each grid timestep
   * (`trajectory[k+1]` is at `timesteps[k]`); else null.
   */
  readonly trajectory: readonly Noise[] | null;
  /**
   * Runs DDIM (η = 0) from `latents` (default: this inversion's) with the matching scheduler,
   * step count and conditioning; returns images in [−1, 1].
   */
  regenerate(latents?: tf.Tensor4D, options?: Pick<DDIMInversionOptions, 'callback' | 'checkFinite'>): Promise<ImageBatch<'model'>>;
}

function schedulerPair(options: DDIMInversionOptions): { ddim: DDIMScheduler; inverse: DDIMInverseScheduler } {
  const source = options.scheduler ?? new DDIMScheduler();
  return { ddim: new DDIMScheduler(source.config), inverse: DDIMInverseScheduler.fromDDIM(source) };
}

async function runRegeneration(
  denoiser: Denoiser,
  latents: tf.Tensor4D,
  ddim: DDIMScheduler,
  numInferenceSteps: number,
  conditioning: Conditioning,
  callback: StepCallback | undefined,
  checkFinite: boolean | undefined,
): Promise<ImageBatch<'model'>> {
  asNoise(latents, { name: 'latents' });
  ddim.setTimesteps(numInferenceSteps);
  const x0 = await runDenoisingLoop({
    label: 'DDIM regeneration',
    denoiser,
    timesteps: ddim.timesteps,
    initial: latents,
    conditioning,
    step: (m, t, x) => ddim.step(m, t, x, { eta: 0 }),
    callback,
    checkFinite,
  });
  const images = tf.tidy(() => tf.clipByValue(x0, -1, 1));
  x0.dispose();
  return asImageBatch(images, 'model');
}

/**
 * Inverts images (model range [−1, 1], NHWC) to DDIM latents: for t in the ascending grid,
 * `x ← inverse.step(ε̃_θ(x, t[, y]), t, x)` (model at the target timestep, as diffusers'
 * inversion pipelines do). Guidance, if any, is applied as in sampling. Returns the latents, the
 * grid, the optional trajectory and a `regenerate` closure. Inputs are not disposed.
 */
export async function invertDDIM(
  denoiser: Denoiser,
  images: ImageBatch<'model'>,
  options: InvertDDIMOptions = {},
): Promise<DDIMInversion> {
  asImageBatch(images, 'model', { name: 'images', level: 'full' });
  const numInferenceSteps = options.numInferenceSteps ?? 50;
  const { ddim, inverse } = schedulerPair(options);
  const timesteps = inverse.setTimesteps(numInferenceSteps);
  const conditioning = prepareConditioning(denoiser, images.shape[0], options);
  const trajectory: tf.Tensor4D[] | undefined = options.returnTrajectory ? [tf.clone(images)] : undefined;
  let latents: tf.Tensor4D;
  try {
    latents = await runDenoisingLoop({
      label: 'DDIM inversion',
      denoiser,
      timesteps,
      initial: images,
      conditioning,
      step: (m, t, x) => inverse.step(m, t, x),
      callback: options.callback,
      checkFinite: options.checkFinite,
      trajectory,
    });
  } catch (err) {
    if (trajectory) tf.dispose(trajectory);
    throw err;
  }
  return {
    latents: latents as Noise,
    timesteps: [...timesteps],
    trajectory: trajectory ? (trajectory as Noise[]) : null,
    regenerate: (from = latents, regenOptions = {}) =>
      runRegeneration(
        denoiser,
        from,
        new DDIMScheduler(ddim.config),
        numInferenceSteps,
        conditioning,
        regenOptions.callback,
        regenOptions.checkFinite ?? options.checkFinite,
      ),
  };
}

/**
 * Deterministic DDIM (η = 0) from given latents with the scheduler configuration of `options`
 * (the inverse of {@link invertDDIM} with the same options). Returns images in [−1, 1].
 */
export async function regenerateDDIM(
  denoiser: Denoiser,
  latents: tf.Tensor4D,
  options: DDIMInversionOptions = {},
): Promise<ImageBatch<'model'>> {
  const { ddim } = schedulerPair(options);
  const conditioning = prepareConditioning(denoiser, latents.shape[0], options);
  return runRegeneration(
    denoiser,
    latents,
    ddim,
    options.numInferenceSteps ?? 50,
    conditioning,
    options.callback,
    options.checkFinite,
  );
}
