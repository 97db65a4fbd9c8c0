/**
 * The adaptive KL weight λ of InvMM (the "adaptive algorithm that balances the normality and
 * sensitivity of the noise distribution"), exactly as the official loop runs it
 * (`ddpm/inverion.py::inversion`, identical in the LDM and SD scripts):
 *
 * ```
 * after the optimizer step of iteration `step` (0-based) with reconstruction loss p:
 *   window ← last 100 p values;  p_now ← mean(window)
 *   if step > 0 and (step + 1) % C == 0:            # checkpoint (then verify)
 *       λ ← λ/2 if p_prev − p_now < ξ else λ + δ    # p_prev = +∞ at the first checkpoint
 *       p_prev ← p_now
 *   else:
 *       λ ← λ + δ
 * ```
 * @module
 */
import { ConfigError } from '@diffmem/core';
import type { InvMMConfig } from './presets.js';

/** What {@link AdaptiveKLWeight.update} decided for one step. */
export interface KLWeightUpdate {
  /** The λ that weighted this step's loss. */
  readonly lambdaUsed: number;
  /** λ for the next step. */
  readonly lambda: number;
  /** The moving average p_now after this step. */
  readonly movingAverage: number;
  /** True at a checkpoint step (verification follows). */
  readonly checkpoint: boolean;
  /** At a checkpoint: true when λ was halved (p_prev − p_now < ξ). */
  readonly stalled: boolean;
}

/** The λ schedule state machine (see the module notes). */
export class AdaptiveKLWeight {
  /** The current λ (weights the next step's KL term). */
  lambda: number;
  /** p_prev: the moving average at the previous checkpoint (+∞ before the first). */
  previousAverage = Infinity;
  private readonly window: number[] = [];

  constructor(private readonly config: Pick<InvMMConfig, 'lambda0' | 'checkEvery' | 'stallThreshold' | 'lambdaIncrement' | 'movingAverageWindow'>) {
    this.lambda = config.lambda0;
  }

  /** The mean of the last `movingAverageWindow` reconstruction losses (float32, as torch). */
  get movingAverage(): number {
    if (this.window.length === 0) return NaN;
    let s = 0;
    for (const v of this.window) s += v;
    return Math.fround(s / this.window.length);
  }

  /** Records step `step`'s reconstruction loss and advances λ (see the module notes). */
  update(step: number, reconstructionLoss: number): KLWeightUpdate {
    if (!Number.isInteger(step) || step < 0) throw new ConfigError(`step must be a non-negative integer, got ${step}`);
    const c = this.config;
    const lambdaUsed = this.lambda;
    this.window.push(Math.fround(reconstructionLoss));
    if (this.window.length > c.movingAverageWindow) this.window.shift();
    const now = this.movingAverage;
    const checkpoint = step > 0 && (step + 1) % c.checkEvery === 0;
    let stalled = false;
    if (checkpoint) {
      stalled = this.previousAverage - now < c.stallThreshold;
      // The official code writes max(λ/2, 0), which is λ/2 for λ ≥ 0.
      this.lambda = stalled ? this.lambda / 2 : this.lambda + c.lambdaIncrement;
      this.previousAverage = now;
    } else {
      this.lambda += c.lambdaIncrement;
    }
    return { lambdaUsed, lambda: this.lambda, movingAverage: now, checkpoint, stalled };
  }
}
