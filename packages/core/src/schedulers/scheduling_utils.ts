/**
 * What the DDPM-family schedulers share (diffusers' `SchedulerMixin`/`ConfigMixin` plus the
 * helpers every scheduler file repeats): configuration with diffusers' `scheduler_config.json`
 * as the interchange format, timestep spacings, prediction-type conversions, clipping and dynamic
 * thresholding, and the forward process `add_noise`/`get_velocity`.
 *
 * Scalar coefficients (√ᾱ_t, √(1−ᾱ_t), …) are computed with float32 rounding after every
 * operation, as torch does on 0-dim float32 tensors, and tensor arithmetic follows diffusers'
 * operation order, so results agree with diffusers to float32 round-off.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DTypeError, ShapeError, ValueRangeError } from '../errors.js';
import type { PredictionType } from '../models/types.js';
import { BETA_SCHEDULES, NoiseSchedule, type BetaSchedule } from './schedule.js';

const f32 = Math.fround;

/** The diffusers version whose scheduler semantics these files mirror (written by `toConfig`). */
export const DIFFUSERS_REFERENCE_VERSION = '0.40.0.dev0';

/** How `setTimesteps(n)` places n inference steps among T training steps (`timestep_spacing`). */
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';

/** Every {@link TimestepSpacing}. */
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['leading', 'trailing', 'linspace'];

/** Every {@link PredictionType}. */
export const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'sample', 'v_prediction'];

/** The scheduler classes this package implements (values of `_class_name`). */
export type SchedulerClassName = 'DDPMScheduler' | 'DDIMScheduler' | 'DDIMInverseScheduler';

/** A diffusers `scheduler_config.json` object (snake-case keys). */
export type SchedulerJson = Record<string, unknown>;

/** Configuration shared by DDPM, DDIM and DDIM-inverse (camel-case diffusers kwargs). */
export interface CommonSchedulerConfig {
  /** T (`num_train_timesteps`), default 1000. */
  numTrainTimesteps: number;
  /** `beta_start`, default 1e-4. */
  betaStart: number;
  /** `beta_end`, default 0.02. */
  betaEnd: number;
  /** `beta_schedule`, default `'linear'`. */
  betaSchedule: BetaSchedule;
  /** `trained_betas`: an explicit β table (length T) or null. */
  trainedBetas: readonly number[] | null;
  /** `clip_sample`: clamp x̂0 to ±`clipSampleRange` (default true). */
  clipSample: boolean;
  /** `clip_sample_range`, default 1. */
  clipSampleRange: number;
  /** `prediction_type`, default `'epsilon'`. */
  predictionType: PredictionType;
  /** `timestep_spacing`, default `'leading'`. */
  timestepSpacing: TimestepSpacing;
  /** `steps_offset`, added to `leading` timesteps (default 0). */
  stepsOffset: number;
  /** `rescale_betas_zero_snr`, default false. */
  rescaleBetasZeroSnr: boolean;
}

/** Dynamic thresholding (Saharia et al. 2022, Imagen §2.3) as configured in diffusers. */
export interface ThresholdingConfig {
  /** `thresholding`, default false (takes precedence over `clipSample`). */
  thresholding: boolean;
  /** `dynamic_thresholding_ratio`: the percentile of |x̂0| used as s (default 0.995). */
  dynamicThresholdingRatio: number;
  /** `sample_max_value`: upper clamp of s (default 1). */
  sampleMaxValue: number;
}

/**
 * The `__init__` defaults DDPMScheduler, DDIMScheduler and DDIMInverseScheduler share in diffusers
 * (each scheduler file adds its own keys).
 */
export const COMMON_SCHEDULER_DEFAULTS: Readonly<CommonSchedulerConfig> = Object.freeze({
  numTrainTimesteps: 1000,
  betaStart: 0.0001,
  betaEnd: 0.02,
  betaSchedule: 'linear',
  trainedBetas: null,
  clipSample: true,
  clipSampleRange: 1.0,
  predictionType: 'epsilon',
  timestepSpacing: 'leading',
  stepsOffset: 0,
  rescaleBetasZeroSnr: false,
});

/** diffusers' dynamic-thresholding defaults (off; ratio 0.995, s ≤ 1), shared by DDPM and DDIM. */
export const THRESHOLDING_DEFAULTS: Readonly<ThresholdingConfig> = Object.freeze({
  thresholding: false,
  dynamicThresholdingRatio: 0.995,
  sampleMaxValue: 1.0,
});

// ---------------------------------------------------------------------------------------------
// Configuration: validation, diffusers json <-> camel-case options.
// ---------------------------------------------------------------------------------------------

type Parser = (value: unknown, key: string) => unknown;

function bad(key: string, value: unknown, want: string, extra: Record<string, unknown> = {}): ConfigError {
  return new ConfigError(`scheduler config "${key}" must be ${want}, got ${JSON.stringify(value)}`, {
    key,
    value,
    ...extra,
  });
}

const positiveInt: Parser = (v, k) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw bad(k, v, 'a positive integer');
  return v;
};
const nonNegativeInt: Parser = (v, k) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(k, v, 'a non-negative integer');
  return v;
};
const unitBeta: Parser = (v, k) => {
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw bad(k, v, 'a number in [0, 1]');
  return v;
};
const positiveNumber: Parser = (v, k) => {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw bad(k, v, 'a positive finite number');
  return v;
};
const ratio: Parser = (v, k) => {
  if (typeof v !== 'number' || !(v > 0 && v <= 1)) throw bad(k, v, 'a number in (0, 1]');
  return v;
};
const bool: Parser = (v, k) => {
  if (typeof v !== 'boolean') throw bad(k, v, 'true or false');
  return v;
};
const oneOf =
  (allowed: readonly string[]): Parser =>
  (v, k) => {
    if (typeof v !== 'string' || !allowed.includes(v)) throw bad(k, v, `one of ${allowed.join(', ')}`, { allowed });
    return v;
  };
const betaTable: Parser = (v, k) => {
  if (v === null) return null;
  const arr = v instanceof Float32Array ? Array.from(v) : v;
  if (!Array.isArray(arr) || arr.length === 0) throw bad(k, '[…]', 'null or a non-empty array of numbers');
  arr.forEach((b, i) => {
    if (typeof b !== 'number' || !(b >= 0 && b <= 1)) {
      throw new ConfigError(`scheduler config "${k}"[${i}] must be a number in [0, 1], got ${JSON.stringify(b)}`, {
        key: k,
        index: i,
        value: b,
      });
    }
  });
  return arr as number[];
};

/** One configuration key: its diffusers name, our name, and its validator. */
interface KeySpec {
  readonly snake: string;
  readonly parse: Parser;
}

/** Every key of DDPMScheduler ∪ DDIMScheduler ∪ DDIMInverseScheduler. */
const KEY_SPECS: Readonly<Record<string, KeySpec>> = {
  numTrainTimesteps: { snake: 'num_train_timesteps', parse: positiveInt },
  betaStart: { snake: 'beta_start', parse: unitBeta },
  betaEnd: { snake: 'beta_end', parse: unitBeta },
  betaSchedule: { snake: 'beta_schedule', parse: oneOf(BETA_SCHEDULES) },
  trainedBetas: { snake: 'trained_betas', parse: betaTable },
  clipSample: { snake: 'clip_sample', parse: bool },
  clipSampleRange: { snake: 'clip_sample_range', parse: positiveNumber },
  predictionType: { snake: 'prediction_type', parse: oneOf(PREDICTION_TYPES) },
  timestepSpacing: { snake: 'timestep_spacing', parse: oneOf(TIMESTEP_SPACINGS) },
  stepsOffset: { snake: 'steps_offset', parse: nonNegativeInt },
  rescaleBetasZeroSnr: { snake: 'rescale_betas_zero_snr', parse: bool },
  thresholding: { snake: 'thresholding', parse: bool },
  dynamicThresholdingRatio: { snake: 'dynamic_thresholding_ratio', parse: ratio },
  sampleMaxValue: { snake: 'sample_max_value', parse: positiveNumber },
  setAlphaToOne: { snake: 'set_alpha_to_one', parse: bool },
  varianceType: {
    snake: 'variance_type',
    parse: oneOf(['fixed_small', 'fixed_small_log', 'fixed_large', 'fixed_large_log', 'learned', 'learned_range']),
  },
};

const SNAKE_TO_CAMEL: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(KEY_SPECS).map(([camel, spec]) => [spec.snake, camel]),
);

/** diffusers' bookkeeping entries of a saved config, never passed to `__init__`. */
export const DIFFUSERS_BOOKKEEPING_KEYS: readonly string[] = [
  '_class_name',
  '_diffusers_version',
  '_name_or_path',
  '_use_default_values',
  '_ignore_files',
];

/**
 * Keys of the other schedulers diffusers declares compatible with DDPM/DDIM (PNDM, Euler, DPM-Solver,
 * UniPC, DEIS, LMS, Heun, KDPM2, LCM, …) and legacy keys of old configs. diffusers' `from_config`
 * drops them when loading a config into another compatible class, and so do we (they are
 * reported in `ignoredKeys`). Anything else is an error, so a typo never silently falls back to a
 * default.
 */
export const COMPATIBLE_FOREIGN_KEYS: readonly string[] = [
  'skip_prk_steps',
  'solver_order',
  'algorithm_type',
  'solver_type',
  'lower_order_final',
  'euler_at_final',
  'use_karras_sigmas',
  'use_exponential_sigmas',
  'use_beta_sigmas',
  'use_lu_lambdas',
  'use_flow_sigmas',
  'flow_shift',
  'final_sigmas_type',
  'lambda_min_clipped',
  'interpolation_type',
  'sigma_min',
  'sigma_max',
  'timestep_type',
  'predict_x0',
  'disable_corrector',
  'solver_p',
  'use_dynamic_shifting',
  'time_shift_type',
  'shift_terminal',
  'noise_sampler_seed',
  'original_inference_steps',
  'timestep_scaling',
  'snr_shift_scale',
  'predictor_order',
  'corrector_order',
  'tau_func',
  // legacy (diffusers ≤ 0.1x)
  'tensor_format',
  'timestep_values',
];

/** The result of parsing a `scheduler_config.json`. */
export interface ParsedSchedulerJson<C> {
  /** Options for the scheduler constructor (only keys present in the json). */
  readonly options: Partial<C>;
  /** Keys dropped because they belong to another compatible scheduler (diffusers' warning). */
  readonly ignoredKeys: readonly string[];
  /** The `_class_name` found in the json, if any. */
  readonly sourceClassName: string | null;
}

/**
 * A `scheduler_config.json` given as JSON text → the parsed value (anything else passes through).
 * @throws ConfigError for invalid JSON.
 */
export function parseSchedulerJsonText(json: SchedulerJson | string): unknown {
  if (typeof json !== 'string') return json;
  try {
    return JSON.parse(json) as unknown;
  } catch (err) {
    throw new ConfigError(`scheduler config is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Turns a diffusers `scheduler_config.json` (object or JSON text) into camel-case options for
 * `className`, following `ConfigMixin.extract_init_dict`: bookkeeping keys and keys listed in
 * `_use_default_values` are dropped, keys of other compatible schedulers are ignored (reported),
 * the deprecated aliases `predict_epsilon` and (inverse only) `set_alpha_to_zero` are honoured, and
 * any other key or any invalid value throws {@link ConfigError}.
 */
export function parseSchedulerJson<C>(
  className: SchedulerClassName,
  json: SchedulerJson | string,
  acceptedKeys: readonly (keyof C & string)[],
): ParsedSchedulerJson<C> {
  const obj = parseSchedulerJsonText(json);
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new ConfigError(`scheduler config must be a JSON object, got ${Array.isArray(obj) ? 'an array' : typeof obj}`);
  }
  const src = obj as Record<string, unknown>;
  const cls = src['_class_name'];
  if (cls !== undefined && (typeof cls !== 'string' || !cls.endsWith('Scheduler'))) {
    throw new ConfigError(
      `_class_name ${JSON.stringify(cls)} is not a scheduler: pass scheduler_config.json (e.g. scheduler/scheduler_config.json), not a model's config.json`,
      { key: '_class_name', value: cls },
    );
  }
  const useDefaults = src['_use_default_values'];
  if (useDefaults !== undefined && (!Array.isArray(useDefaults) || useDefaults.some((k) => typeof k !== 'string'))) {
    throw bad('_use_default_values', useDefaults, 'an array of key names');
  }
  const dropped = new Set<string>((useDefaults as string[] | undefined) ?? []);
  const accepted = new Set<string>(acceptedKeys);
  const options: Record<string, unknown> = {};
  const ignoredKeys: string[] = [];
  let predictEpsilon: boolean | undefined;

  for (const [key, value] of Object.entries(src)) {
    if (DIFFUSERS_BOOKKEEPING_KEYS.includes(key) || dropped.has(key)) continue;
    const camel = SNAKE_TO_CAMEL[key];
    if (camel !== undefined) {
      if (!accepted.has(camel)) {
        ignoredKeys.push(key);
        continue;
      }
      if (value === null && key === 'variance_type') {
        // diffusers' DDPM treats variance_type=None like fixed_small (no branch of _get_variance fires).
        options[camel] = 'fixed_small';
        continue;
      }
      options[camel] = KEY_SPECS[camel]?.parse(value, key);
      continue;
    }
    if (key === 'predict_epsilon' && className !== 'DDIMInverseScheduler') {
      predictEpsilon = bool(value, key) as boolean;
      continue;
    }
    if (key === 'set_alpha_to_zero' && className === 'DDIMInverseScheduler') {
      // Deprecated alias: diffusers assigns its value to set_alpha_to_one.
      if (value !== null) options['setAlphaToOne'] = bool(value, key);
      continue;
    }
    if (COMPATIBLE_FOREIGN_KEYS.includes(key) || key === 'predict_epsilon' || key === 'set_alpha_to_zero') {
      ignoredKeys.push(key);
      continue;
    }
    throw new ConfigError(
      `unknown scheduler config key "${key}" for ${className}` +
        (key.startsWith('_') ? '' : `; known keys: ${acceptedKeys.map((k) => KEY_SPECS[k]?.snake).join(', ')}`),
      { key, value },
    );
  }
  if (predictEpsilon !== undefined) {
    const implied = predictEpsilon ? 'epsilon' : 'sample';
    if (options['predictionType'] !== undefined && options['predictionType'] !== implied) {
      throw new ConfigError(
        `deprecated predict_epsilon=${predictEpsilon} contradicts prediction_type="${String(options['predictionType'])}"`,
        { key: 'predict_epsilon' },
      );
    }
    options['predictionType'] = implied;
  }
  return { options: options as Partial<C>, ignoredKeys, sourceClassName: typeof cls === 'string' ? cls : null };
}

/**
 * Fills `options` over `defaults` and validates every field (the constructor side of a scheduler).
 * Unknown option names, invalid values, a `trainedBetas` length that contradicts
 * `numTrainTimesteps`, and schedules/spacings the class does not support throw {@link ConfigError}.
 */
export function resolveSchedulerConfig<C extends CommonSchedulerConfig>(
  className: SchedulerClassName,
  defaults: C,
  options: Partial<C>,
  supported: { betaSchedules: readonly BetaSchedule[]; timestepSpacings: readonly TimestepSpacing[] },
): C {
  if (options === null || typeof options !== 'object') {
    throw new ConfigError(`${className} options must be an object, got ${options === null ? 'null' : typeof options}`);
  }
  const out: Record<string, unknown> = { ...(defaults as object) };
  for (const [camel, value] of Object.entries(options)) {
    if (!(camel in defaults)) {
      throw new ConfigError(
        `unknown ${className} option "${camel}"; known options: ${Object.keys(defaults).join(', ')}`,
        { key: camel },
      );
    }
    if (value === undefined) continue;
    const spec = KEY_SPECS[camel];
    out[camel] = spec ? spec.parse(value, `${spec.snake}`) : value;
  }
  const c = out as unknown as C;
  if (c.trainedBetas !== null) {
    if (options.numTrainTimesteps === undefined) {
      c.numTrainTimesteps = c.trainedBetas.length;
    } else if (c.trainedBetas.length !== c.numTrainTimesteps) {
      throw new ConfigError(
        `trained_betas has ${c.trainedBetas.length} entries but num_train_timesteps is ${c.numTrainTimesteps}`,
        { key: 'trained_betas' },
      );
    }
  } else if (!supported.betaSchedules.includes(c.betaSchedule)) {
    throw new ConfigError(
      `${className} does not implement beta_schedule "${c.betaSchedule}" (diffusers raises NotImplementedError); ` +
        `use one of ${supported.betaSchedules.join(', ')}${c.betaSchedule === 'sigmoid' || c.betaSchedule === 'laplace' ? ' (or DDPMScheduler)' : ''}`,
      { key: 'beta_schedule', value: c.betaSchedule, allowed: supported.betaSchedules },
    );
  }
  if (!supported.timestepSpacings.includes(c.timestepSpacing)) {
    throw new ConfigError(
      `${className} does not support timestep_spacing "${c.timestepSpacing}"; use one of ${supported.timestepSpacings.join(', ')}`,
      { key: 'timestep_spacing', value: c.timestepSpacing, allowed: supported.timestepSpacings },
    );
  }
  return c;
}

/** Camel-case config → diffusers json (sorted keys, like `save_config`), with `_class_name`. */
export function schedulerConfigToJson(className: SchedulerClassName, config: object): SchedulerJson {
  const json: SchedulerJson = { _class_name: className, _diffusers_version: DIFFUSERS_REFERENCE_VERSION };
  const entries = Object.entries(config)
    .map(([camel, value]) => [KEY_SPECS[camel]?.snake ?? camel, value] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [snake, value] of entries) json[snake] = Array.isArray(value) ? [...value] : value;
  return json;
}

// ---------------------------------------------------------------------------------------------
// Timesteps.
// ---------------------------------------------------------------------------------------------

/** NumPy's `round` (round half to even), which diffusers applies to float timestep grids. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function checkInferenceSteps(numInferenceSteps: number, T: number): void {
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1) {
    throw new ConfigError(`num_inference_steps must be a positive integer, got ${numInferenceSteps}`, {
      key: 'num_inference_steps',
      value: numInferenceSteps,
    });
  }
  if (numInferenceSteps > T) {
    throw new ConfigError(
      `num_inference_steps (${numInferenceSteps}) cannot be larger than num_train_timesteps (${T}): the model only knows ${T} timesteps`,
      { key: 'num_inference_steps', value: numInferenceSteps, numTrainTimesteps: T },
    );
  }
}

/**
 * diffusers' `set_timesteps` grid for DDPM/DDIM, in sampling order (descending):
 *
 * | spacing | timesteps |
 * |---|---|
 * | `leading` | `r = T // n`; `[(n−1)r, …, r, 0] + steps_offset` |
 * | `trailing` | `round(arange(T, 0, −T/n)) − 1` (`T−1` first) |
 * | `linspace` | `round(linspace(0, T−1, n))` reversed |
 *
 * Rounding is NumPy's half-to-even. Deviation: for some (T, n) NumPy's float `arange` yields an
 * (n+1)-th `trailing` value −1 (e.g. T=1000, n=61), which torch then reads as ᾱ[−1] = ᾱ[T−1];
 * we return exactly n timesteps.
 */
export function ddimTimesteps(
  spacing: TimestepSpacing,
  numTrainTimesteps: number,
  numInferenceSteps: number,
  stepsOffset = 0,
): number[] {
  const T = numTrainTimesteps;
  const n = numInferenceSteps;
  checkInferenceSteps(n, T);
  const out: number[] = [];
  if (spacing === 'leading') {
    const r = Math.floor(T / n);
    for (let i = n - 1; i >= 0; i--) out.push(i * r + stepsOffset);
    if ((out[0] as number) >= T) {
      throw new ConfigError(
        `steps_offset ${stepsOffset} pushes the first timestep to ${out[0]} ≥ num_train_timesteps ${T}`,
        { key: 'steps_offset', value: stepsOffset },
      );
    }
  } else if (spacing === 'trailing') {
    // NumPy arange with a float step: x_i = start + i·((start + step) − start).
    const step = -(T / n);
    const delta = T + step - T;
    for (let i = 0; i < n; i++) out.push(roundHalfEven(T + i * delta) - 1);
  } else if (spacing === 'linspace') {
    // NumPy linspace: x_i = i·((stop − start)/(n − 1)) + start, last = stop.
    const stop = T - 1;
    for (let i = 0; i < n; i++) {
      const x = n === 1 ? 0 : i === n - 1 ? stop : i * (stop / (n - 1));
      out.push(roundHalfEven(x));
    }
    out.reverse();
  } else {
    throw new ConfigError(`timestep_spacing "${String(spacing)}" is not one of ${TIMESTEP_SPACINGS.join(', ')}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tensor helpers (pure tf ops: differentiable, tidy-safe, never dispose their inputs).
// ---------------------------------------------------------------------------------------------

/** ᾱ at one timestep for the whole batch, or one ᾱ per batch element. */
export type AlphaProd = number | readonly number[];

/**
 * A per-sample coefficient: a float32 scalar when `values` is a number, else a tensor of shape
 * [N, 1, …, 1] broadcastable against a rank-`rank` batch.
 */
function coefficient(values: number | readonly number[], rank: number): number | tf.Tensor {
  if (typeof values === 'number') return values;
  const shape = [values.length, ...new Array<number>(Math.max(rank - 1, 0)).fill(1)];
  return tf.tensor(Float32Array.from(values), shape, 'float32');
}

function mapAlpha(a: AlphaProd, fn: (x: number) => number): number | number[] {
  return typeof a === 'number' ? fn(a) : a.map(fn);
}

/**
 * The forward-process coefficients [√ᾱ, √(1−ᾱ)] (float32-rounded, as torch) as scalars or
 * per-sample tensors broadcastable against a rank-`rank` batch. Call inside `tf.tidy`.
 */
function sqrtAlphaCoefficients(alphaProd: AlphaProd, rank: number): [number | tf.Tensor, number | tf.Tensor] {
  return [
    coefficient(mapAlpha(alphaProd, (a) => f32(Math.sqrt(a))), rank),
    coefficient(mapAlpha(alphaProd, (a) => f32(Math.sqrt(f32(1 - a)))), rank),
  ];
}

function checkPair(a: tf.Tensor, b: tf.Tensor, nameA: string, nameB: string): void {
  if (a.dtype !== 'float32') throw new DTypeError(`${nameA} must be float32, got ${a.dtype}`, { name: nameA });
  if (b.dtype !== 'float32') throw new DTypeError(`${nameB} must be float32, got ${b.dtype}`, { name: nameB });
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new ShapeError(`${nameA} [${a.shape.join(',')}] and ${nameB} [${b.shape.join(',')}] must have the same shape`, {
      [nameA]: a.shape,
      [nameB]: b.shape,
    });
  }
}

function checkAlphaBatch(alphaProd: AlphaProd, batch: number | undefined): void {
  const list = typeof alphaProd === 'number' ? [alphaProd] : alphaProd;
  if (typeof alphaProd !== 'number' && alphaProd.length !== batch) {
    throw new ShapeError(`got ${alphaProd.length} per-sample ᾱ values for a batch of ${batch}`, {
      values: alphaProd.length,
      batch,
    });
  }
  for (const a of list) {
    if (!(a >= 0 && a <= 1)) throw new ValueRangeError(`ᾱ must lie in [0, 1], got ${a}`, { value: a });
  }
}

/** x̂0 and ε̂ predicted from a model output. */
export interface X0AndEps<T extends tf.Tensor = tf.Tensor> {
  /** x̂0, the predicted clean sample (diffusers' `pred_original_sample`), before clipping. */
  readonly x0: T;
  /** ε̂, the predicted noise (diffusers' `pred_epsilon`). */
  readonly eps: T;
}

/**
 * Converts a model output at noise level ᾱ into (x̂0, ε̂), exactly as diffusers' DDIM step does
 * (Ho et al. 2020 eq. 15 for ε; Salimans & Ho 2022 §4 for v):
 * - `epsilon`: x̂0 = (x − √(1−ᾱ)·m)/√ᾱ, ε̂ = m
 * - `sample`: x̂0 = m, ε̂ = (x − √ᾱ·x̂0)/√(1−ᾱ)
 * - `v_prediction`: x̂0 = √ᾱ·x − √(1−ᾱ)·m, ε̂ = √ᾱ·m + √(1−ᾱ)·x
 *
 * `alphaProd` is one ᾱ for the batch or one per batch element (for batches at mixed timesteps).
 * Pure tf ops, so gradients flow to `modelOutput` and `sample` (guidance, InvMM); call inside
 * `tf.tidy`. Inputs are not disposed. No clipping is applied (see {@link processPredOriginalSample}).
 */
export function predictX0AndEps<T extends tf.Tensor>(
  modelOutput: T,
  sample: T,
  alphaProd: AlphaProd,
  predictionType: PredictionType,
): X0AndEps<T> {
  checkPair(modelOutput, sample, 'modelOutput', 'sample');
  checkAlphaBatch(alphaProd, sample.shape[0]);
  return tf.tidy(() => {
    const [sqrtA, sqrtB] = sqrtAlphaCoefficients(alphaProd, sample.rank);
    let x0: tf.Tensor;
    let eps: tf.Tensor;
    if (predictionType === 'epsilon') {
      x0 = tf.div(tf.sub(sample, tf.mul(sqrtB, modelOutput)), sqrtA);
      eps = tf.clone(modelOutput);
    } else if (predictionType === 'sample') {
      x0 = tf.clone(modelOutput);
      eps = tf.div(tf.sub(sample, tf.mul(sqrtA, x0)), sqrtB);
    } else if (predictionType === 'v_prediction') {
      x0 = tf.sub(tf.mul(sqrtA, sample), tf.mul(sqrtB, modelOutput));
      eps = tf.add(tf.mul(sqrtA, modelOutput), tf.mul(sqrtB, sample));
    } else {
      throw new ConfigError(`prediction_type "${String(predictionType)}" is not one of ${PREDICTION_TYPES.join(', ')}`);
    }
    return { x0: x0 as T, eps: eps as T };
  });
}

/** x̂0 only (what DDPM needs); same formulas as {@link predictX0AndEps}. */
export function predictX0<T extends tf.Tensor>(
  modelOutput: T,
  sample: T,
  alphaProd: AlphaProd,
  predictionType: PredictionType,
): T {
  checkPair(modelOutput, sample, 'modelOutput', 'sample');
  checkAlphaBatch(alphaProd, sample.shape[0]);
  return tf.tidy(() => {
    const [sqrtA, sqrtB] = sqrtAlphaCoefficients(alphaProd, sample.rank);
    switch (predictionType) {
      case 'epsilon':
        return tf.div(tf.sub(sample, tf.mul(sqrtB, modelOutput)), sqrtA) as T;
      case 'sample':
        return tf.clone(modelOutput);
      case 'v_prediction':
        return tf.sub(tf.mul(sqrtA, sample), tf.mul(sqrtB, modelOutput)) as T;
      default:
        throw new ConfigError(`prediction_type "${String(predictionType)}" is not one of ${PREDICTION_TYPES.join(', ')}`);
    }
  });
}

/**
 * ε̂ recomputed from a (clipped) x̂0: `(x − √ᾱ·x̂0)/√(1−ᾱ)` — diffusers' `use_clipped_model_output`.
 */
export function epsFromX0<T extends tf.Tensor>(x0: T, sample: T, alphaProd: AlphaProd): T {
  checkPair(x0, sample, 'x0', 'sample');
  checkAlphaBatch(alphaProd, sample.shape[0]);
  return tf.tidy(() => {
    const [sqrtA, sqrtB] = sqrtAlphaCoefficients(alphaProd, sample.rank);
    return tf.div(tf.sub(sample, tf.mul(sqrtA, x0)), sqrtB) as T;
  });
}

/**
 * `torch.quantile(v, q)` with linear interpolation, for one row of values (sorted ascending
 * positions `lo`, `lo+1` given).
 */
function lerpQuantile(below: number, above: number, weight: number): number {
  return weight < 0.5 ? below + weight * (above - below) : above - (above - below) * (1 - weight);
}

/**
 * Dynamic thresholding (Saharia et al. 2022, Imagen §2.3; diffusers' `_threshold_sample`): per
 * sample, s = the `ratio` quantile of |x̂0| over all non-batch entries, clamped to
 * [1, `sampleMaxValue`]; returns clamp(x̂0, −s, s)/s.
 *
 * s is read back to the host (one small `topk`), so gradients treat it as a constant.
 */
export function thresholdSample<T extends tf.Tensor>(x0: T, ratio: number, sampleMaxValue: number): T {
  if (!(ratio > 0 && ratio <= 1)) throw new ConfigError(`dynamic_thresholding_ratio must be in (0, 1], got ${ratio}`);
  if (x0.rank < 1) throw new ShapeError('thresholdSample needs a batched tensor');
  const n = x0.shape[0] as number;
  const d = x0.size / n;
  // Ascending rank of the quantile (torch computes it in the input dtype).
  const rank = f32(f32(ratio) * (d - 1));
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const weight = rank - lo;
  const k = d - lo; // top-k (descending) reaches down to ascending position lo
  const top = tf.tidy(() => tf.topk(tf.abs(tf.reshape(x0, [n, d])), k, true).values);
  const values = top.dataSync();
  top.dispose();
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const below = values[i * k + (k - 1)] as number;
    const above = values[i * k + (k - 1 - (hi - lo))] as number;
    const q = lerpQuantile(below, above, weight);
    s[i] = Math.min(Math.max(q, 1), sampleMaxValue);
  }
  return tf.tidy(() => {
    const sT = tf.tensor(s, [n, ...new Array<number>(x0.rank - 1).fill(1)], 'float32');
    return tf.div(tf.minimum(tf.maximum(x0, tf.neg(sT)), sT), sT) as T;
  });
}

/**
 * diffusers' step 4, "clip or threshold x̂0": dynamic thresholding when `thresholding`, else
 * clamp to ±`clipSampleRange` when `clipSample`, else x̂0 unchanged (a clone).
 */
export function processPredOriginalSample<T extends tf.Tensor>(
  x0: T,
  config: Pick<CommonSchedulerConfig, 'clipSample' | 'clipSampleRange'> & Partial<ThresholdingConfig>,
): T {
  if (config.thresholding) {
    return thresholdSample(x0, config.dynamicThresholdingRatio ?? 0.995, config.sampleMaxValue ?? 1);
  }
  if (config.clipSample) return tf.clipByValue(x0, -config.clipSampleRange, config.clipSampleRange) as T;
  return tf.clone(x0);
}

/** Timesteps of a batch: one for all, a list (one per sample), or an int32 [N] tensor. */
export type TimestepsInput = number | readonly number[] | tf.Tensor1D;

function timestepList(timesteps: TimestepsInput, T: number, batch: number): number | number[] {
  let list: number | number[];
  if (typeof timesteps === 'number') list = timesteps;
  else if (timesteps instanceof tf.Tensor) {
    if (timesteps.rank !== 1) throw new ShapeError(`timesteps tensor must be rank 1, got shape [${timesteps.shape.join(',')}]`);
    list = Array.from(timesteps.dataSync());
  } else list = [...timesteps];
  const all = typeof list === 'number' ? [list] : list;
  for (const t of all) {
    if (!Number.isInteger(t) || t < 0 || t >= T) {
      throw new ValueRangeError(`timestep ${t} is not an integer in [0, ${T})`, { timestep: t });
    }
  }
  if (typeof list !== 'number' && list.length !== batch) {
    if (list.length === 1) return list[0] as number;
    throw new ShapeError(`got ${list.length} timesteps for a batch of ${batch}`, { timesteps: list.length, batch });
  }
  return list;
}

/** ᾱ at validated timesteps: one value for the batch, or one per sample. */
function alphaProdAt(alphasCumprod: Float32Array, timesteps: TimestepsInput, batch: number): AlphaProd {
  const ts = timestepList(timesteps, alphasCumprod.length, batch);
  return typeof ts === 'number' ? (alphasCumprod[ts] as number) : ts.map((t) => alphasCumprod[t] as number);
}

/**
 * The forward process q(x_t | x_0) (Ho et al. 2020 eq. 4; diffusers' `add_noise`):
 * `x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε`, with one timestep for the batch or one per sample.
 */
export function addNoise<T extends tf.Tensor>(
  alphasCumprod: Float32Array,
  originalSamples: T,
  noise: T,
  timesteps: TimestepsInput,
): T {
  checkPair(originalSamples, noise, 'originalSamples', 'noise');
  const a = alphaProdAt(alphasCumprod, timesteps, originalSamples.shape[0] as number);
  return tf.tidy(() => {
    const [sqrtA, sqrtB] = sqrtAlphaCoefficients(a, originalSamples.rank);
    return tf.add(tf.mul(sqrtA, originalSamples), tf.mul(sqrtB, noise)) as T;
  });
}

/**
 * The v-prediction target (Salimans & Ho 2022 §4; diffusers' `get_velocity`):
 * `v = √ᾱ_t·ε − √(1−ᾱ_t)·x0`.
 */
export function getVelocity<T extends tf.Tensor>(
  alphasCumprod: Float32Array,
  sample: T,
  noise: T,
  timesteps: TimestepsInput,
): T {
  checkPair(sample, noise, 'sample', 'noise');
  const a = alphaProdAt(alphasCumprod, timesteps, sample.shape[0] as number);
  return tf.tidy(() => {
    const [sqrtA, sqrtB] = sqrtAlphaCoefficients(a, sample.rank);
    return tf.sub(tf.mul(sqrtA, noise), tf.mul(sqrtB, sample)) as T;
  });
}

/** What every scheduler's `step` returns (diffusers' `…SchedulerOutput`). Both are new tensors. */
export interface SchedulerStepOutput<T extends tf.Tensor = tf.Tensor> {
  /** The next sample of the loop (x_{t−1} for DDPM/DDIM; x_{t_next} for the inverse scheduler). */
  readonly prevSample: T;
  /** x̂0 after clipping/thresholding. */
  readonly predOriginalSample: T;
}

// ---------------------------------------------------------------------------------------------
// Base class.
// ---------------------------------------------------------------------------------------------

/**
 * The shared machinery of the DDPM-family schedulers (diffusers' `SchedulerMixin` + `ConfigMixin`):
 * the float32 tables, timesteps state, the forward process, model-output conversion and config
 * serialisation. Subclasses add `setTimesteps` and `step`.
 */
export abstract class SchedulerBase<C extends CommonSchedulerConfig> {
  /** The validated configuration (camel case). Use {@link SchedulerBase.toConfig} for diffusers json. */
  readonly config: Readonly<C>;
  /** β_t (float32). */
  readonly betas: Float32Array;
  /** α_t = 1 − β_t (float32). */
  readonly alphas: Float32Array;
  /** ᾱ_t (float32), diffusers' `alphas_cumprod`. */
  readonly alphasCumprod: Float32Array;
  /** Std of the initial noise (1 for DDPM/DDIM). */
  readonly initNoiseSigma = 1;
  /** Model evaluations per step (1). */
  readonly order = 1;
  /** n after `setTimesteps(n)`, else null. */
  numInferenceSteps: number | null = null;
  /** The current timestep grid, in the order the loop visits it. */
  timesteps: readonly number[];

  /** The diffusers class this scheduler mirrors. */
  abstract readonly className: SchedulerClassName;
  /** The order the loop visits timesteps (descending: sampling; ascending: inversion). */
  private readonly timestepOrder: 'descending' | 'ascending';

  /**
   * `order`: the order the loop visits timesteps — `descending` for samplers (the initial grid is
   * T−1…0), `ascending` for inversion (0…T−1).
   */
  protected constructor(config: C, order: 'descending' | 'ascending') {
    this.config = Object.freeze({ ...config, trainedBetas: config.trainedBetas ? Object.freeze([...config.trainedBetas]) : null });
    const schedule = new NoiseSchedule(config);
    this.betas = schedule.betas;
    this.alphas = schedule.alphas;
    this.alphasCumprod = schedule.alphasCumprod;
    const T = config.numTrainTimesteps;
    this.timestepOrder = order;
    this.timesteps = Array.from({ length: T }, (_, i) => (order === 'descending' ? T - 1 - i : i));
  }

  /**
   * diffusers' `set_timesteps(n)`: the `timestep_spacing` grid of n steps (see {@link ddimTimesteps}),
   * in the loop's order; sets `timesteps` and `numInferenceSteps` and returns the grid.
   */
  protected setSpacedTimesteps(numInferenceSteps: number): readonly number[] {
    const c = this.config;
    const grid = ddimTimesteps(c.timestepSpacing, c.numTrainTimesteps, numInferenceSteps, c.stepsOffset);
    this.timesteps = this.timestepOrder === 'descending' ? grid : grid.reverse();
    this.numInferenceSteps = numInferenceSteps;
    return this.timesteps;
  }

  /** T. */
  get numTrainTimesteps(): number {
    return this.config.numTrainTimesteps;
  }

  /** ᾱ_t; throws {@link ValueRangeError} unless t is an integer in [0, T). */
  alphaProd(t: number): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length) {
      throw new ValueRangeError(`timestep ${t} is not an integer in [0, ${this.alphasCumprod.length})`, {
        timestep: t,
      });
    }
    return this.alphasCumprod[t] as number;
  }

  /** Identity for DDPM/DDIM (diffusers' `scale_model_input`); returns `sample` itself. */
  scaleModelInput<T extends tf.Tensor>(sample: T, _timestep?: number): T {
    return sample;
  }

  /** `x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε` (see {@link addNoise}). */
  addNoise<T extends tf.Tensor>(originalSamples: T, noise: T, timesteps: TimestepsInput): T {
    return addNoise(this.alphasCumprod, originalSamples, noise, timesteps);
  }

  /** `v = √ᾱ_t·ε − √(1−ᾱ_t)·x0` (see {@link getVelocity}). */
  getVelocity<T extends tf.Tensor>(sample: T, noise: T, timesteps: TimestepsInput): T {
    return getVelocity(this.alphasCumprod, sample, noise, timesteps);
  }

  /**
   * (x̂0, ε̂) from a model output at `timestep` (one for the batch, or one per sample) using this
   * scheduler's `prediction_type`; differentiable, unclipped (see {@link predictX0AndEps}).
   */
  predictX0AndEps<T extends tf.Tensor>(
    modelOutput: T,
    sample: T,
    timestep: number | readonly number[],
  ): X0AndEps<T> {
    const a = typeof timestep === 'number' ? this.alphaProd(timestep) : timestep.map((t) => this.alphaProd(t));
    return predictX0AndEps(modelOutput, sample, a, this.config.predictionType);
  }

  /** The config as diffusers' `scheduler_config.json` (snake case, `_class_name`, sorted keys). */
  toConfig(): SchedulerJson {
    return schedulerConfigToJson(this.className, this.config);
  }

  /** Throws unless `setTimesteps` was called. */
  protected requireInferenceSteps(): number {
    if (this.numInferenceSteps === null) {
      throw new ConfigError(`${this.className}: call setTimesteps(numInferenceSteps) before step()`);
    }
    return this.numInferenceSteps;
  }
}

/** Validates a `step()` call's model output against the sample (same shape, float32). */
export function checkStepInputs(modelOutput: tf.Tensor, sample: tf.Tensor, allowDoubleChannels = false): void {
  if (!(modelOutput instanceof tf.Tensor)) throw new ShapeError('modelOutput must be a tf.Tensor');
  if (!(sample instanceof tf.Tensor)) throw new ShapeError('sample must be a tf.Tensor');
  if (modelOutput.dtype !== 'float32') throw new DTypeError(`modelOutput must be float32, got ${modelOutput.dtype}`);
  if (sample.dtype !== 'float32') throw new DTypeError(`sample must be float32, got ${sample.dtype}`);
  const same = modelOutput.rank === sample.rank && modelOutput.shape.every((d, i) => d === sample.shape[i]);
  if (same) return;
  const last = sample.rank - 1;
  const doubled =
    allowDoubleChannels &&
    modelOutput.rank === sample.rank &&
    modelOutput.shape.every((d, i) => (i === last ? d === 2 * (sample.shape[i] as number) : d === sample.shape[i]));
  if (!doubled) {
    throw new ShapeError(
      `modelOutput [${modelOutput.shape.join(',')}] must have the shape of sample [${sample.shape.join(',')}]` +
        (allowDoubleChannels ? ' (or twice its channels for learned variance)' : ''),
      { modelOutput: modelOutput.shape, sample: sample.shape },
    );
  }
}

/** Validates a timestep argument of `step()`. */
export function checkTimestep(timestep: number, T: number): void {
  if (typeof timestep !== 'number' || !Number.isInteger(timestep) || timestep < 0 || timestep >= T) {
    throw new ValueRangeError(`timestep ${String(timestep)} is not an integer in [0, ${T})`, { timestep });
  }
}
