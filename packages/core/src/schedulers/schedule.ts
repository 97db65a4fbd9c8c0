/**
 * Noise schedules β_t, α_t = 1 − β_t and ᾱ_t = ∏ α_s for discrete-time diffusion (Ho et al. 2020,
 * eq. 4), computed in float32 the way diffusers builds them with torch on the CPU, so timestep
 * tables, DDIM coefficients and golden values agree with diffusers to float32 round-off.
 *
 * Exactness notes (torch CPU kernels, float32):
 * - `torch.linspace` computes `step = (end − start)/(steps − 1)` in float32 and fills the first
 *   half as `start + step·i`, the second half as `end − step·(steps − 1 − i)` ({@link linspaceF32}).
 * - `torch.cumprod` on the CPU accumulates in float64 and rounds every output to float32
 *   (`acc_type<float, is_cuda = false>` is double) ({@link cumprodF32}).
 * - Schedules built from ᾱ(t) (`squaredcos_cap_v2`, `laplace`) are computed in float64 by Python
 *   and rounded to float32 once.
 * @module
 */
import { ConfigError, ValueRangeError } from '../errors.js';

const f32 = Math.fround;

/** The β schedules diffusers' DDPM-family schedulers know (`beta_schedule`). */
export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2' | 'sigmoid' | 'laplace';

/** Every {@link BetaSchedule}, for validation and docs. */
export const BETA_SCHEDULES: readonly BetaSchedule[] = [
  'linear',
  'scaled_linear',
  'squaredcos_cap_v2',
  'sigmoid',
  'laplace',
];

/** The ᾱ(t) families of diffusers' `betas_for_alpha_bar`. */
export type AlphaTransformType = 'cosine' | 'exp' | 'laplace';

/** What is needed to build a {@link NoiseSchedule} (camel-case mirror of diffusers' kwargs). */
export interface NoiseScheduleConfig {
  /** T, the number of training timesteps (`num_train_timesteps`). */
  readonly numTrainTimesteps: number;
  /** β_0 for `linear`/`scaled_linear`/`sigmoid` (`beta_start`). */
  readonly betaStart: number;
  /** β_{T−1} for `linear`/`scaled_linear`/`sigmoid` (`beta_end`). */
  readonly betaEnd: number;
  readonly betaSchedule: BetaSchedule;
  /** Explicit β table of length T; overrides `betaSchedule` (`trained_betas`). */
  readonly trainedBetas?: readonly number[] | Float32Array | null;
  /** Rescale to zero terminal SNR (Lin et al. 2024, Algorithm 1) (`rescale_betas_zero_snr`). */
  readonly rescaleBetasZeroSnr?: boolean;
}

/**
 * `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU: endpoints and step in
 * float32, first half counted up from `start`, second half down from `end` (so both endpoints are
 * exact). Matches torch ≥ 2.1's serial kernel; builds compiled with FMA contraction may differ by
 * one ulp in a few entries.
 */
export function linspaceF32(start: number, end: number, steps: number): Float32Array {
  if (!Number.isInteger(steps) || steps < 0) throw new ConfigError(`linspace steps must be a non-negative integer, got ${steps}`);
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const s = f32(start);
  const e = f32(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < halfway ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1)));
  }
  return out;
}

/**
 * `torch.cumprod` of a float32 vector on the CPU: the running product is kept in float64 and each
 * output is rounded to float32.
 */
export function cumprodF32(values: ArrayLike<number>): Float32Array {
  const out = new Float32Array(values.length);
  let acc = 1;
  for (let i = 0; i < values.length; i++) {
    acc *= values[i] as number;
    out[i] = acc;
  }
  return out;
}

/**
 * diffusers' `betas_for_alpha_bar`: `β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), maxBeta)` in float64, then
 * float32. `cosine` is the improved-DDPM schedule (Nichol & Dhariwal 2021, eq. 17) used by
 * `squaredcos_cap_v2`: `ᾱ(t) = cos²((t + 0.008)/1.008 · π/2)`.
 */
export function betasForAlphaBar(
  numDiffusionTimesteps: number,
  maxBeta = 0.999,
  alphaTransformType: AlphaTransformType = 'cosine',
): Float32Array {
  let alphaBar: (t: number) => number;
  if (alphaTransformType === 'cosine') {
    alphaBar = (t) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  } else if (alphaTransformType === 'laplace') {
    alphaBar = (t) => {
      const lmb = -0.5 * Math.sign(0.5 - t || 1) * Math.log(1 - 2 * Math.abs(0.5 - t) + 1e-6);
      const snr = Math.exp(lmb);
      return Math.sqrt(snr / (1 + snr));
    };
  } else if (alphaTransformType === 'exp') {
    alphaBar = (t) => Math.exp(t * -12.0);
  } else {
    throw new ConfigError(`unsupported alpha_transform_type "${String(alphaTransformType)}"; use cosine, exp or laplace`);
  }
  const T = numDiffusionTimesteps;
  const betas = new Float32Array(T);
  for (let i = 0; i < T; i++) {
    betas[i] = Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), maxBeta);
  }
  return betas;
}

/**
 * diffusers' `rescale_zero_terminal_snr` (Lin et al. 2024, "Common Diffusion Noise Schedules and
 * Sample Steps are Flawed", Algorithm 1): shifts and scales √ᾱ so that √ᾱ_{T−1} = 0 while √ᾱ_0 is
 * unchanged, then recovers β. Float32 throughout, like the torch original.
 */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const alphas = new Float32Array(n);
  for (let i = 0; i < n; i++) alphas[i] = 1 - (betas[i] as number);
  const alphasCumprod = cumprodF32(alphas);
  const sqrtAb = new Float32Array(n);
  for (let i = 0; i < n; i++) sqrtAb[i] = Math.sqrt(alphasCumprod[i] as number);
  const a0 = sqrtAb[0] as number;
  const aT = sqrtAb[n - 1] as number;
  const scale = f32(a0 / f32(a0 - aT));
  for (let i = 0; i < n; i++) sqrtAb[i] = f32(f32((sqrtAb[i] as number) - aT) * scale);
  const ab = new Float32Array(n);
  for (let i = 0; i < n; i++) ab[i] = f32((sqrtAb[i] as number) * (sqrtAb[i] as number));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const a = i === 0 ? (ab[0] as number) : f32((ab[i] as number) / (ab[i - 1] as number));
    out[i] = 1 - a;
  }
  return out;
}

/**
 * The float32 β table of a schedule, exactly as diffusers' DDPM/DDIM constructors build it:
 * - `linear`: `linspace(β_start, β_end, T)` (Ho et al. 2020, §4);
 * - `scaled_linear`: `linspace(√β_start, √β_end, T)²` (latent diffusion);
 * - `squaredcos_cap_v2`: {@link betasForAlphaBar} `cosine`;
 * - `laplace`: {@link betasForAlphaBar} `laplace`;
 * - `sigmoid`: `sigmoid(linspace(−6, 6, T))·(β_end − β_start) + β_start` (GeoDiff);
 * - `trainedBetas`, when given, replaces all of these;
 * then {@link rescaleZeroTerminalSnr} when `rescaleBetasZeroSnr`.
 */
export function makeBetas(config: NoiseScheduleConfig): Float32Array {
  const T = config.numTrainTimesteps;
  if (!Number.isInteger(T) || T < 1) {
    throw new ConfigError(`num_train_timesteps must be a positive integer, got ${T}`, { key: 'num_train_timesteps', value: T });
  }
  let betas: Float32Array;
  if (config.trainedBetas !== null && config.trainedBetas !== undefined) {
    betas = Float32Array.from(config.trainedBetas);
  } else {
    switch (config.betaSchedule) {
      case 'linear':
        betas = linspaceF32(config.betaStart, config.betaEnd, T);
        break;
      case 'scaled_linear': {
        betas = linspaceF32(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), T);
        for (let i = 0; i < T; i++) betas[i] = (betas[i] as number) * (betas[i] as number);
        break;
      }
      case 'squaredcos_cap_v2':
        betas = betasForAlphaBar(T, 0.999, 'cosine');
        break;
      case 'laplace':
        betas = betasForAlphaBar(T, 0.999, 'laplace');
        break;
      case 'sigmoid': {
        const x = linspaceF32(-6, 6, T);
        const range = f32(config.betaEnd - config.betaStart);
        const start = f32(config.betaStart);
        betas = new Float32Array(T);
        for (let i = 0; i < T; i++) {
          const s = f32(1 / (1 + Math.exp(-(x[i] as number))));
          betas[i] = f32(f32(s * range) + start);
        }
        break;
      }
      default:
        throw new ConfigError(
          `beta_schedule "${String(config.betaSchedule)}" is not one of ${BETA_SCHEDULES.join(', ')}`,
          { key: 'beta_schedule', value: config.betaSchedule, allowed: BETA_SCHEDULES },
        );
    }
  }
  if (config.rescaleBetasZeroSnr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

/**
 * The tables of a discrete noise schedule: β_t, α_t = 1 − β_t and ᾱ_t = ∏_{s≤t} α_s (Ho et al.
 * 2020, eq. 4), t = 0 … T−1, float32 as in diffusers.
 */
export class NoiseSchedule {
  /** β_t, float32, length T. */
  readonly betas: Float32Array;
  /** α_t = 1 − β_t, float32. */
  readonly alphas: Float32Array;
  /** ᾱ_t = ∏ α_s (diffusers' `alphas_cumprod`), float32. */
  readonly alphasCumprod: Float32Array;

  /** Builds the tables; throws {@link ConfigError} for an unknown schedule or β outside [0, 1]. */
  constructor(config: NoiseScheduleConfig) {
    this.betas = makeBetas(config);
    const T = this.betas.length;
    for (let i = 0; i < T; i++) {
      const b = this.betas[i] as number;
      if (!(b >= 0 && b <= 1)) {
        throw new ConfigError(
          `beta[${i}] = ${b} is outside [0, 1]: check beta_start/beta_end/trained_betas`,
          { index: i, value: b },
        );
      }
    }
    this.alphas = new Float32Array(T);
    for (let i = 0; i < T; i++) this.alphas[i] = 1 - (this.betas[i] as number);
    this.alphasCumprod = cumprodF32(this.alphas);
  }

  /** T. */
  get numTrainTimesteps(): number {
    return this.betas.length;
  }

  /** Signal-to-noise ratio ᾱ_t/(1 − ᾱ_t) (Kingma et al. 2021). */
  snr(t: number): number {
    const a = this.alphasCumprod[t];
    if (a === undefined || !Number.isInteger(t)) {
      throw new ValueRangeError(`timestep ${t} is not an integer in [0, ${this.numTrainTimesteps})`, { timestep: t });
    }
    return a / (1 - a);
  }
}
