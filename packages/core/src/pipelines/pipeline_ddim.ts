/**
 * Unconditional / class-conditional image sampling with DDIM (Song et al. 2021), the counterpart
 * of diffusers' `DDIMPipeline`, with optional classifier-free guidance.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import type { Denoiser } from '../models/types.js';
import type { RandomSource } from '../random.js';
import { DDIMScheduler } from '../schedulers/scheduling_ddim.js';
import type { ImageBatch } from '../tensor/types.js';
import { asImageBatch } from '../tensor/validate.js';
import {
  optionalGenerator,
  prepareConditioning,
  prepareLatents,
  runDenoisingLoop,
  type ClassConditioningOptions,
  type StepCallback,
} from './pipeline_utils.js';

/** Options of {@link DDIMPipeline.generate}. */
export interface DDIMPipelineOptions extends ClassConditioningOptions {
  /** Number of images (default 1, or the batch of `latents`). */
  batchSize?: number;
  /** n, the number of DDIM steps (default 50, as diffusers). */
  numInferenceSteps?: number;
  /** η (default 0: deterministic given x_T). */
  eta?: number;
  /** diffusers' `use_clipped_model_output` (default false). */
  useClippedModelOutput?: boolean;
  /**
   * Seed or Generator for x_T and, when η > 0, the per-step noise. Required unless `latents` are
   * given and η = 0.
   */
  generator?: RandomSource;
  /** x_T to start from ([N,H,W,C], not disposed) instead of drawing it. */
  latents?: tf.Tensor4D;
  /** Called after every step with (step, t, x_t, x_{t−r}, x̂0). */
  callback?: StepCallback;
  /** Throw NonFiniteError as soon as a model output or sample holds NaN/Inf (default true). */
  checkFinite?: boolean;
}

/**
 * DDIM sampling pipeline: x_T ~ N(0, I), then `scheduler.step(ε_θ(x_t, t[, y]), t, x_t)` over the
 * scheduler's grid. `generate` sets the scheduler's timesteps (as diffusers does) and returns the
 * final x_0 clamped to model range [−1, 1].
 */
export class DDIMPipeline {
  /**
   * @param unet the denoiser ε_θ (any {@link Denoiser})
   * @param scheduler a DDIMScheduler (build one from a DDPM config with `DDIMScheduler.fromConfig`)
   */
  constructor(
    readonly unet: Denoiser,
    readonly scheduler: DDIMScheduler = new DDIMScheduler(),
  ) {
    if (!(scheduler instanceof DDIMScheduler)) {
      throw new ConfigError('DDIMPipeline needs a DDIMScheduler (convert a config with DDIMScheduler.fromConfig)');
    }
  }

  /** Samples a batch; every random draw comes from `options.generator`. */
  async generate(options: DDIMPipelineOptions = {}): Promise<ImageBatch<'model'>> {
    const eta = options.eta ?? 0;
    const generator = optionalGenerator(options.generator);
    if (eta > 0 && generator === null) throw new ConfigError('eta > 0 adds noise at every step: pass a generator');
    this.scheduler.setTimesteps(options.numInferenceSteps ?? 50);
    const latents = prepareLatents(this.unet, options.batchSize, options.latents, generator);
    try {
      const conditioning = prepareConditioning(this.unet, latents.shape[0], options);
      const stepOptions = {
        eta,
        useClippedModelOutput: options.useClippedModelOutput ?? false,
        ...(eta > 0 && generator ? { generator } : {}),
      };
      const x0 = await runDenoisingLoop({
        label: 'DDIM sampling',
        denoiser: this.unet,
        timesteps: this.scheduler.timesteps,
        initial: latents,
        conditioning,
        step: (m, t, x) => this.scheduler.step(m, t, x, stepOptions),
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
