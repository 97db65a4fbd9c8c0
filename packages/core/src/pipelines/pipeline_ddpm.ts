/**
 * Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), the counterpart of diffusers'
 * `DDPMPipeline`, with optional class conditioning and classifier-free guidance.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import type { Denoiser } from '../models/types.js';
import { toGenerator, type RandomSource } from '../random.js';
import { DDPMScheduler } from '../schedulers/scheduling_ddpm.js';
import type { ImageBatch } from '../tensor/types.js';
import { asImageBatch } from '../tensor/validate.js';
import {
  prepareConditioning,
  prepareLatents,
  runDenoisingLoop,
  type ClassConditioningOptions,
  type StepCallback,
} from './pipeline_utils.js';

/** Options of {@link DDPMPipeline.generate}. */
export interface DDPMPipelineOptions extends ClassConditioningOptions {
  /** Seed or Generator for x_T and every step's noise (required: DDPM is stochastic). */
  generator: RandomSource;
  /** Number of images (default 1, or the batch of `latents`). */
  batchSize?: number;
  /** Number of steps (default 1000 = the full chain, as diffusers); strided per `timestep_spacing`. */
  numInferenceSteps?: number;
  /** Custom descending timesteps instead of `numInferenceSteps`. */
  timesteps?: readonly number[];
  /** x_T to start from ([N,H,W,C], not disposed) instead of drawing it. */
  latents?: tf.Tensor4D;
  /** Called after every step with (step, t, x_t, x_{t'}, x̂0). */
  callback?: StepCallback;
  /** Throw NonFiniteError as soon as a model output or sample holds NaN/Inf (default true). */
  checkFinite?: boolean;
}

/**
 * DDPM sampling pipeline: x_T ~ N(0, I), then `scheduler.step(ε_θ(x_t, t[, y]), t, x_t, {generator})`.
 * `generate` sets the scheduler's timesteps and returns x_0 clamped to [−1, 1].
 */
export class DDPMPipeline {
  /**
   * @param unet the denoiser ε_θ (or its learned-variance variant with 2C output channels)
   * @param scheduler a DDPMScheduler (e.g. `DDPMScheduler.fromConfig(scheduler_config.json)`)
   */
  constructor(
    readonly unet: Denoiser,
    readonly scheduler: DDPMScheduler = new DDPMScheduler(),
  ) {
    if (!(scheduler instanceof DDPMScheduler)) throw new ConfigError('DDPMPipeline needs a DDPMScheduler');
  }

  /** Samples a batch; every random draw comes from `options.generator`. */
  async generate(options: DDPMPipelineOptions): Promise<ImageBatch<'model'>> {
    if (options?.generator === undefined) throw new ConfigError('DDPM sampling is stochastic: pass a generator (seed or Generator)');
    const generator = toGenerator(options.generator);
    if (options.timesteps !== undefined && options.numInferenceSteps !== undefined) {
      throw new ConfigError('pass either numInferenceSteps or timesteps, not both');
    }
    if (options.timesteps !== undefined) this.scheduler.setTimesteps({ timesteps: options.timesteps });
    else this.scheduler.setTimesteps(options.numInferenceSteps ?? 1000);
    const latents = prepareLatents(this.unet, options.batchSize, options.latents, generator);
    try {
      const conditioning = prepareConditioning(this.unet, latents.shape[0], options);
      const x0 = await runDenoisingLoop({
        label: 'DDPM sampling',
        denoiser: this.unet,
        timesteps: this.scheduler.timesteps,
        initial: latents,
        conditioning,
        step: (m, t, x) => this.scheduler.step(m, t, x, { generator }),
        callback: options.callback,
        checkFinite: options.checkFinite,
      });
      const images = tf.tidy(() => tf.clipByValue(x0, -1, 1));
      x0.dispose();
      return asImageBatch(images, 'model');
    } finally {
      latents.dispose();
    }
  }
}
