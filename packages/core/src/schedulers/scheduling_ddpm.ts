/**
 * DDPM ancestral sampling (Ho, Jain & Abbeel 2020), a port of diffusers' `DDPMScheduler` with its
 * exact numerics, including strided inference grids, custom timesteps and learned variances
 * (Nichol & Dhariwal 2021).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, ValueRangeError } from '../errors.js';
import { randnLike, type Generator } from '../random.js';
import { BETA_SCHEDULES } from './schedule.js';
import {
  COMMON_SCHEDULER_DEFAULTS,
  SchedulerBase,
  THRESHOLDING_DEFAULTS,
  checkStepInputs,
  checkTimestep,
  parseSchedulerJson,
  predictX0,
  processPredOriginalSample,
  resolveSchedulerConfig,
  type CommonSchedulerConfig,
  type SchedulerJson,
  type SchedulerStepOutput,
  type ThresholdingConfig,
  type TimestepSpacing,
} from './scheduling_utils.js';

const f32 = Math.fround;

/**
 * How the reverse-process variance is chosen (`variance_type`):
 * - `fixed_small`: β̃_t = (1−ᾱ_prev)/(1−ᾱ_t)·β'_t (posterior variance, Ho et al. eq. 7), clamped ≥ 1e-20
 * - `fixed_small_log`: the same, computed through its log (rl-diffuser)
 * - `fixed_large`: β'_t (Ho et al. §3.2, σ² = β)
 * - `fixed_large_log`: β'_t through its log (GLIDE)
 * - `learned`: the model's extra channels are the variance itself
 * - `learned_range`: the extra channels v ∈ [−1, 1] interpolate log σ² = (v+1)/2·log β' + (1−v)/2·log β̃
 *   (Nichol & Dhariwal 2021 eq. 15)
 *
 * where β'_t = 1 − ᾱ_t/ᾱ_prev is the effective β of a (possibly strided) step.
 */
export type VarianceType =
  | 'fixed_small'
  | 'fixed_small_log'
  | 'fixed_large'
  | 'fixed_large_log'
  | 'learned'
  | 'learned_range';

/** `DDPMScheduler` configuration (camel-case diffusers kwargs). */
export interface DDPMSchedulerConfig extends CommonSchedulerConfig, ThresholdingConfig {
  /** `variance_type`, default `'fixed_small'`. */
  varianceType: VarianceType;
}

/** Constructor options: any subset of {@link DDPMSchedulerConfig}. */
export type DDPMSchedulerOptions = Partial<DDPMSchedulerConfig>;

/** diffusers' `DDPMScheduler.__init__` defaults. */
export const DDPM_DEFAULTS: Readonly<DDPMSchedulerConfig> = Object.freeze({
  ...COMMON_SCHEDULER_DEFAULTS,
  ...THRESHOLDING_DEFAULTS,
  varianceType: 'fixed_small',
});

const DDPM_SPACINGS: readonly TimestepSpacing[] = ['leading', 'trailing', 'linspace'];

/** Options of {@link DDPMScheduler.step}. */
export interface DDPMStepOptions {
  /** Source of z for t > 0 (exclusive with `varianceNoise`). */
  generator?: Generator;
  /**
   * z itself for t > 0, same shape as the sample (not disposed). A diffmem extension: diffusers'
   * DDPM step only takes a generator.
   */
  varianceNoise?: tf.Tensor;
}

/**
 * DDPM reverse step (Ho et al. 2020, eqs. 6–7 and Algorithm 2):
 * `x_{t'} = (√ᾱ_{t'}·β'_t/(1−ᾱ_t))·x̂0 + (√α'_t·(1−ᾱ_{t'})/(1−ᾱ_t))·x_t + σ_t·z`, where t' is the
 * previous grid timestep, α'_t = ᾱ_t/ᾱ_{t'}, β'_t = 1 − α'_t and z is added only for t > 0.
 */
export class DDPMScheduler extends SchedulerBase<DDPMSchedulerConfig> {
  readonly className = 'DDPMScheduler' as const;
  /** True after `setTimesteps({timesteps})`. */
  customTimesteps = false;

  /** Validates `options` over diffusers' defaults; throws {@link ConfigError} on bad values. */
  constructor(options: DDPMSchedulerOptions = {}) {
    const config = resolveSchedulerConfig('DDPMScheduler', { ...DDPM_DEFAULTS }, options, {
      betaSchedules: BETA_SCHEDULES,
      timestepSpacings: DDPM_SPACINGS,
    });
    super(config, 'descending');
  }

  /**
   * From a diffusers `scheduler_config.json` (object or text), e.g. google/ddpm-cifar10-32's.
   * Unknown keys and bad values throw {@link ConfigError}.
   */
  static fromConfig(json: SchedulerJson | string): DDPMScheduler {
    const parsed = parseSchedulerJson<DDPMSchedulerConfig>('DDPMScheduler', json, Object.keys(DDPM_DEFAULTS) as (keyof DDPMSchedulerConfig)[]);
    return new DDPMScheduler(parsed.options);
  }

  /**
   * Sets the descending grid: `setTimesteps(n)` uses `timestep_spacing` (table in `ddimTimesteps`);
   * `setTimesteps({timesteps})` takes a custom strictly descending list starting below T.
   */
  setTimesteps(arg: number | { timesteps: readonly number[] }): readonly number[] {
    const T = this.config.numTrainTimesteps;
    if (typeof arg === 'number') {
      const timesteps = this.setSpacedTimesteps(arg);
      this.customTimesteps = false;
      return timesteps;
    }
    if (arg === null || typeof arg !== 'object' || !Array.isArray(arg.timesteps) || arg.timesteps.length === 0) {
      throw new ConfigError('setTimesteps takes a number of steps or {timesteps: [descending integers]}');
    }
    const ts = arg.timesteps;
    ts.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0) {
        throw new ConfigError(`custom timesteps[${i}] = ${t} is not a non-negative integer`, { index: i, value: t });
      }
      if (i > 0 && t >= (ts[i - 1] as number)) {
        throw new ConfigError('custom timesteps must be in strictly descending order', { timesteps: [...ts] });
      }
    });
    if ((ts[0] as number) >= T) {
      throw new ConfigError(`custom timesteps must start below num_train_timesteps (${T}), got ${ts[0]}`, {
        timesteps: [...ts],
      });
    }
    this.timesteps = [...ts];
    this.customTimesteps = true;
    this.numInferenceSteps = ts.length;
    return this.timesteps;
  }

  /**
   * diffusers' `previous_timestep`: the next entry of the grid (−1 after the last) once
   * `setTimesteps` was called, else t − 1 (the full chain).
   */
  previousTimestep(timestep: number): number {
    if (this.customTimesteps || this.numInferenceSteps !== null) {
      const index = this.timesteps.indexOf(timestep);
      if (index < 0) {
        throw new ValueRangeError(`timestep ${timestep} is not in the scheduler's timesteps`, { timestep });
      }
      return index === this.timesteps.length - 1 ? -1 : (this.timesteps[index + 1] as number);
    }
    return timestep - 1;
  }

  private stepAlphas(t: number): { a: number; aPrev: number; alphaT: number; betaT: number } {
    const prevT = this.previousTimestep(t);
    const a = this.alphaProd(t);
    const aPrev = prevT >= 0 ? this.alphaProd(prevT) : 1;
    const alphaT = f32(a / aPrev);
    return { a, aPrev, alphaT, betaT: f32(1 - alphaT) };
  }

  /**
   * diffusers' `_get_variance(t)` for the fixed variance types: `fixed_small` → β̃ (clamped ≥ 1e-20),
   * `fixed_small_log` → exp(½·log β̃) (a standard deviation, as diffusers returns), `fixed_large`
   * → β', `fixed_large_log` → log β'. Learned types need the model output (handled in `step`).
   */
  getVariance(timestep: number, varianceType: VarianceType = this.config.varianceType): number {
    checkTimestep(timestep, this.config.numTrainTimesteps);
    const { a, aPrev, betaT } = this.stepAlphas(timestep);
    const small = Math.max(f32(f32(f32(1 - aPrev) / f32(1 - a)) * betaT), 1e-20);
    switch (varianceType) {
      case 'fixed_small':
        return small;
      case 'fixed_small_log':
        return f32(Math.exp(0.5 * f32(Math.log(small))));
      case 'fixed_large':
        return betaT;
      case 'fixed_large_log':
        return f32(Math.log(betaT));
      default:
        throw new ConfigError(`getVariance(t) has no value for variance_type "${varianceType}" without a model output`);
    }
  }

  /**
   * One ancestral step from `timestep` to `previousTimestep(timestep)` (diffusers'
   * `DDPMScheduler.step`). For `learned`/`learned_range`, `modelOutput` carries 2C channels (the
   * last axis is split into prediction and variance). Noise is drawn only for t > 0, from
   * `generator` or `varianceNoise`. Returns new tensors; disposes nothing of the caller's.
   *
   * Deviation: for `fixed_large_log` diffusers multiplies the noise by (log β')^½ = NaN; we use
   * exp(½·log β') = √β', the GLIDE intent.
   */
  step<T extends tf.Tensor>(
    modelOutput: T,
    timestep: number,
    sample: T,
    options: DDPMStepOptions = {},
  ): SchedulerStepOutput<T> {
    const c = this.config;
    const learned = c.varianceType === 'learned' || c.varianceType === 'learned_range';
    checkStepInputs(modelOutput, sample, learned);
    checkTimestep(timestep, c.numTrainTimesteps);
    const split = learned && modelOutput.shape[modelOutput.rank - 1] !== sample.shape[sample.rank - 1];
    if (learned && !split) {
      throw new ShapeError(
        `variance_type "${c.varianceType}" needs a model output with twice the sample's channels, got [${modelOutput.shape.join(',')}]`,
      );
    }
    const addNoise = timestep > 0;
    if (addNoise) {
      if (options.generator && options.varianceNoise) {
        throw new ConfigError('pass either generator or varianceNoise to DDPMScheduler.step, not both');
      }
      if (!options.generator && !options.varianceNoise) {
        throw new ConfigError(`DDPM step at t=${timestep} adds noise: pass a generator (or varianceNoise)`);
      }
      const z = options.varianceNoise;
      if (z && z.shape.join(',') !== sample.shape.join(',')) {
        throw new ShapeError(`varianceNoise [${z.shape.join(',')}] must have the sample's shape [${sample.shape.join(',')}]`);
      }
    }
    const { a, aPrev, alphaT, betaT } = this.stepAlphas(timestep);
    const b = f32(1 - a);
    const bPrev = f32(1 - aPrev);

    return tf.tidy(() => {
      let output: tf.Tensor = modelOutput;
      let predictedVariance: tf.Tensor | null = null;
      if (split) {
        const channels = sample.shape[sample.rank - 1] as number;
        [output, predictedVariance] = tf.split(modelOutput, [channels, channels], modelOutput.rank - 1) as [
          tf.Tensor,
          tf.Tensor,
        ];
      }
      // 2–3. predicted x0, then clip/threshold.
      const x0 = processPredOriginalSample(predictX0(output as T, sample, a, c.predictionType), c);
      // 4–5. posterior mean (Ho et al. eq. 7).
      const x0Coef = f32(f32(f32(Math.sqrt(aPrev)) * betaT) / b);
      const xtCoef = f32(f32(f32(Math.sqrt(alphaT)) * bPrev) / b);
      let prev = tf.add(tf.mul(x0Coef, x0), tf.mul(xtCoef, sample));
      // 6. noise for t > 0.
      if (addNoise) {
        const z = options.varianceNoise ?? randnLike(sample.shape, options.generator as Generator);
        let std: number | tf.Tensor;
        switch (c.varianceType) {
          case 'fixed_small':
          case 'fixed_large':
            std = f32(Math.sqrt(this.getVariance(timestep)));
            break;
          case 'fixed_small_log':
            std = this.getVariance(timestep);
            break;
          case 'fixed_large_log':
            std = f32(Math.exp(0.5 * this.getVariance(timestep)));
            break;
          case 'learned':
            std = tf.sqrt(predictedVariance as tf.Tensor);
            break;
          case 'learned_range': {
            const minLog = f32(Math.log(this.getVariance(timestep, 'fixed_small')));
            const maxLog = f32(Math.log(betaT));
            const frac = tf.div(tf.add(predictedVariance as tf.Tensor, 1), 2);
            const logVar = tf.add(tf.mul(frac, maxLog), tf.mul(tf.sub(1, frac), minLog));
            std = tf.exp(tf.mul(0.5, logVar));
            break;
          }
        }
        prev = tf.add(prev, tf.mul(std, z));
      }
      return { prevSample: prev as T, predOriginalSample: x0 };
    });
  }
}
