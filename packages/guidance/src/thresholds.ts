/**
 * Similarity thresholds λ_t of Anti-Memorization Guidance (Chen, Liu & Xu, CVPR 2024, Eqs. 10–11):
 * guidance is applied at step t only when σ_t > λ_t.
 *
 * The paper calls its schedule "parabolic" and gives no closed form. Both official code bases use
 * the saturating exponential `asy(t) = a − (a − b)·exp(−c·(t − d))`:
 * - Stable Diffusion (`AMG-sd/ldm/models/diffusion/ddim.py`): a = 0.3, b = 0.4, c = 0.005, d = 0 on
 *   the SSCD cosine, t the DDPM index (T = 1000) — λ ≈ 0.301 at t = 981, 0.3995 at t = 1.
 * - iDDPM CIFAR-10 (`AMG-iddpm/improved_diffusion/gaussian_diffusion.py`): `thres(t) = 1.95 −
 *   0.45·exp(−0.025·t)` on nL2 with t the respaced index (250 steps), guidance when nL2 < thres,
 *   i.e. λ_t = −thres(t) on σ = −nL2 — the same form with a = −1.95, b = −1.5, c = 0.025.
 *
 * All thresholds here are in σ units (σ = cosine, or σ = −nL2). The time variable is
 * τ = t·timeScale/T: timeScale = T reproduces the SD code, timeScale = 250 maps any grid onto the
 * iDDPM code's respaced 250-step axis (its t = respaced index ≈ t_DDPM·250/T).
 * @module
 */
import { ConfigError } from '@diffmem/core';

/** λ(τ) = a − (a − b)·exp(−c·(τ − d)), τ = t·timeScale/T (the official `asy`). */
export interface SaturatingExponentialThreshold {
  readonly kind: 'saturating-exponential';
  /** Value reached at large τ (early, noisy steps). */
  readonly a: number;
  /** Value at τ = d (the last steps). */
  readonly b: number;
  /** Decay rate per unit of τ. */
  readonly c: number;
  /** Offset of τ (official: 0). */
  readonly d?: number;
  /** Units of τ spanned by the whole diffusion [0, T) (default: T itself, i.e. τ = t). */
  readonly timeScale?: number;
}

/** λ_t = value at every step (paper Table 5 "constant λ" ablation). */
export interface ConstantThreshold {
  readonly kind: 'constant';
  readonly value: number;
}

/**
 * The gate is always open (paper Table 5 "guidance always on" ablation). Scales that are relative
 * to λ_t (the `'margin'` term signal, G_sim offset `'threshold'`, the iDDPM mean shift's σ − λ_t)
 * keep using `reference` — the official code with its `if σ > λ_t` removed, so σ − λ_t turns
 * negative (a pull towards n0) where the schedule would have stayed quiet.
 */
export interface AlwaysOnThreshold {
  readonly kind: 'always';
  /** The schedule λ-relative scales are measured against (required by those scales). */
  readonly reference?: ThresholdSchedule;
}

/** A threshold schedule λ_t, in σ units. */
export type ThresholdSchedule = SaturatingExponentialThreshold | ConstantThreshold | AlwaysOnThreshold;

/** The official Stable Diffusion schedule on SSCD cosine: `asy(t, 0.3, 0.4, 0.005, 0)` with t the DDPM index (T = 1000). */
export const OFFICIAL_SD_THRESHOLD: SaturatingExponentialThreshold = Object.freeze({
  kind: 'saturating-exponential',
  a: 0.3,
  b: 0.4,
  c: 0.005,
  d: 0,
  timeScale: 1000,
});

/**
 * The official iDDPM guidance schedule on σ = −nL2: nL2 < 1.95 − 0.45·exp(−0.025·τ), τ on the
 * respaced 250-step axis.
 */
export const OFFICIAL_IDDPM_THRESHOLD: SaturatingExponentialThreshold = Object.freeze({
  kind: 'saturating-exponential',
  a: -1.95,
  b: -1.5,
  c: 0.025,
  d: 0,
  timeScale: 250,
});

/**
 * The official iDDPM trigger (σ = −nL2 > −1.5, i.e. nL2 < 1.5 on the unguided path), written in the
 * code as `asy(t, 1.5, 1.5, 0.025)` — a constant.
 */
export const OFFICIAL_IDDPM_TRIGGER = -1.5;

/** Named schedules: the two official constant sets, a constant λ, and "always on". */
export const THRESHOLDS = Object.freeze({
  officialSD: OFFICIAL_SD_THRESHOLD,
  officialIDDPM: OFFICIAL_IDDPM_THRESHOLD,
  constant: (value: number): ConstantThreshold => ({ kind: 'constant', value }),
  always: (reference?: ThresholdSchedule): AlwaysOnThreshold => (reference ? { kind: 'always', reference } : { kind: 'always' }),
});

/** Throws ConfigError unless `s` is a well-formed schedule. */
export function validateThreshold(s: ThresholdSchedule): void {
  if (s === null || typeof s !== 'object') throw new ConfigError('threshold must be a ThresholdSchedule object');
  const finite = (v: unknown, name: string): void => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`threshold.${name} must be a finite number, got ${String(v)}`);
  };
  switch (s.kind) {
    case 'saturating-exponential':
      finite(s.a, 'a');
      finite(s.b, 'b');
      finite(s.c, 'c');
      if (s.d !== undefined) finite(s.d, 'd');
      if (s.timeScale !== undefined && !(s.timeScale > 0 && Number.isFinite(s.timeScale))) {
        throw new ConfigError(`threshold.timeScale must be a positive number, got ${s.timeScale}`);
      }
      return;
    case 'constant':
      finite(s.value, 'value');
      return;
    case 'always':
      if (s.reference !== undefined) {
        if (s.reference.kind === 'always') throw new ConfigError('an always-on threshold cannot reference another always-on threshold');
        validateThreshold(s.reference);
      }
      return;
    default:
      throw new ConfigError(`unknown threshold kind ${JSON.stringify((s as { kind?: unknown }).kind)} (saturating-exponential, constant, always)`);
  }
}

/** τ = t·timeScale/T, the time axis the official constants were written for. */
export function thresholdTime(timestep: number, numTrainTimesteps: number, timeScale: number = numTrainTimesteps): number {
  return (timestep * timeScale) / numTrainTimesteps;
}

/** λ_t of the gate σ_t > λ_t at DDPM timestep `timestep` of a T-step diffusion (−∞ for `always`). */
export function thresholdAt(s: ThresholdSchedule, timestep: number, numTrainTimesteps: number): number {
  switch (s.kind) {
    case 'saturating-exponential': {
      const tau = thresholdTime(timestep, numTrainTimesteps, s.timeScale ?? numTrainTimesteps);
      return s.a - (s.a - s.b) * Math.exp(-s.c * (tau - (s.d ?? 0)));
    }
    case 'constant':
      return s.value;
    case 'always':
      return -Infinity;
  }
}

/**
 * λ_t as λ-relative scales see it: the gate's λ_t, or for `always` its reference schedule's
 * (NaN when it has none).
 */
export function thresholdScaleAt(s: ThresholdSchedule, timestep: number, numTrainTimesteps: number): number {
  if (s.kind === 'always') return s.reference ? thresholdAt(s.reference, timestep, numTrainTimesteps) : Number.NaN;
  return thresholdAt(s, timestep, numTrainTimesteps);
}
