/**
 * DDIM inversion (Song et al. 2021 §4.3 / eq. 13 run backwards; Dhariwal & Nichol 2021 App. F),
 * a port of diffusers' `DDIMInverseScheduler` with its exact numerics and index convention.
 *
 * Index convention (the part that is easy to get wrong): the loop visits the ascending grid
 * t_1 < t_2 < … < t_n (`leading`: 0, r, 2r, …, (n−1)r plus `steps_offset`; r = T // n) and at
 * each t_k the pipeline evaluates the model at the **target** timestep t_k on the sample that is
 * still at the lower level t_k − r: `m = ε_θ(x_{t_k − r}, t_k)`, then `step(m, t_k, x)` moves
 * x to level t_k. The first step starts from the clean image at ᾱ = 1 (`set_alpha_to_one`).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BetaSchedule } from './schedule.js';
import type { DDIMScheduler } from './scheduling_ddim.js';
import {
  COMMON_SCHEDULER_DEFAULTS,
  SchedulerBase,
  checkStepInputs,
  checkTimestep,
  parseSchedulerJson,
  predictX0AndEps,
  processPredOriginalSample,
  resolveSchedulerConfig,
  type CommonSchedulerConfig,
  type SchedulerJson,
  type SchedulerStepOutput,
  type TimestepSpacing,
} from './scheduling_utils.js';

const f32 = Math.fround;

/** `DDIMInverseScheduler` configuration (no thresholding, no `linspace`, as in diffusers). */
export interface DDIMInverseSchedulerConfig extends CommonSchedulerConfig {
  /** `set_alpha_to_one`: ᾱ before the first step (t_cur < 0) is 1 (true, default) or ᾱ_0. */
  setAlphaToOne: boolean;
}

/** Constructor options: any subset of {@link DDIMInverseSchedulerConfig}. */
export type DDIMInverseSchedulerOptions = Partial<DDIMInverseSchedulerConfig>;

/** diffusers' `DDIMInverseScheduler.__init__` defaults. */
export const DDIM_INVERSE_DEFAULTS: Readonly<DDIMInverseSchedulerConfig> = Object.freeze({
  ...COMMON_SCHEDULER_DEFAULTS,
  setAlphaToOne: true,
});

const INVERSE_SCHEDULES: readonly BetaSchedule[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];
const INVERSE_SPACINGS: readonly TimestepSpacing[] = ['leading', 'trailing'];

/**
 * Deterministic DDIM run from x_0 towards noise: at grid point t with t_cur = min(t − T//n, T−1),
 * `x̂0 = f(x, m, ᾱ_{t_cur})` (clipped if `clipSample`), then
 * `x_t = √ᾱ_t·x̂0 + √(1 − ᾱ_t)·ε̂` (diffusers' `DDIMInverseScheduler.step`).
 */
export class DDIMInverseScheduler extends SchedulerBase<DDIMInverseSchedulerConfig> {
  readonly className = 'DDIMInverseScheduler' as const;
  /** ᾱ used when t_cur < 0 (the clean image): 1 if `setAlphaToOne`, else ᾱ_0. */
  readonly initialAlphaCumprod: number;

  /** Validates `options` over diffusers' defaults; throws `ConfigError` on bad values. */
  constructor(options: DDIMInverseSchedulerOptions = {}) {
    const config = resolveSchedulerConfig('DDIMInverseScheduler', { ...DDIM_INVERSE_DEFAULTS }, options, {
      betaSchedules: INVERSE_SCHEDULES,
      timestepSpacings: INVERSE_SPACINGS,
    });
    super(config, 'ascending');
    this.initialAlphaCumprod = config.setAlphaToOne ? 1 : (this.alphasCumprod[0] as number);
  }

  /**
   * From a diffusers `scheduler_config.json` (object or text); the deprecated `set_alpha_to_zero`
   * alias is honoured and keys of compatible schedulers are ignored, as in diffusers.
   */
  static fromConfig(json: SchedulerJson | string): DDIMInverseScheduler {
    const parsed = parseSchedulerJson<DDIMInverseSchedulerConfig>(
      'DDIMInverseScheduler',
      json,
      Object.keys(DDIM_INVERSE_DEFAULTS) as (keyof DDIMInverseSchedulerConfig)[],
    );
    return new DDIMInverseScheduler(parsed.options);
  }

  /**
   * The inverse matching a DDIMScheduler (same schedule, clipping, prediction type, spacing and
   * offset); thresholding has no inverse counterpart and is dropped, `linspace` is rejected.
   */
  static fromDDIM(scheduler: DDIMScheduler): DDIMInverseScheduler {
    const c = scheduler.config;
    return new DDIMInverseScheduler({
      numTrainTimesteps: c.numTrainTimesteps,
      betaStart: c.betaStart,
      betaEnd: c.betaEnd,
      betaSchedule: c.betaSchedule,
      trainedBetas: c.trainedBetas,
      clipSample: c.clipSample,
      clipSampleRange: c.clipSampleRange,
      setAlphaToOne: c.setAlphaToOne,
      stepsOffset: c.stepsOffset,
      predictionType: c.predictionType,
      timestepSpacing: c.timestepSpacing,
      rescaleBetasZeroSnr: c.rescaleBetasZeroSnr,
    });
  }

  /**
   * Sets the ascending grid: `leading` → `[0, r, …, (n−1)r] + steps_offset`; `trailing` → the DDIM
   * trailing grid reversed (…, T−1).
   */
  setTimesteps(numInferenceSteps: number): readonly number[] {
    return this.setSpacedTimesteps(numInferenceSteps);
  }

  /** The level the sample is at before `step(…, t)`: `min(t − T//n, T − 1)` (−r means clean). */
  currentTimestep(timestep: number): number {
    const T = this.config.numTrainTimesteps;
    return Math.min(timestep - Math.floor(T / this.requireInferenceSteps()), T - 1);
  }

  /**
   * One inversion step to level `timestep` (the target). `modelOutput` must be the model evaluated
   * at `timestep` on `sample`, the sample at the lower level. Returns new tensors
   * `{prevSample: x_t, predOriginalSample}`; disposes nothing of the caller's.
   */
  step<T extends tf.Tensor>(modelOutput: T, timestep: number, sample: T): SchedulerStepOutput<T> {
    this.requireInferenceSteps();
    checkStepInputs(modelOutput, sample);
    checkTimestep(timestep, this.config.numTrainTimesteps);
    const c = this.config;
    const tCur = this.currentTimestep(timestep);
    const aCur = tCur >= 0 ? this.alphaProd(tCur) : this.initialAlphaCumprod;
    const aNext = this.alphaProd(timestep);
    return tf.tidy(() => {
      const pred = predictX0AndEps(modelOutput, sample, aCur, c.predictionType);
      const x0 = processPredOriginalSample(pred.x0, c);
      const direction = tf.mul(f32(Math.sqrt(f32(1 - aNext))), pred.eps);
      const next = tf.add(tf.mul(f32(Math.sqrt(aNext)), x0), direction);
      return { prevSample: next as T, predOriginalSample: x0 };
    });
  }
}
