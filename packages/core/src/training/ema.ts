/**
 * Exponential moving average of model weights, with diffusers' `EMAModel` decay rule:
 * `step = max(0, optimization_step − update_after_step − 1)`; decay 0 while `step ≤ 0`; else
 * `1 − (1 + step/inv_gamma)^(−power)` with warm-up or `(1 + step)/(10 + step)` without,
 * capped at `decay` and floored at `min_decay`.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

/** EMA options (diffusers names in camel case). */
export interface EmaOptions {
  decay?: number;
  minDecay?: number;
  updateAfterStep?: number;
  useEmaWarmup?: boolean;
  invGamma?: number;
  power?: number;
}

/** Shadow copies of a model's variables. */
export class EmaWeights {
  readonly shadow = new Map<string, tf.Variable>();
  readonly options: Required<EmaOptions>;
  optimizationStep = 0;

  constructor(vars: ReadonlyMap<string, tf.Variable>, o: EmaOptions = {}) {
    this.options = {
      decay: o.decay ?? 0.9999,
      minDecay: o.minDecay ?? 0,
      updateAfterStep: o.updateAfterStep ?? 0,
      useEmaWarmup: o.useEmaWarmup ?? true,
      invGamma: o.invGamma ?? 1,
      power: o.power ?? 3 / 4,
    };
    for (const [k, v] of vars) this.shadow.set(k, tf.tidy(() => tf.variable(tf.clone(v), false)));
  }

  /** The decay used at an optimization step (diffusers `EMAModel.get_decay`). */
  decayAt(optimizationStep: number): number {
    const o = this.options;
    const step = Math.max(0, optimizationStep - o.updateAfterStep - 1);
    if (step <= 0) return 0;
    const d = o.useEmaWarmup ? 1 - (1 + step / o.invGamma) ** -o.power : (1 + step) / (10 + step);
    return Math.max(Math.min(d, o.decay), o.minDecay);
  }

  /** One EMA update towards `vars` (call after each optimizer step). */
  update(vars: ReadonlyMap<string, tf.Variable>): void {
    this.optimizationStep += 1;
    const d = this.decayAt(this.optimizationStep);
    tf.tidy(() => {
      for (const [k, s] of this.shadow) {
        const p = vars.get(k);
        if (p) s.assign(tf.sub(s, tf.mul(tf.sub(s, p), 1 - d)));
      }
    });
  }

  /** Copies of the shadow weights as plain arrays (for checkpoints). */
  getValues(): Map<string, Float32Array> {
    return new Map([...this.shadow].map(([k, v]) => [k, v.dataSync() as Float32Array]));
  }

  /** Overwrites shadow weights from arrays of matching size. */
  setValues(values: ReadonlyMap<string, Float32Array>): void {
    for (const [k, s] of this.shadow) {
      const a = values.get(k);
      if (a && a.length === s.size) tf.tidy(() => s.assign(tf.tensor(a, s.shape)));
    }
  }

  dispose(): void {
    for (const v of this.shadow.values()) v.dispose();
    this.shadow.clear();
  }
}
