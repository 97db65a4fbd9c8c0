/**
 * Adam / AdamW with explicit, serialisable state (so an interrupted training run resumes with
 * the exact optimizer moments), global-norm gradient clipping and learning-rate warm-up.
 * Semantics follow PyTorch: `torch.optim.Adam` (L2 weight decay added to the gradient) and
 * `torch.optim.AdamW` (decoupled decay `p ← p − lr·wd·p`), bias-corrected moments, and
 * `torch.nn.utils.clip_grad_norm_` (scale by `max_norm / (total_norm + 1e-6)` when above).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';

/** Optimizer hyper-parameters. */
export interface AdamOptions {
  /** `adamw` (decoupled weight decay, default) or `adam` (L2 decay in the gradient). */
  kind?: 'adam' | 'adamw';
  learningRate: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  weightDecay?: number;
}

/** Serialisable optimizer state: step count plus first/second moments per variable name. */
export interface AdamState {
  step: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

/** Adam/AdamW over a named set of `tf.Variable`s. */
export class AdamOptimizer {
  readonly kind: 'adam' | 'adamw';
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  learningRate: number;
  /** Number of updates applied. */
  step = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

  constructor(o: AdamOptions) {
    this.kind = o.kind ?? 'adamw';
    this.learningRate = o.learningRate;
    this.beta1 = o.beta1 ?? 0.9;
    this.beta2 = o.beta2 ?? 0.999;
    this.epsilon = o.epsilon ?? 1e-8;
    this.weightDecay = o.weightDecay ?? (this.kind === 'adamw' ? 1e-2 : 0);
    const bad = (x: number): boolean => !Number.isFinite(x);
    if (bad(this.learningRate) || this.learningRate <= 0) throw new ConfigError(`learningRate must be > 0, got ${o.learningRate}`);
    if (bad(this.beta1) || this.beta1 < 0 || this.beta1 >= 1) throw new ConfigError(`beta1 must be in [0,1), got ${this.beta1}`);
    if (bad(this.beta2) || this.beta2 < 0 || this.beta2 >= 1) throw new ConfigError(`beta2 must be in [0,1), got ${this.beta2}`);
    if (bad(this.weightDecay) || this.weightDecay < 0) throw new ConfigError(`weightDecay must be >= 0, got ${this.weightDecay}`);
  }

  /**
   * Applies one update. `grads` maps variable names to gradients (not disposed here);
   * `vars` maps the same names to the variables to update.
   */
  apply(vars: ReadonlyMap<string, tf.Variable>, grads: Readonly<Record<string, tf.Tensor>>): void {
    this.step += 1;
    const t = this.step;
    const lr = this.learningRate;
    const bc1 = 1 - this.beta1 ** t;
    const bc2 = 1 - this.beta2 ** t;
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (const [name, p] of vars) {
      const g0 = grads[name];
      if (!g0) continue; // a variable without gradient this step (e.g. unused class row)
      let m = this.m.get(name);
      let v = this.v.get(name);
      if (!m || !v) {
        m = tf.tidy(() => tf.variable(tf.zerosLike(p), false));
        v = tf.tidy(() => tf.variable(tf.zerosLike(p), false));
        this.m.set(name, m);
        this.v.set(name, v);
      }
      const mm = m;
      const vv = v;
      tf.tidy(() => {
        let g = g0;
        if (this.kind === 'adam' && this.weightDecay > 0) g = tf.add(g, tf.mul(p, this.weightDecay));
        const m1 = tf.add(tf.mul(mm, this.beta1), tf.mul(g, 1 - this.beta1));
        const v1 = tf.add(tf.mul(vv, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        mm.assign(m1);
        vv.assign(v1);
        let base: tf.Tensor = p;
        if (this.kind === 'adamw' && this.weightDecay > 0) base = tf.mul(p, 1 - lr * this.weightDecay);
        const denom = tf.add(tf.div(tf.sqrt(v1), sqrtBc2), this.epsilon);
        p.assign(tf.sub(base, tf.mul(tf.div(m1, denom), stepSize)));
      });
    }
  }

  /** A copy of the state for checkpoints. */
  getState(): AdamState {
    const read = (src: Map<string, tf.Variable>): Map<string, Float32Array> =>
      new Map([...src].map(([k, t]) => [k, t.dataSync() as Float32Array]));
    return { step: this.step, m: read(this.m), v: read(this.v) };
  }

  /** Restores {@link getState} output; shapes are checked against `vars`. */
  setState(state: AdamState, vars: ReadonlyMap<string, tf.Variable>): void {
    this.dispose();
    for (const [name, arr] of state.m) {
      const p = vars.get(name);
      const va = state.v.get(name);
      if (!p || !va || arr.length !== p.size || va.length !== p.size) {
        throw new ConfigError(`optimizer state for "${name}" does not match the model (missing variable or size)`);
      }
      this.m.set(name, tf.tidy(() => tf.variable(tf.tensor(arr, p.shape), false)));
      this.v.set(name, tf.tidy(() => tf.variable(tf.tensor(va, p.shape), false)));
    }
    this.step = state.step;
  }

  /** Frees the moment tensors. */
  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/**
 * Scales gradients in place (returns new tensors, disposing the old) so their global L2 norm is
 * at most `maxNorm` (PyTorch `clip_grad_norm_`). Returns the norm before clipping.
 */
export function clipGradNorm(grads: Record<string, tf.Tensor>, maxNorm: number): number {
  const names = Object.keys(grads);
  const total = tf.tidy(() => tf.sqrt(tf.addN(names.map((n) => tf.sum(tf.square(grads[n] as tf.Tensor))))));
  const norm = total.dataSync()[0] as number;
  total.dispose();
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    for (const n of names) {
      const old = grads[n] as tf.Tensor;
      grads[n] = tf.mul(old, coef);
      old.dispose();
    }
  }
  return norm;
}

/** Learning-rate schedules (diffusers `get_scheduler` names). */
export type LrScheduleName = 'constant' | 'constant_with_warmup' | 'linear' | 'cosine';

/** The learning rate at `step` (0-based) for a schedule with linear warm-up. */
export function learningRateAt(
  base: number,
  step: number,
  schedule: LrScheduleName,
  warmupSteps: number,
  totalSteps: number,
): number {
  if (schedule !== 'constant' && warmupSteps > 0 && step < warmupSteps) return (base * (step + 1)) / warmupSteps;
  if (schedule === 'constant' || schedule === 'constant_with_warmup') return base;
  const progress = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
  if (schedule === 'linear') return base * Math.max(0, 1 - progress);
  return base * 0.5 * (1 + Math.cos(Math.PI * progress));
}
