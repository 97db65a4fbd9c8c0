/**
 * DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models"), a port of diffusers'
 * `DDIMScheduler` with its exact numerics.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { randnLike, type Generator } from '../random.js';
import type { BetaSchedule } from './schedule.js';
import {
  COMMON_SCHEDULER_DEFAULTS,
  SchedulerBase,
  THRESHOLDING_DEFAULTS,
  checkStepInputs,
  checkTimestep,
  epsFromX0,
  parseSchedulerJson,
  predictX0AndEps,
  processPredOriginalSample,
  resolveSchedulerConfig,
  type CommonSchedulerConfig,
  type SchedulerJson,
  type SchedulerStepOutput,
  type ThresholdingConfig,
  type TimestepSpacing,
} from './scheduling_utils.js';

const f32 = Math.fround;

/** `DDIMScheduler` configuration (camel-case diffusers kwargs). */
export interface DDIMSchedulerConfig extends CommonSchedulerConfig, ThresholdingConfig {
  /**
   * `set_alpha_to_one`: ᾱ used after the last step (t_prev < 0) is 1 (true, default) or ᾱ_0.
   */
  setAlphaToOne: boolean;
}

/** Constructor options: any subset of {@link DDIMSchedulerConfig}. */
export type DDIMSchedulerOptions = Partial<DDIMSchedulerConfig>;

/** diffusers' `DDIMScheduler.__init__` defaults. */
export const DDIM_DEFAULTS: Readonly<DDIMSchedulerConfig> = Object.freeze({
  ...COMMON_SCHEDULER_DEFAULTS,
  ...THRESHOLDING_DEFAULTS,
  setAlphaToOne: true,
});

const DDIM_SCHEDULES: readonly BetaSchedule[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];
const DDIM_SPACINGS: readonly TimestepSpacing[] = ['leading', 'trailing', 'linspace'];

/** Options of {@link DDIMScheduler.step}. */
export interface DDIMStepOptions {
  /** η: 0 = deterministic DDIM, 1 = DDPM-like ancestral noise (Song et al. 2021 eq. 16). Default 0. */
  eta?: number;
  /** Recompute ε̂ from the clipped x̂0 (diffusers' `use_clipped_model_output`). Default false. */
  useClippedModelOutput?: boolean;
  /** Source of z when η > 0 (exclusive with `varianceNoise`). */
  generator?: Generator;
  /** z itself when η > 0 (e.g. CycleDiffusion); same shape as the sample. Not disposed. */
  varianceNoise?: tf.Tensor;
}

/**
 * DDIM sampler (Song et al. 2021, eq. 12):
 * `x_{t−r} = √ᾱ_{t−r}·x̂0 + √(1 − ᾱ_{t−r} − σ_t²)·ε̂ + σ_t·z`, `σ_t = η·√Var(t, t−r)` (eq. 16),
 * with `r = T // n` for every spacing (as in diffusers).
 */
export class DDIMScheduler extends SchedulerBase<DDIMSchedulerConfig> {
  readonly className = 'DDIMScheduler' as const;
  /** ᾱ used when t_prev < 0: 1 if `setAlphaToOne`, else ᾱ_0. */
  readonly finalAlphaCumprod: number;

  /** Validates `options` over diffusers' defaults; throws {@link ConfigError} on bad values. */
  constructor(options: DDIMSchedulerOptions = {}) {
    const config = resolveSchedulerConfig('DDIMScheduler', { ...DDIM_DEFAULTS }, options, {
      betaSchedules: DDIM_SCHEDULES,
      timestepSpacings: DDIM_SPACINGS,
    });
    super(config, 'descending');
    this.finalAlphaCumprod = config.setAlphaToOne ? 1 : (this.alphasCumprod[0] as number);
  }

  /**
   * Builds a DDIMScheduler from a diffusers `scheduler_config.json` (object or text). Configs of
   * compatible schedulers (e.g. google/ddpm-cifar10-32's DDPMScheduler) load too; their extra keys
   * are ignored as diffusers does. Unknown keys and bad values throw {@link ConfigError}.
   */
  static fromConfig(json: SchedulerJson | string): DDIMScheduler {
    const parsed = parseSchedulerJson<DDIMSchedulerConfig>('DDIMScheduler', json, Object.keys(DDIM_DEFAULTS) as (keyof DDIMSchedulerConfig)[]);
    return new DDIMScheduler(parsed.options);
  }

  /** Sets the descending timestep grid for n steps (see `ddimTimesteps` for the spacing table). */
  setTimesteps(numInferenceSteps: number): readonly number[] {
    return this.setSpacedTimesteps(numInferenceSteps);
  }

  /** The t_prev that `step(…, t)` moves to: `t − T // n` (regardless of spacing, as diffusers). */
  previousTimestep(timestep: number): number {
    return timestep - Math.floor(this.config.numTrainTimesteps / this.requireInferenceSteps());
  }

  /**
   * Var(t, t_prev) = (1 − ᾱ_prev)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_prev) (Song et al. 2021 eq. 16 with η = 1;
   * diffusers' `_get_variance`); ᾱ_prev = `finalAlphaCumprod` when t_prev < 0.
   */
  getVariance(timestep: number, prevTimestep: number): number {
    const a = this.alphaProd(timestep);
    const aPrev = prevTimestep >= 0 ? this.alphaProd(prevTimestep) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const bPrev = f32(1 - aPrev);
    return f32(f32(bPrev / b) * f32(1 - f32(a / aPrev)));
  }

  /**
   * One reverse step from `timestep` to `timestep − T//n` (diffusers' `DDIMScheduler.step`):
   * x̂0/ε̂ from the model output, clip or threshold x̂0, then DDIM eq. 12. Returns new tensors
   * `{prevSample, predOriginalSample}`; disposes nothing of the caller's. Tidy-safe and
   * differentiable in `modelOutput`/`sample` (with thresholding off).
   */
  step<T extends tf.Tensor>(
    modelOutput: T,
    timestep: number,
    sample: T,
    options: DDIMStepOptions = {},
  ): SchedulerStepOutput<T> {
    const n = this.requireInferenceSteps();
    checkStepInputs(modelOutput, sample);
    checkTimestep(timestep, this.config.numTrainTimesteps);
    const eta = options.eta ?? 0;
    if (!(eta >= 0) || !Number.isFinite(eta)) throw new ConfigError(`eta must be a finite number ≥ 0, got ${eta}`);
    if (eta > 0) {
      if (options.generator && options.varianceNoise) {
        throw new ConfigError('pass either generator or varianceNoise to DDIMScheduler.step, not both');
      }
      if (!options.generator && !options.varianceNoise) {
        throw new ConfigError('eta > 0 adds noise: pass a generator (or varianceNoise) to DDIMScheduler.step');
      }
      const z = options.varianceNoise;
      if (z && z.shape.join(',') !== sample.shape.join(',')) {
        throw new ShapeError(`varianceNoise [${z.shape.join(',')}] must have the sample's shape [${sample.shape.join(',')}]`);
      }
    }
    const c = this.config;
    const prevTimestep = timestep - Math.floor(c.numTrainTimesteps / n);
    const a = this.alphaProd(timestep);
    const aPrev = prevTimestep >= 0 ? this.alphaProd(prevTimestep) : this.finalAlphaCumprod;

    return tf.tidy(() => {
      // 1–3. predicted x0 and eps, then clip/threshold x0.
      const pred = predictX0AndEps(modelOutput, sample, a, c.predictionType);
      const x0 = processPredOriginalSample(pred.x0, c);
      // 4–5. sigma_t = eta * sqrt(Var(t, t_prev)).
      const variance = this.getVariance(timestep, prevTimestep);
      const std = f32(eta * f32(Math.sqrt(variance)));
      const eps = options.useClippedModelOutput ? epsFromX0(x0, sample, a) : pred.eps;
      // 6–7. direction pointing to x_t and the DDIM update.
      const dirCoef = f32(Math.sqrt(f32(f32(1 - aPrev) - f32(std * std))));
      const direction = tf.mul(dirCoef, eps);
      let prev = tf.add(tf.mul(f32(Math.sqrt(aPrev)), x0), direction);
      if (eta > 0) {
        const z = options.varianceNoise ?? randnLike(sample.shape, options.generator as Generator);
        prev = tf.add(prev, tf.mul(std, z));
      }
      return { prevSample: prev as T, predOriginalSample: x0 };
    });
  }
}
